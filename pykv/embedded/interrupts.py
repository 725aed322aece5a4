"""Ctrl-C while the main thread is inside the engine: handled once it is out.

Python raises KeyboardInterrupt wherever the main thread happens to be, and
cannot mask a signal. Cut short between two steps, a group-commit leader
leaves a batch half done (the database failed until reopened, or a log
nobody leads and every writer asleep), and ``close()`` a directory still
locked by a half-closed database. So while the main thread writes or
closes, SIGINT's Python handler is swapped for ``SIGINT_DEFERRAL``, which
records the signal, and the real handler is called once the call is done:
the write is applied (the database closed), then the caller sees
KeyboardInterrupt, as from a Ctrl-C an instant later. Except while the
main thread sleeps waiting for another writer's batch: a write that hangs
must not make the program deaf to Ctrl-C, and there the wait can be given
up safely (its request stays queued and is done), so the real handler is
called at once, after giving the wait up (it may write itself); if it
returns without raising (asyncio's first Ctrl-C), the wait resumes.

Cost: two sigaction calls, 2 - 4 us a main-thread put on this VM (1 - 2 % of
a durable one); ``signal.signal``'s enum wrapping would cost 9 us more.
Only SIGINT: other handlers that raise (rare, and installed by the program
itself) can still cut a call short. Signals set to SIG_DFL or SIG_IGN
involve no Python code and are left alone.
"""

from __future__ import annotations

import threading
from _signal import SIGINT, getsignal, signal as set_signal
from _thread import get_ident
from typing import Any, Callable, TypeVar

T = TypeVar("T")
#: Python runs signal handlers (and raises KeyboardInterrupt) in the main
#: thread only: compare with ``_thread.get_ident()``.
MAIN_THREAD = threading.main_thread().ident


class SigintInWait(BaseException):
    """A SIGINT interrupted a sleep where that is safe (``waiting``): the
    sleeper gives its wait up, then has the real handler called
    (``SigintDeferral.call_handler``)."""

    def __init__(self, frame: Any):
        super().__init__()
        self.frame = frame


class SigintDeferral:
    """SIGINT's handler during a deferring call: records the signal for
    ``handler`` (the real one) to handle when the call is done, or, while
    ``waiting`` (the caller sleeps where an interrupt is safe:
    ``Committer._wait_main``, so that a write that hangs stays
    interruptible), raises ``SigintInWait`` out of the sleep. Only the
    main thread touches it."""

    def __init__(self) -> None:
        self.handler: Any = None
        self.frames: list[Any] = []   # where the recorded SIGINTs arrived
        self.waiting = False
        self.deferring = False        # inside deferring_sigint (nested calls just call)

    def __call__(self, signum: int, frame: Any) -> None:
        if self.waiting:
            self.waiting = False
            raise SigintInWait(frame)
        self.frames.append(frame)

    def call_handler(self, frame: Any) -> None:
        """Call the real handler now (it may raise, write, or install
        another handler, which then takes the real one's place)."""
        self.handler(SIGINT, frame)
        current = getsignal(SIGINT)
        if current is not self:
            self.handler = current
            if callable(current):
                set_signal(SIGINT, self)


SIGINT_DEFERRAL = SigintDeferral()


def deferring_sigint(call: Callable[..., T], *args: Any) -> T:
    """``call(*args)`` with SIGINT deferred until it returns (or raises),
    when called from the main thread (the only one Python runs signal
    handlers in, and may swap them from); elsewhere, and nested, it just
    calls."""
    deferral = SIGINT_DEFERRAL
    if deferral.deferring or get_ident() != MAIN_THREAD:
        return call(*args)
    handler = getsignal(SIGINT)
    if handler is deferral:
        # Left installed by a call cut short before it could restore the
        # real handler (another signal's handler raised right there).
        handler = deferral.handler
    if not callable(handler):
        return call(*args)
    deferral.handler = handler
    deferral.waiting = False
    del deferral.frames[:]  # any left: a replay cut short by a newer Ctrl-C
    # From here until it is restored, a SIGINT (even one that arrived
    # before) runs the deferral: nothing raises before the try.
    set_signal(SIGINT, deferral)
    deferral.deferring = True
    try:
        return call(*args)
    finally:
        deferral.deferring = False
        handler = deferral.handler  # (the real one may have been replaced meanwhile)
        if getsignal(SIGINT) is deferral:
            set_signal(SIGINT, handler)
        if deferral.frames:
            frame = deferral.frames[-1]
            del deferral.frames[:]
            if callable(handler):
                handler(SIGINT, frame)
