"""One exception tree for all of pykv, and etcd's table of gRPC errors.

Every error a client of etcd can see has a class here carrying etcd's exact
message and gRPC status code (``api/v3rpc/rpctypes/error.go``), so that
clients which match on either keep working. The codes are the names of
``grpc.StatusCode`` members, kept as strings so that this module (and
``pykv.mvcc``, ``pykv.embedded``) never imports grpc; the server maps them
with ``grpc.StatusCode[err.code]``.

Storage-level errors (WAL, snapshot, LMDB) are ``StorageError`` subclasses:
they are not etcd wire errors and carry what an operator needs (a path, an
offset, what was lost).
"""

from __future__ import annotations


class PykvError(Exception):
    """Base of every error pykv raises on purpose."""


# ---------------------------------------------------------------------------
# etcd wire errors
# ---------------------------------------------------------------------------


class EtcdError(PykvError):
    """An error etcd reports to clients: exact message and gRPC code.

    Subclasses set ``message`` and ``code``; raise them without arguments to
    get etcd's wording, or with a detail to append for logs (the wire message
    stays ``message``).
    """

    message: str = "etcdserver: unknown error"
    code: str = "UNKNOWN"

    def __init__(self, detail: str | None = None):
        self.detail = detail
        super().__init__(self.message if detail is None else f"{self.message} ({detail})")


_TABLE: list[tuple[str, str, str]] = [
    # name, gRPC code, message
    ("KeyNotProvided", "INVALID_ARGUMENT", "etcdserver: key is not provided"),
    ("KeyNotFound", "INVALID_ARGUMENT", "etcdserver: key not found"),
    ("ValueProvided", "INVALID_ARGUMENT", "etcdserver: value is provided"),
    ("LeaseProvided", "INVALID_ARGUMENT", "etcdserver: lease is provided"),
    ("TTLZero", "INVALID_ARGUMENT", "etcdserver: ttl is 0"),
    ("TooManyOps", "INVALID_ARGUMENT", "etcdserver: too many operations in txn request"),
    ("DuplicateKey", "INVALID_ARGUMENT", "etcdserver: duplicate key given in txn request"),
    ("InvalidSortOption", "INVALID_ARGUMENT", "etcdserver: invalid sort option"),
    ("Compacted", "OUT_OF_RANGE", "etcdserver: mvcc: required revision has been compacted"),
    ("FutureRevision", "OUT_OF_RANGE", "etcdserver: mvcc: required revision is a future revision"),
    ("NoSpace", "RESOURCE_EXHAUSTED", "etcdserver: mvcc: database space exceeded"),
    ("LeaseNotFound", "NOT_FOUND", "etcdserver: requested lease not found"),
    ("LeaseExists", "FAILED_PRECONDITION", "etcdserver: lease already exists"),
    ("LeaseTTLTooLarge", "OUT_OF_RANGE", "etcdserver: too large lease TTL"),
    ("WatchCanceled", "CANCELLED", "etcdserver: watch canceled"),
    ("MemberExists", "FAILED_PRECONDITION", "etcdserver: member ID already exist"),
    ("PeerURLExists", "FAILED_PRECONDITION", "etcdserver: Peer URLs already exists"),
    ("MemberNotEnoughStarted", "FAILED_PRECONDITION",
     "etcdserver: re-configuration failed due to not enough started members"),
    ("MemberBadURLs", "INVALID_ARGUMENT", "etcdserver: given member URLs are invalid"),
    ("MemberNotFound", "NOT_FOUND", "etcdserver: member not found"),
    ("MemberNotLearner", "FAILED_PRECONDITION", "etcdserver: can only promote a learner member"),
    ("LearnerNotReady", "FAILED_PRECONDITION",
     "etcdserver: can only promote a learner member which is in sync with leader"),
    ("TooManyLearners", "FAILED_PRECONDITION", "etcdserver: too many learner members in cluster"),
    ("ClusterIdMismatch", "FAILED_PRECONDITION", "etcdserver: cluster ID mismatch"),
    ("RequestTooLarge", "INVALID_ARGUMENT", "etcdserver: request is too large"),
    ("TooManyRequests", "RESOURCE_EXHAUSTED", "etcdserver: too many requests"),
    ("RootUserNotExist", "FAILED_PRECONDITION", "etcdserver: root user does not exist"),
    ("RootRoleNotExist", "FAILED_PRECONDITION", "etcdserver: root user does not have root role"),
    ("UserAlreadyExist", "FAILED_PRECONDITION", "etcdserver: user name already exists"),
    ("UserEmpty", "INVALID_ARGUMENT", "etcdserver: user name is empty"),
    ("UserNotFound", "FAILED_PRECONDITION", "etcdserver: user name not found"),
    ("RoleAlreadyExist", "FAILED_PRECONDITION", "etcdserver: role name already exists"),
    ("RoleNotFound", "FAILED_PRECONDITION", "etcdserver: role name not found"),
    ("RoleEmpty", "INVALID_ARGUMENT", "etcdserver: role name is empty"),
    ("AuthFailed", "INVALID_ARGUMENT",
     "etcdserver: authentication failed, invalid user ID or password"),
    ("PermissionDenied", "PERMISSION_DENIED", "etcdserver: permission denied"),
    ("RoleNotGranted", "FAILED_PRECONDITION", "etcdserver: role is not granted to the user"),
    ("PermissionNotGranted", "FAILED_PRECONDITION",
     "etcdserver: permission is not granted to the role"),
    ("AuthNotEnabled", "FAILED_PRECONDITION", "etcdserver: authentication is not enabled"),
    ("InvalidAuthToken", "UNAUTHENTICATED", "etcdserver: invalid auth token"),
    ("InvalidAuthMgmt", "INVALID_ARGUMENT", "etcdserver: invalid auth management"),
    ("NoLeader", "UNAVAILABLE", "etcdserver: no leader"),
    ("NotLeader", "FAILED_PRECONDITION", "etcdserver: not leader"),
    ("LeaderChanged", "UNAVAILABLE", "etcdserver: leader changed"),
    ("NotCapable", "UNAVAILABLE", "etcdserver: not capable"),
    ("Stopped", "UNAVAILABLE", "etcdserver: server stopped"),
    ("Timeout", "UNAVAILABLE", "etcdserver: request timed out"),
    ("TimeoutDueToLeaderFail", "UNAVAILABLE",
     "etcdserver: request timed out, possibly due to previous leader failure"),
    ("TimeoutDueToConnectionLost", "UNAVAILABLE",
     "etcdserver: request timed out, possibly due to connection lost"),
    ("TimeoutWaitAppliedIndex", "UNAVAILABLE",
     "etcdserver: request timed out, waiting for the applied index took too long"),
    ("Unhealthy", "UNAVAILABLE", "etcdserver: unhealthy cluster"),
    ("Corrupt", "DATA_LOSS", "etcdserver: corrupt cluster"),
    ("NotSupportedForLearner", "UNAVAILABLE", "etcdserver: rpc not supported for learner"),
    ("BadLeaderTransferee", "FAILED_PRECONDITION", "etcdserver: bad leader transferee"),
    ("RequestCanceled", "CANCELLED", "etcdserver: request canceled"),
]

#: message -> class, to turn a wire error back into its class (clients, tests).
BY_MESSAGE: dict[str, type[EtcdError]] = {}


def _define(name: str, code: str, message: str) -> type[EtcdError]:
    cls = type(name, (EtcdError,), {"message": message, "code": code, "__module__": __name__,
                                     "__doc__": f"{code}: {message!r}"})
    BY_MESSAGE[message] = cls
    return cls


for _name, _code, _message in _TABLE:
    globals()[_name] = _define(_name, _code, _message)
del _name, _code, _message

# Explicit names for type checkers and readers (the loop above defines them).
KeyNotProvided: type[EtcdError]
KeyNotFound: type[EtcdError]
ValueProvided: type[EtcdError]
LeaseProvided: type[EtcdError]
TTLZero: type[EtcdError]
TooManyOps: type[EtcdError]
DuplicateKey: type[EtcdError]
InvalidSortOption: type[EtcdError]
Compacted: type[EtcdError]
FutureRevision: type[EtcdError]
NoSpace: type[EtcdError]
LeaseNotFound: type[EtcdError]
LeaseExists: type[EtcdError]
LeaseTTLTooLarge: type[EtcdError]
WatchCanceled: type[EtcdError]
MemberExists: type[EtcdError]
PeerURLExists: type[EtcdError]
MemberNotEnoughStarted: type[EtcdError]
MemberBadURLs: type[EtcdError]
MemberNotFound: type[EtcdError]
MemberNotLearner: type[EtcdError]
LearnerNotReady: type[EtcdError]
TooManyLearners: type[EtcdError]
ClusterIdMismatch: type[EtcdError]
RequestTooLarge: type[EtcdError]
TooManyRequests: type[EtcdError]
RootUserNotExist: type[EtcdError]
RootRoleNotExist: type[EtcdError]
UserAlreadyExist: type[EtcdError]
UserEmpty: type[EtcdError]
UserNotFound: type[EtcdError]
RoleAlreadyExist: type[EtcdError]
RoleNotFound: type[EtcdError]
RoleEmpty: type[EtcdError]
AuthFailed: type[EtcdError]
PermissionDenied: type[EtcdError]
RoleNotGranted: type[EtcdError]
PermissionNotGranted: type[EtcdError]
AuthNotEnabled: type[EtcdError]
InvalidAuthToken: type[EtcdError]
InvalidAuthMgmt: type[EtcdError]
NoLeader: type[EtcdError]
NotLeader: type[EtcdError]
LeaderChanged: type[EtcdError]
NotCapable: type[EtcdError]
Stopped: type[EtcdError]
Timeout: type[EtcdError]
TimeoutDueToLeaderFail: type[EtcdError]
TimeoutDueToConnectionLost: type[EtcdError]
TimeoutWaitAppliedIndex: type[EtcdError]
Unhealthy: type[EtcdError]
Corrupt: type[EtcdError]
NotSupportedForLearner: type[EtcdError]
BadLeaderTransferee: type[EtcdError]
RequestCanceled: type[EtcdError]


# ---------------------------------------------------------------------------
# pykv-local errors (not etcd wire errors)
# ---------------------------------------------------------------------------


class ClosedError(PykvError):
    """The database, WAL or store was closed; the call did nothing."""


class ValueTooLarge(PykvError):
    """A key or value over the configured limit (the server maps it to
    ``RequestTooLarge``; the embedded API raises it directly)."""


class StorageError(PykvError):
    """Durable storage failed or holds data that cannot be trusted."""


class CorruptionError(StorageError):
    """A checksum or structure mismatch in the middle of durable data.

    ``path`` and ``offset`` say where; pykv refuses to continue rather than
    cut data that may have been acknowledged.
    """

    def __init__(self, message: str, path: str | None = None, offset: int | None = None):
        self.path = path
        self.offset = offset
        super().__init__(message)


class FatalSyncError(StorageError):
    """An fsync/fdatasync failed. The kernel may have dropped the dirty pages,
    so the handle refuses further writes; restart and recover from disk."""


class LockedError(StorageError):
    """Another process holds the data directory's lock."""
