"""A small asyncio TCP proxy for fault injection: cut, delay and reset connections.

Runs its own event loop in a daemon thread. Tests point a service at
``proxy.port`` instead of the real server and then call :meth:`cut` (close
every connection and refuse new ones), :meth:`restore`, :meth:`reset` (abort
every open connection with a TCP RST; new ones still pass) and :meth:`delay`
(hold each chunk this long in both directions). Each control call returns once
the proxy has applied it (it runs on the loop and is awaited), so tests never
sleep to synchronise with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

__all__ = ["FaultProxy"]


class FaultProxy:
    """TCP proxy from ``127.0.0.1:<port>`` to ``(host, port)`` with injectable faults."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.accepted = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._cut = False
        self._delay = 0.0
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        self._call(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()

    # -- controls (from the test's thread) --------------------------------------------------

    def cut(self) -> None:
        """Close every connection and refuse new ones until :meth:`restore`."""
        self._call(self._set(cut=True, abort=True))

    def restore(self) -> None:
        """Let connections through again, without delay."""
        self._call(self._set(cut=False, delay=0.0))

    def reset(self) -> None:
        """Abort every open connection (RST); new connections still pass."""
        self._call(self._set(abort=True))

    def delay(self, seconds: float) -> None:
        """Hold every chunk of data ``seconds`` before passing it on."""
        self._call(self._set(delay=seconds))

    # -- on the loop ------------------------------------------------------------------------

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._set(abort=True)
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _set(
        self, *, cut: bool | None = None, delay: float | None = None, abort: bool = False
    ) -> None:
        if cut is not None:
            self._cut = cut
        if delay is not None:
            self._delay = delay
        if abort:
            for writer in list(self._writers):
                writer.transport.abort()
            self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._cut:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self.accepted += 1
        self._writers.update((writer, up_writer))
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )
        for w in (writer, up_writer):
            self._writers.discard(w)
            w.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                if self._delay:
                    await asyncio.sleep(self._delay)
                if writer.transport.is_closing():
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.transport.abort()
