"""The console's ASGI app: live alerts over server-sent events, host status, trees.

Routes:

- ``GET /``: the page (``static/index.html``);
- ``GET /api/alerts``: the latest alerts (newest last), each with its host and source
  (``agent``: the agent's rules; ``central``: the collector's);
- ``GET /api/hosts``: per host: last seen, events/s, events, alerts, drops;
- ``GET /api/alerts/{id}/tree``: the process tree around an alert (its ancestry, the
  process, its children as the host's process table knows them);
- ``GET /api/stream``: ``text/event-stream``: ``alert`` events as they are stored, a
  ``hosts`` event every second.

:class:`UiServer` runs uvicorn in its own thread and loop (uvicorn installs no signal
handlers there); the collector's thread hands alerts over with
``call_soon_threadsafe``. Every string the page shows comes from monitored hosts and
is attacker-controlled: the page sets it as text, never as HTML.

Example::

    ui = UiServer(collector, "127.0.0.1", 8080)
    ui.start()          # http://127.0.0.1:8080/
    ...
    ui.stop()
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from typing import Any

__all__ = ["make_app", "UiServer"]

STATIC = os.path.join(os.path.dirname(__file__), "static")


def _dumps(v: Any) -> str:
    return json.dumps(v, default=str, ensure_ascii=False)


def make_app(ui: UiServer) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    col = ui.collector

    def hosts() -> list[dict[str, Any]]:
        return [h.to_dict() for h in sorted(list(col.hosts.values()), key=lambda h: h.host)]

    async def index(request: Request) -> Response:
        return FileResponse(os.path.join(STATIC, "index.html"), media_type="text/html")

    async def alerts(request: Request) -> Response:
        return Response(_dumps(list(col.alerts)), media_type="application/json")

    async def host_list(request: Request) -> Response:
        return Response(_dumps(hosts()), media_type="application/json")

    async def tree(request: Request) -> Response:
        t = col.tree(request.path_params["aid"])
        if t is None:
            return JSONResponse({"error": "no such alert"}, status_code=404)
        return Response(_dumps(t), media_type="application/json")

    async def stream(request: Request) -> Response:
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=1000)
        ui.clients.add(q)

        async def gen() -> Any:
            try:
                yield "retry: 1000\n\n"
                yield f"event: hosts\ndata: {_dumps(hosts())}\n\n"
                while True:
                    try:
                        item = await asyncio.wait_for(q.get(), 1.0)
                        yield f"event: alert\ndata: {_dumps(item)}\n\n"
                    except TimeoutError:
                        yield f"event: hosts\ndata: {_dumps(hosts())}\n\n"
                    if ui.stopping:
                        break
            finally:
                ui.clients.discard(q)

        return StreamingResponse(gen(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache",
                                          "X-Accel-Buffering": "no"})

    return Starlette(routes=[
        Route("/", index),
        Route("/api/alerts", alerts),
        Route("/api/hosts", host_list),
        Route("/api/alerts/{aid}/tree", tree),
        Route("/api/stream", stream),
    ])


class UiServer:
    """uvicorn serving :func:`make_app` in a thread of its own."""

    def __init__(self, collector: Any, host: str, port: int) -> None:
        import uvicorn

        self.collector = collector
        self.clients: set[asyncio.Queue[dict[str, Any]]] = set()
        self.stopping = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self.app = make_app(self)
        self.server = uvicorn.Server(uvicorn.Config(
            self.app, host=host, port=port, log_level="warning", lifespan="off",
            access_log=False, timeout_graceful_shutdown=1))
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None
        collector.on_alert.append(self.push)

    def push(self, item: dict[str, Any]) -> None:
        loop = self.loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(self._broadcast, item)
        except RuntimeError:
            pass

    def _broadcast(self, item: dict[str, Any]) -> None:
        for q in list(self.clients):
            if not q.full():
                q.put_nowait(item)

    def start(self, timeout: float = 10.0) -> None:
        """Serve in the background; raises when it cannot listen."""
        def run() -> None:
            async def main() -> None:
                self.loop = asyncio.get_running_loop()
                await self.server.serve()

            try:
                asyncio.run(main())
            except BaseException as e:  # noqa: BLE001 - reported by start()
                self.error = e

        self._thread = threading.Thread(target=run, name="probewatch-ui", daemon=True)
        self._thread.start()
        import time

        end = time.monotonic() + timeout
        while not self.server.started and time.monotonic() < end:
            if not self._thread.is_alive():
                break
            time.sleep(0.02)
        if not self.server.started:
            from ..errors import ProbewatchError

            raise ProbewatchError(f"--ui: cannot serve on {self.server.config.host}:"
                                  f"{self.server.config.port} ({self.error or 'timeout'})")

    @property
    def port(self) -> int:
        for s in self.server.servers:
            for sock in s.sockets:
                return int(sock.getsockname()[1])
        return int(self.server.config.port)

    def stop(self) -> None:
        self.stopping = True
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(5)
