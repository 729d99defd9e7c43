"""A real redis-server per test module (Debian's package; `make test` installs it as root)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from tapeflow.bus.server import INSTALL_HINT, LocalRedis


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedis]:
    """A redis-server on a free loopback port in a temporary folder, stopped after the module."""
    if shutil.which("redis-server") is None:
        pytest.skip(f"redis-server not installed: {INSTALL_HINT}")
    with LocalRedis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis_url(redis_server: LocalRedis) -> Iterator[str]:
    """The module's server, emptied for each test."""
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    yield redis_server.url
