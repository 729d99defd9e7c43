"""Real local receivers for the alert channels: an aiohttp server (webhook, Slack, SMS formats)
that checks signatures the way a receiver would, with injectable faults, and an aiosmtpd server
with STARTTLS and AUTH."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web

WAIT_S = 30.0  # generous: the machine is shared and loaded; conditions end the waits, not the clock


def wait_until(condition: Callable[[], bool], step: Callable[[], object] = lambda: None,
               timeout_s: float = WAIT_S) -> None:
    """Call ``step`` until ``condition`` holds; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        step()
        if condition():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        time.sleep(0.005)


class HttpReceiver:
    """An HTTP receiver on 127.0.0.1 in its own thread.

    ``faults`` holds what the next requests get instead of a 200: ``"500"``, ``"400"``,
    ``"slow"`` (an answer after ``slow_s``) or ``"reset"`` (the connection reset, no answer).
    ``accepted`` holds the requests answered 200; ``seen`` every request, faulted ones included.
    """

    def __init__(self, webhook_secret: bytes, sms_user: str = "", sms_token: str = "") -> None:
        self.webhook_secret = webhook_secret
        self.sms_auth = "Basic " + base64.b64encode(f"{sms_user}:{sms_token}".encode()).decode()
        self.faults: deque[str] = deque()
        self.slow_s = 3.0
        self.accepted: list[dict[str, Any]] = []
        self.seen: list[dict[str, Any]] = []
        self.rejected: list[str] = []
        self.port = 0
        self.scheme = "http"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None

    def url(self, path: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/{path}"

    def start(self, port: int = 0, tls: tuple[str, str] | None = None) -> HttpReceiver:
        """Listen on ``port`` (0: any free one); ``tls``: (cert, key) files to serve HTTPS."""
        import ssl

        context = None
        if tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*tls)
        self.scheme = "https" if tls else "http"
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, daemon=True).start()

        async def serve() -> None:
            app = web.Application()
            app.router.add_post("/{kind}", self._handle)
            self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", port, reuse_address=True, ssl_context=context)
            await site.start()
            self.port = self._runner.addresses[0][1]
            ready.set()

        asyncio.run_coroutine_threadsafe(serve(), self._loop).result(WAIT_S)
        assert ready.is_set()
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        loop, runner = self._loop, self._runner
        if runner is not None:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(WAIT_S)
        loop.call_soon_threadsafe(loop.stop)
        self._loop = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        kind = request.match_info["kind"]
        record = {"kind": kind, "path": request.path_qs, "headers": dict(request.headers), "body": body}
        self.seen.append(record)
        fault = self.faults.popleft() if self.faults else None
        if fault == "reset":
            sock = request.transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            request.transport.abort()
            return web.Response(status=200)
        if fault == "slow":
            await asyncio.sleep(self.slow_s)
            return web.Response(status=200)
        if fault is not None:
            return web.Response(status=int(fault))
        problem = self._check(kind, request.headers, body)
        if problem:
            self.rejected.append(problem)
            return web.Response(status=401, text=problem)
        self.accepted.append(record)
        return web.Response(status=200, text="ok")

    def _check(self, kind: str, headers: Any, body: bytes) -> str:
        # what a real receiver does, written here from the documented scheme (not tapeflow's code)
        if kind == "webhook":
            timestamp = headers.get("X-Tapeflow-Timestamp", "")
            expected = "sha256=" + hmac.new(self.webhook_secret, f"{timestamp}.".encode() + body,
                                            hashlib.sha256).hexdigest()
            if not hmac.compare_digest(expected, headers.get("X-Tapeflow-Signature", "")):
                return "bad signature"
            if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > 300:
                return "stale timestamp"
        if kind == "sms":
            if headers.get("Authorization") != self.sms_auth:
                return "bad credentials"
            form = parse_qs(body.decode())
            if not {"From", "To", "Body"} <= set(form):
                return "form lacks From/To/Body"
        if not headers.get("Idempotency-Key"):
            return "no idempotency key"
        return ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SmtpReceiver:
    """An aiosmtpd server on 127.0.0.1 that requires STARTTLS before AUTH (LOGIN/PLAIN)."""

    def __init__(self, folder: Any, user: str, password: str) -> None:
        from tests.alerts.tls import self_signed

        self.cert, key = self_signed(folder)
        self.user, self.password = user.encode(), password.encode()
        self.messages: list[Any] = []
        self.port = free_port()
        self._key = key
        self._controller: Any = None

    def start(self) -> SmtpReceiver:
        import ssl

        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult, LoginPassword

        receiver = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                receiver.messages.append(envelope)
                return "250 OK"

        def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
            ok = isinstance(data, LoginPassword) and (data.login, data.password) == (self.user, self.password)
            return AuthResult(success=ok, handled=False)  # handled=False: the server answers 535

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self._key)
        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, tls_context=context,
                                      require_starttls=True, authenticator=authenticate,
                                      auth_require_tls=True)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
