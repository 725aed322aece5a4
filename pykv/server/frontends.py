"""The core's side of ``--frontends N``: the link server and the front-end
processes it starts, watches and stops."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import sys

from pykv.server import config as config_mod
from pykv.server import ipc
from pykv.server.frontend import CONFIG_ENV, method_table
from pykv.server.v3rpc import Method

log = logging.getLogger("pykv.server.frontends")

START_TIMEOUT_S = 30.0
RESTART_DELAY_S = 1.0


class FrontendPool:
    def __init__(self, config: config_mod.ServerConfig, methods: list[Method]):
        self.config = config
        by_path = {m.path: m for m in methods}
        self.table = [by_path.get(f"/{service}/{name}") for service, name, _ in method_table()]
        # An abstract Unix socket: no path length limit, gone with the process.
        # Written "@name" on the command line (argv cannot hold a NUL byte).
        self.address = f"@pykv-{os.getpid()}-{secrets.token_hex(4)}"
        self.peers: set = set()
        self._server: asyncio.AbstractServer | None = None
        self._processes: list[asyncio.subprocess.Process | None] = []
        self._watchers: list[asyncio.Task] = []
        self._stopping = False

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_unix_server(
            lambda: ipc.CoreLinkProtocol(self.table, self.peers),
            sock=ipc.listening_socket(self.address))
        self._processes = [None] * self.config.frontends
        await asyncio.gather(*(self._spawn_retrying(i) for i in range(self.config.frontends)))
        self._watchers = [loop.create_task(self._watch(i))
                          for i in range(self.config.frontends)]

    async def _spawn_retrying(self, index: int, attempts: int = 3) -> None:
        for attempt in range(attempts):
            try:
                return await self._spawn(index)
            except RuntimeError:
                if attempt == attempts - 1:
                    raise
                log.warning("front end failed to start; retrying", exc_info=True)
                await asyncio.sleep(RESTART_DELAY_S)

    async def _spawn(self, index: int) -> None:
        env = dict(os.environ)
        env[CONFIG_ENV] = config_mod.to_json(self.config)
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pykv.server.frontend", "--link", self.address,
            stdout=asyncio.subprocess.PIPE, env=env)
        self._processes[index] = process
        try:
            line = await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT_S)
        except asyncio.TimeoutError:
            line = b"(nothing within the start timeout)"
        if line.strip() != b"ready":
            process.kill()
            code = await process.wait()
            raise RuntimeError(f"front-end process {index} did not start: it said {line!r} "
                               f"and exited with {code}")
        log.info("front end started", extra={"fields": {"index": index, "pid": process.pid}})

    async def _watch(self, index: int) -> None:
        while not self._stopping:
            process = self._processes[index]
            code = await process.wait()
            if self._stopping:
                return
            log.error("front end exited; restarting", extra={"fields": {
                "index": index, "pid": process.pid, "exit-code": code}})
            await asyncio.sleep(RESTART_DELAY_S)
            try:
                await self._spawn(index)
            except Exception:
                log.exception("front end could not be restarted")

    async def stop(self) -> None:
        self._stopping = True
        for task in self._watchers:
            task.cancel()
        for process in self._processes:
            if process is not None and process.returncode is None:
                process.terminate()
        for process in self._processes:
            if process is not None:
                try:
                    await asyncio.wait_for(process.wait(), 5.0)
                except asyncio.TimeoutError:
                    process.kill()
        if self._server is not None:
            self._server.close()
