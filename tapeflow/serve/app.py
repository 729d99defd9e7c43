"""The Starlette application of ``tapeflow serve``: the dashboard page, the read API, the
OpenAPI document and the live WebSocket, behind an optional bearer token."""

from __future__ import annotations

import contextlib
import hmac
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from tapeflow.errors import TapeflowError
from tapeflow.secrets import Secret
from tapeflow.serve import api
from tapeflow.serve.acks import AckStore
from tapeflow.serve.history import DATASETS, History, LakeHistory, WarehouseHistory
from tapeflow.serve.live import LiveHub
from tapeflow.serve.openapi import document
from tapeflow.serve.params import ParamError
from tapeflow.serve.settings import ServeSettings

STATIC = Path(__file__).parent / "static"
OPEN_PATHS = ("/health", "/ready", "/openapi.json")


class TokenGate:
    """Requires the token on ``/api`` and ``/ws`` (header ``Authorization: Bearer`` or ``?token=``).

    The page and its static files stay open: they hold no data, and the page asks for the token.
    """

    def __init__(self, app: ASGIApp, token: Secret) -> None:
        self.app, self._token = app, token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if (
            scope["type"] in ("http", "websocket")
            and path.startswith(("/api", "/ws"))
            and not self._ok(scope)
        ):
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008, "reason": "token required"})
                return
            body = orjson.dumps({"error": "a token is required: Authorization: Bearer TOKEN"})
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"www-authenticate", b'Bearer realm="tapeflow"'),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)

    def _ok(self, scope: Scope) -> bool:
        for name, value in scope.get("headers", []):
            if name == b"authorization" and value.startswith(b"Bearer "):
                return hmac.compare_digest(value[7:].strip(), self._token.reveal().encode())
        from urllib.parse import parse_qs

        given = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [""])[-1]
        return hmac.compare_digest(given.encode(), self._token.reveal().encode())


def history_of(settings: ServeSettings) -> History:
    """The lake, or ClickHouse when a DSN is configured."""
    if settings.clickhouse:
        return WarehouseHistory(settings.clickhouse)
    return LakeHistory(settings.lake)


async def live_socket(websocket: WebSocket) -> None:
    hub: LiveHub | None = websocket.app.state.hub
    await websocket.accept()
    if hub is None:
        await websocket.send_text(orjson.dumps({"type": "hello", "live": False, "state": None}).decode())
        await websocket.close(1000, "this server relays no live flow (start it with --live)")
        return
    q = hub.subscribe()
    try:
        await websocket.send_text(
            orjson.dumps({"type": "hello", "live": True, "state": hub.snapshot()}).decode()
        )
        while (line := await q.get()) is not None:
            await websocket.send_text(line.decode())
        await websocket.close(1013, "too slow: fell behind the live stream")
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        hub.unsubscribe(q)


async def page(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})


async def favicon(request: Request) -> Response:
    return Response(status_code=204)


async def openapi(request: Request) -> Response:
    return api.JSON(request.app.state.openapi)


def build_app(settings: ServeSettings, *, history: History | None = None) -> Starlette:
    """The application for ``settings`` (``history`` overrides where history is read, for tests)."""
    routes: list[Any] = [
        Route("/", page),
        Route("/favicon.ico", favicon),
        Route("/health", api.health),
        Route("/ready", api.ready),
        Route("/openapi.json", openapi),
        Route("/api/v1/instruments", api.instruments),
        Route("/api/v1/feed", api.feed),
        Route("/api/v1/live", api.live_state),
        Route("/api/v1/alerts/{alert_id}/ack", api.get_ack, methods=["GET"]),
        Route("/api/v1/alerts/{alert_id}/ack", api.post_ack, methods=["POST"]),
        Route("/api/v1/quality", api.dagster_rows),
        Route("/api/v1/runs", api.dagster_rows),
        *(Route(f"/api/v1/{name}", api.dataset_handler(name)) for name in DATASETS),
        WebSocketRoute("/ws/live", live_socket),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    hub = LiveHub(*settings.live) if settings.live else None

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if hub is not None:
            hub.start()
        yield
        if hub is not None:
            await hub.stop()

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={ParamError: api.bad_parameter, TapeflowError: api.storage_failed},
    )
    app.state.settings = settings
    app.state.history = history if history is not None else history_of(settings)
    app.state.hub = hub
    app.state.acks = AckStore(settings.ack_file())
    app.state.openapi = document()
    if settings.token is not None:
        app.add_middleware(TokenGate, token=settings.token)
    return app
