"""etcdserverpb.Auth, until authentication lands: the answers etcd gives
while auth is disabled and no user or role exists, so that clients which
probe it (AuthStatus, Authenticate, UserList...) keep working. Methods that
would create users or roles are not registered (UNIMPLEMENTED): accepting
them without enforcing them would be worse than refusing."""

from __future__ import annotations

from pykv import errors
from pykv.api.etcdserverpb import rpc_pb2
from pykv.server.v3rpc.context import ServerContext


class AuthService:
    def __init__(self, ctx: ServerContext):
        self.ctx = ctx

    def _header(self):
        return self.ctx.headers.message(self.ctx.store.revision)

    async def AuthStatus(self, request, context):
        return rpc_pb2.AuthStatusResponse(header=self._header(), enabled=False, authRevision=0)

    async def Authenticate(self, request, context):
        raise errors.AuthNotEnabled()

    async def AuthEnable(self, request, context):
        raise errors.RootUserNotExist()

    async def AuthDisable(self, request, context):
        return rpc_pb2.AuthDisableResponse(header=self._header())

    async def UserList(self, request, context):
        return rpc_pb2.AuthUserListResponse(header=self._header())

    async def RoleList(self, request, context):
        return rpc_pb2.AuthRoleListResponse(header=self._header())

    async def UserGet(self, request, context):
        raise errors.UserNotFound()

    async def RoleGet(self, request, context):
        raise errors.RoleNotFound()

    async def UserDelete(self, request, context):
        raise errors.UserNotFound()

    async def RoleDelete(self, request, context):
        raise errors.RoleNotFound()
