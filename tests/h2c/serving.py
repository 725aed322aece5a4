"""A NativeServer on its own event loop thread, for tests with real clients."""

from __future__ import annotations

import asyncio
import threading

from pykv.server.h2server import NativeServer


class ServerThread:
    """Runs ``NativeServer(methods)`` on 127.0.0.1 (a free port) in a thread
    with its own event loop; ``run`` executes a coroutine there."""

    def __init__(self, methods, **kwargs):
        self.loop = asyncio.new_event_loop()
        self.server = NativeServer(methods, **kwargs)
        self.port = self.server.add_port("127.0.0.1", 0)
        self.address = f"127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.loop.run_forever, name="h2-test-loop",
                                       daemon=True)
        self.thread.start()
        self.run(self.server.start())
        self.stopped = False

    def run(self, coroutine, timeout_s: float = 30.0):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout_s)

    def call_soon(self, fn, *args) -> None:
        self.loop.call_soon_threadsafe(fn, *args)

    def stats(self) -> dict[str, int]:
        return self.server.stats()

    def stop(self, grace_s: float = 0.5) -> None:
        if self.stopped:
            return
        self.stopped = True
        self.run(self.server.stop(grace_s))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
