"""The Raft loop: one thread that drives a RawNode and does its I/O.

Why a thread of its own: the loop's work is a sequence that must not be
interleaved (persist, send, apply, advance), it blocks on fdatasync (in C,
with the GIL released), and every LMDB write must happen on one thread
(STYLE habit 12). The asyncio side only queues work for it and awaits
futures; the thread resolves them in one ``call_soon_threadsafe`` per batch.

Batching: every request that arrives while the thread is busy becomes part
of ONE Raft entry (``pykv.engine.requests``), so the Raft, WAL and LMDB costs
are per batch, and one fdatasync covers the batch.

Answers: a proposal waits on an asyncio future, or, when its proposer gave a
``Replier`` (the native gRPC server does), the thread hands the encoded
answer straight to it: no hop through the event loop, whose wake-up cost
about as much as the rest of a single client's put. Whoever pops the
request's waiter (the thread with the result, or the loop timing it out)
answers it, so each request is answered once.

The order of one Ready (pykv.raft.rawnode's contract):
  1. a leader may send its messages first (Raft thesis 10.2.1);
  2. persist snapshot, entries, hard state; fdatasync when ``must_sync``;
  3. everyone else sends now;
  4. apply the snapshot and the committed entries (after 2 is durable: the
     single-node case is where etcd #14370 acknowledged writes before the
     WAL sync); hand out read states; resolve the waiting clients;
  5. advance.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from pykv import errors
from pykv.engine import requests as reqcodec
from pykv.raft.errors import ProposalDropped
from pykv.raft.rawnode import RawNode, Ready
from pykv.raft.types import Message

log = logging.getLogger("pykv.server.raft")

# etcd's "too many requests": committed entries not yet applied beyond this.
MAX_PENDING_PROPOSALS = 100_000
SWEEP_INTERVAL_S = 0.25
SLOW_FDATASYNC_S = 1.0   # etcd warns past 1 s (wal.warnSyncDuration)
SLOW_APPLY_S = 0.1       # etcd warns past 100 ms (--warning-apply-duration)


def dropped_to_etcd(exc: ProposalDropped) -> errors.EtcdError:
    if exc.reason == ProposalDropped.NO_LEADER:
        return errors.NoLeader()
    if exc.reason == ProposalDropped.TRANSFERRING:
        return errors.LeaderChanged()
    if exc.reason == ProposalDropped.UNCOMMITTED_LIMIT:
        return errors.TooManyRequests()
    if exc.reason == ProposalDropped.NOT_MEMBER:
        return errors.Stopped(exc.reason)
    return errors.NoLeader(exc.reason)


class Replier(Protocol):
    """Where answers go without an asyncio future (the native gRPC server)."""

    def reply_many(self, answers: list[tuple[object, object]]) -> None:
        """Send ``(token, result)`` answers: ``result`` is the response
        bytes or an exception. Called from the Raft thread or the event
        loop, so it must be thread-safe, quick, and never raise."""


@dataclass
class LoopStats:
    readies: int = 0
    syncs: int = 0
    proposals: int = 0
    entries_applied: int = 0


class RaftNode:
    """Owns the RawNode; every method not marked "loop side" runs on the thread.

    ``persist(rd)`` makes a Ready's snapshot/entries/hard state durable and
    updates the MemoryStorage; ``apply(rd)`` applies its snapshot and
    committed entries and returns ``[(request_id, result_or_exception)]``;
    ``send(messages)`` hands messages to the peer transport;
    ``after_apply()`` runs after each Ready (snapshots, lease expiry...).
    """

    def __init__(self, node: RawNode, *, member_id: int, tick_s: float,
                 persist: Callable[[Ready], None],
                 apply: Callable[[Ready], list[tuple[int, object]]],
                 send: Callable[[list[Message]], None],
                 after_apply: Callable[[], None] = lambda: None,
                 loop: asyncio.AbstractEventLoop):
        self.node = node
        self.member_id = member_id
        self._tick_s = tick_s
        self._persist = persist
        self._apply = apply
        self._send = send
        self._after_apply = after_apply
        self._loop = loop
        self._ids = reqcodec.RequestIds(member_id, int(time.time() * 1000))
        # loop side -> thread
        self._proposals: collections.deque = collections.deque()
        self._reads: collections.deque = collections.deque()
        self._messages: collections.deque = collections.deque()
        self._calls: collections.deque = collections.deque()
        self._wake = threading.Event()
        # request id -> its future, or (replier, token). Filled on the loop
        # side; popped by whoever answers (dict operations are atomic under
        # the GIL, so exactly one side gets each waiter).
        self._waiters: dict[int, asyncio.Future | tuple[Replier, object]] = {}
        # (deadline, request id) in proposal order: one timeout for all, so a
        # FIFO sweep replaces a timer per request (asyncio.wait_for).
        self._deadlines: collections.deque = collections.deque()
        self._read_deadlines: collections.deque = collections.deque()
        self.request_timeout_s = 7.0
        self._sweeper: asyncio.TimerHandle | None = None
        # Request objects the proposer already parsed, by request id, so that
        # apply does not parse them again (filled on the loop side, consumed
        # by apply on the thread; dict operations are atomic under the GIL).
        self.decoded: dict[int, object] = {}
        # thread only
        self._read_ctx = itertools.count(1)
        self._pending_reads: dict[bytes, list[asyncio.Future]] = {}
        self._ready_reads: list[tuple[int, list[asyncio.Future]]] = []
        self.applied_index = 0
        self.stats = LoopStats()
        self._thread = threading.Thread(target=self._run, name="pykv-raft", daemon=True)
        self._stopping = False
        self.failure: BaseException | None = None
        self.leader_id = 0
        self.leader_changes = 0
        self.term = 0
        self.on_leader_change: Callable[[int, int], None] | None = None
        self._campaign_requested = False
        # Since when this node has known no leader (None: it knows one).
        self._leaderless_since: float | None = time.monotonic()
        self.leader_wait_s = 2.0

    # -- loop side ----------------------------------------------------------

    def start(self) -> None:
        self._thread.start()
        self._sweeper = self._loop.call_later(SWEEP_INTERVAL_S, self._sweep)

    def _sweep(self) -> None:
        """Fail requests that waited longer than ``request_timeout_s`` with
        etcd's "request timed out" (loop side, every SWEEP_INTERVAL_S)."""
        now = self._loop.time()
        deadlines, waiters = self._deadlines, self._waiters
        while deadlines and deadlines[0][0] <= now:
            _, request_id = deadlines.popleft()
            waiter = waiters.pop(request_id, None)
            self.decoded.pop(request_id, None)
            if waiter is not None:
                _answer_one(waiter, errors.Timeout())
        reads = self._read_deadlines
        while reads and reads[0][0] <= now:
            _, future = reads.popleft()
            if not future.done():
                future.set_exception(errors.Timeout())
        # Answered requests leave their deadline behind; drop those in bulk.
        while deadlines and deadlines[0][1] not in waiters:
            deadlines.popleft()
        while reads and reads[0][1].done():
            reads.popleft()
        if not self._stopping:
            self._sweeper = self._loop.call_later(SWEEP_INTERVAL_S, self._sweep)

    def propose(self, kind: int, body: bytes, request: object = None,
                replier: Replier | None = None, token: object = None) -> asyncio.Future | None:
        """Queue a request for Raft; the future gets the applier's result.
        ``request`` is ``body`` already parsed, if the caller has it.

        With a ``replier`` no future is made (None is returned): the result
        (or the error: a timeout, a dropped proposal) goes to
        ``replier.reply_many([(token, result)])``, usually from the Raft
        thread."""
        if self.failure is not None:
            raise errors.Stopped(str(self.failure))
        if len(self._waiters) >= MAX_PENDING_PROPOSALS:
            raise errors.TooManyRequests()
        request_id = self._ids.next()
        if replier is None:
            future = self._loop.create_future()
            self._waiters[request_id] = future
        else:
            future = None
            self._waiters[request_id] = (replier, token)
        self._deadlines.append((self._loop.time() + self.request_timeout_s, request_id))
        if request is not None:
            self.decoded[request_id] = request
        self._proposals.append((kind, request_id, body))
        if not self._wake.is_set():
            self._wake.set()
        return future

    def propose_internal(self, kind: int, request) -> None:
        """Thread side: propose a request of the server's own (a lease revoke
        on expiry) that nobody waits for."""
        self._proposals.append((kind, self._ids.next(), request.SerializeToString()))

    def read_index(self) -> asyncio.Future:
        """A future that resolves once this node has applied everything a
        linearizable read issued now must see (Raft's ReadIndex, batched)."""
        if self.failure is not None:
            raise errors.Stopped(str(self.failure))
        future = self._loop.create_future()
        self._read_deadlines.append((self._loop.time() + self.request_timeout_s, future))
        self._reads.append(future)
        if not self._wake.is_set():
            self._wake.set()
        return future

    def step(self, message: Message) -> None:
        """A message from a peer (any thread)."""
        self._messages.append(message)
        self._wake.set()

    def call(self, fn: Callable[[RawNode], object]) -> asyncio.Future:
        """Run ``fn(rawnode)`` on the Raft thread (conf changes, transfers, status)."""
        future = self._loop.create_future()
        self._calls.append((fn, future))
        self._wake.set()
        return future

    @property
    def pending(self) -> int:
        """Proposals waiting for an answer (loop side)."""
        return len(self._waiters)

    def campaign_soon(self) -> None:
        """Start an election once the node can (a single voter need not wait
        out an election timeout; Raft refuses to campaign before the
        bootstrap membership entries are applied, so it is retried)."""
        self._campaign_requested = True
        self._wake.set()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stopping = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _resolve(self, results: list[tuple[int, object]]) -> None:
        """Answer requests that failed before apply (loop side)."""
        waiters = self._waiters
        decoded = self.decoded
        for request_id, result in results:
            decoded.pop(request_id, None)
            waiter = waiters.pop(request_id, None)
            if waiter is not None:  # else: another member's, or timed out
                _answer_one(waiter, result)

    def _settle(self, items: list[tuple[asyncio.Future, object]]) -> None:
        for future, result in items:
            _answer_one(future, result)

    def _fail_requests(self, request_ids: list[int], exc: BaseException) -> None:
        self._resolve([(rid, exc) for rid in request_ids])

    # -- thread side --------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop_body()
        except BaseException as exc:  # the node cannot continue; fail everything
            self.failure = exc
            log.critical("raft loop stopped", exc_info=True)
            self._loop.call_soon_threadsafe(self._fail_all, exc)

    def _fail_all(self, exc: BaseException) -> None:
        error = errors.Stopped(f"raft loop failed: {exc}")
        waiters, self._waiters = self._waiters, {}
        for waiter in waiters.values():
            _answer_one(waiter, error)

    def _loop_body(self) -> None:
        node = self.node
        next_tick = time.monotonic() + self._tick_s
        while not self._stopping:
            timeout = next_tick - time.monotonic()
            # Proposals and reads wait for a leader (as etcd's node.Propose
            # blocks): without one they are not work to spin on.
            has_work = self._messages or self._calls or (
                (self._proposals or self._reads) and (self.leader_id or self._leaderless_expired()))
            if timeout > 0 and not has_work:
                self._wake.wait(timeout)
            self._wake.clear()
            now = time.monotonic()
            if now >= next_tick:
                node.tick()
                next_tick += self._tick_s
                if next_tick < now:  # we fell behind (a long fsync): do not tick in a burst
                    next_tick = now + self._tick_s
                # Housekeeping (lease expiry, compaction steps, snapshots) must
                # also run on an idle node, which produces no Ready.
                self._after_apply()
            messages = self._messages
            while messages:
                node.step(messages.popleft())
            calls = self._calls
            while calls:
                fn, future = calls.popleft()
                try:
                    result: object = fn(node)
                except BaseException as exc:  # handed back to the caller
                    result = exc
                self._loop.call_soon_threadsafe(self._settle, [(future, result)])
            self._take_proposals()
            self._take_reads()
            while node.has_ready():
                self._handle_ready(node.ready())
            if self._campaign_requested:
                if self.leader_id:
                    self._campaign_requested = False
                elif self.applied_index >= node.raft.log.committed:
                    node.campaign()
                    while node.has_ready():
                        self._handle_ready(node.ready())
                    self._campaign_requested = not self.leader_id

    def _leaderless_expired(self) -> bool:
        """No leader for longer than a client should wait: fail what waits."""
        return self._leaderless_since is not None and \
            time.monotonic() - self._leaderless_since > self.leader_wait_s

    def _take_proposals(self) -> None:
        queue = self._proposals
        if not queue:
            return
        if not self.leader_id and not self._leaderless_expired():
            return  # keep them until a leader appears (or the wait expires)
        batch = []
        popleft = queue.popleft
        while queue:
            batch.append(popleft())
        self.stats.proposals += len(batch)
        try:
            self.node.propose(reqcodec.encode(batch))
        except ProposalDropped as exc:
            self._loop.call_soon_threadsafe(
                self._fail_requests, [rid for _, rid, _ in batch], dropped_to_etcd(exc))

    def _take_reads(self) -> None:
        queue = self._reads
        if not queue:
            return
        if not self.leader_id and not self._leaderless_expired():
            return
        futures = []
        while queue:
            futures.append(queue.popleft())
        ctx = next(self._read_ctx).to_bytes(8, "big")
        try:
            self.node.read_index(ctx)
        except ProposalDropped as exc:
            error = dropped_to_etcd(exc)
            self._loop.call_soon_threadsafe(self._settle, [(f, error) for f in futures])
            return
        self._pending_reads[ctx] = futures

    def _handle_ready(self, rd: Ready) -> None:
        node = self.node
        self.stats.readies += 1
        if rd.soft_state is not None:
            self._note_leader(rd.soft_state.leader)
        if rd.hard_state is not None:
            self.term = rd.hard_state.term
        sent = False
        if rd.can_send_before_persist and rd.messages:
            self._send(rd.messages)
            sent = True
        started = time.monotonic()
        self._persist(rd)
        if rd.must_sync:
            self.stats.syncs += 1
            took = time.monotonic() - started
            if took > SLOW_FDATASYNC_S:  # etcd's "slow fdatasync" (wal.go warnSyncDuration)
                log.warning("slow fdatasync", extra={"fields": {
                    "took-ms": round(took * 1000, 1), "expected-duration-ms": 1000}})
        if not sent and rd.messages:
            self._send(rd.messages)
        if rd.snapshot is not None or rd.committed_entries:
            started = time.monotonic()
            results = self._apply(rd)
            took = time.monotonic() - started
            if took > SLOW_APPLY_S:  # etcd's "apply request took too long"
                log.warning("apply request took too long", extra={"fields": {
                    "took-ms": round(took * 1000, 1), "expected-duration-ms": 100,
                    "entries": len(rd.committed_entries)}})
            if rd.committed_entries:
                self.applied_index = rd.committed_entries[-1].index
                self.stats.entries_applied += len(rd.committed_entries)
            elif rd.snapshot is not None:
                self.applied_index = rd.snapshot.meta.index
            if results:
                self._answer(results)
        for rs in rd.read_states:
            futures = self._pending_reads.pop(rs.request_ctx, None)
            if futures:
                self._ready_reads.append((rs.index, futures))
        if self._ready_reads:
            self._release_reads()
        node.advance(rd)
        self._after_apply()

    def _answer(self, results: list[tuple[int, object]]) -> None:
        """Thread side: hand applied results to their waiters: repliers at
        once (one ``reply_many`` per replier), futures in one loop call."""
        pop = self._waiters.pop
        futures: list[tuple[asyncio.Future, object]] = []
        direct: dict[Replier, list[tuple[object, object]]] = {}
        for request_id, result in results:
            waiter = pop(request_id, None)
            if waiter is None:
                continue  # proposed by another member, or timed out
            if waiter.__class__ is tuple:
                replier, token = waiter
                answers = direct.get(replier)
                if answers is None:
                    direct[replier] = [(token, result)]
                else:
                    answers.append((token, result))
            else:
                futures.append((waiter, result))
        for replier, answers in direct.items():
            replier.reply_many(answers)
        if futures:
            self._loop.call_soon_threadsafe(self._settle, futures)

    def _release_reads(self) -> None:
        done, waiting = [], []
        for index, futures in self._ready_reads:
            (done if index <= self.applied_index else waiting).append((index, futures))
        self._ready_reads = waiting
        if done:
            items = [(f, None) for _, futures in done for f in futures]
            self._loop.call_soon_threadsafe(self._settle, items)

    def _note_leader(self, leader: int) -> None:
        if leader != self.leader_id:
            previous, self.leader_id = self.leader_id, leader
            if leader:
                self.leader_changes += 1
            self._leaderless_since = None if leader else time.monotonic()
            log.info("raft leader changed", extra={"fields": {
                "previous-leader": f"{previous:x}", "leader": f"{leader:x}"}})
            if leader == 0 and self._pending_reads:
                # Reads waiting on a leader that is gone: etcd answers "leader changed".
                items = [(f, errors.LeaderChanged()) for fs in self._pending_reads.values()
                         for f in fs]
                self._pending_reads.clear()
                self._loop.call_soon_threadsafe(self._settle, items)
            if self.on_leader_change is not None:
                self.on_leader_change(previous, leader)


def _answer_one(waiter: asyncio.Future | tuple[Replier, object], result: object) -> None:
    """Answer one waiter on the event loop (futures are not thread-safe)."""
    if waiter.__class__ is tuple:
        replier, token = waiter
        replier.reply_many([(token, result)])
    elif not waiter.done():  # a future the client gave up on is done already
        if isinstance(result, BaseException):
            waiter.set_exception(result)
        else:
            waiter.set_result(result)
