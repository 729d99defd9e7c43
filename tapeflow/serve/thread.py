"""The server in a thread of the calling process: what the tests and ``bench/dashboard.py`` run."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from tapeflow.errors import TapeflowError


@contextmanager
def serving(app: Any, *, host: str = "127.0.0.1", start_timeout_s: float = 30.0) -> Iterator[str]:
    """Serve ``app`` with uvicorn on ``host`` (a free port) until the block ends; yields the base URL.

    Raises:
        TapeflowError: uvicorn did not start within ``start_timeout_s``.
    """
    config = uvicorn.Config(app, host=host, port=0, log_level="warning", access_log=False, lifespan="on",
                            ws="websockets-sansio")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="tapeflow-serve", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            server.should_exit = True
            raise TapeflowError(f"uvicorn did not start on {host} within {start_timeout_s:g} s")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
