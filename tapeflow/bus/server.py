"""A local ``redis-server`` (Debian's package) on loopback, for the tests, the benchmark and a demo.

``python -m tapeflow.bus.server [--port 6379] [--dir .redis]`` runs one in the foreground (what
``make redis`` does); :class:`LocalRedis` starts one on a free port in a folder of its own and
stops it, and can stop and start it again on the same port (an outage, for the failure tests).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from tapeflow.bus.streams import BusError

INSTALL_HINT = "install Debian's redis-server (apt-get install -y redis-server; `make test` does as root)"


def redis_binary() -> str:
    """The ``redis-server`` executable.

    Raises:
        BusError: it is not on PATH (says how to install it).
    """
    found = shutil.which("redis-server")
    if found is None:
        raise BusError(f"redis-server not found on PATH: {INSTALL_HINT}")
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalRedis:
    """A ``redis-server`` bound to 127.0.0.1 on a free port, its files in ``directory``.

    Args:
        directory: working folder (logs; no persistence unless ``appendonly``).
        port: the port (None: a free one).
        appendonly: keep an append-only file, so a restart keeps the streams.
    """

    def __init__(self, directory: Path, port: int | None = None, *, appendonly: bool = False) -> None:
        self.directory = Path(directory)
        self.port = port or free_port()
        self._own_port = port is None
        self.appendonly = appendonly
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> LocalRedis:
        """Start the server and wait until it answers PING (on a port it chose: another free port
        when something took that one between the choice and the start).

        Raises:
            BusError: no redis-server, or it did not answer in time (its log's tail in the message).
        """
        tries = 3 if self._own_port else 1
        for attempt in range(1, tries + 1):
            try:
                return self._start(timeout_s)
            except BusError:
                if attempt == tries:
                    raise
                self.port = free_port()
        raise AssertionError("unreachable")

    def _start(self, timeout_s: float) -> LocalRedis:
        self.directory.mkdir(parents=True, exist_ok=True)
        log = self.directory / "redis.log"
        cmd = [redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
               "--save", "", "--appendonly", "yes" if self.appendonly else "no", "--logfile", str(log),
               "--daemonize", "no"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if self.ping() and self.proc.poll() is None:
                return self
            time.sleep(0.05)
        self.stop()
        tail = log.read_text(errors="replace")[-1000:] if log.exists() else ""
        raise BusError(f"redis-server on port {self.port} did not start: {tail}")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s)."""
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def __enter__(self) -> LocalRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """``make redis``: a redis-server on 127.0.0.1 in the foreground, with an append-only file
    (returns only when it cannot start one)."""
    parser = argparse.ArgumentParser(prog="python -m tapeflow.bus.server", description=__doc__)
    parser.add_argument("--port", type=int, default=6379)
    parser.add_argument("--dir", type=Path, default=Path(".redis"))
    args = parser.parse_args(argv)
    try:
        binary = redis_binary()
    except BusError as exc:
        print(f"tapeflow: {exc}", file=sys.stderr)
        return 2
    args.dir.mkdir(parents=True, exist_ok=True)
    print(f"redis at redis://127.0.0.1:{args.port}/0 (files in {args.dir}); Ctrl-C stops it", flush=True)
    cmd = [binary, "--port", str(args.port), "--bind", "127.0.0.1", "--dir", str(args.dir.resolve()),
           "--save", "", "--appendonly", "yes"]
    # exec: the server replaces this process, so SIGTERM/SIGINT reach it and nothing is left behind
    os.execv(binary, cmd)


if __name__ == "__main__":
    sys.exit(main())
