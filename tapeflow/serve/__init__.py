"""``tapeflow serve``: the dashboard and the read API (``/api/v1``) on one local web server.

``settings`` (bind address, token, where history comes from), ``params`` (query parameters, each
bad one a 400 naming it), ``history`` (lake and ClickHouse-server reads with time-range cursors),
``encode`` (JSON pages, Arrow IPC / Parquet / CSV streams), ``api`` and ``openapi`` (the routes and
their schema), ``live`` (the relay from the flow's publisher to browsers' WebSockets),
``publish`` (the publisher the live flow runs), ``acks`` (acknowledgements), ``browser`` (the
headless Chromium of the browser test and the benchmark), ``app`` (the Starlette application), ``cli``.
Imports nothing here, so ``tapeflow --help`` does not load Starlette (docs/dashboard.md).
"""
