"""A fork server for crash tests: a process that imported what every child needs once, then forks
one child per request line and answers with the child's exit code (-9: SIGKILLed).

A request is tab-separated fields, the last one ``OUT``: the child's stdout and stderr go to
``OUT.stdout`` and ``OUT.stderr``. A fresh interpreter per child spent seconds importing what every
child imports (tests/storage/test_commit_protocol.py, tests/crash/test_kill_dagster.py).
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import traceback
from collections.abc import Callable
from pathlib import Path


def serve(run: Callable[[list[str]], object]) -> None:
    """Answer request lines from stdin until EOF: fork, ``run(fields[:-1])`` in the child, print its
    exit code; then exit at once (nothing to finalize; a large interpreter took seconds to shut down)."""
    for line in sys.stdin:
        *fields, out = line.rstrip("\n").split("\t")
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                for fd, suffix in ((1, ".stdout"), (2, ".stderr")):
                    os.dup2(os.open(out + suffix, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
                run(fields)
                code = 0
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
    os._exit(0)


def request(server: subprocess.Popen[str], fields: list[str], out: str, timeout_s: float,
            what: str) -> tuple[int, str, str]:
    """One child of ``server`` (started with text pipes): its exit code, stdout and stderr.

    Raises:
        AssertionError: no answer within ``timeout_s`` (``what`` names the run), or the server died.
    """
    server.stdin.write("\t".join([*fields, out]) + "\n")
    server.stdin.flush()
    # poll, not select: select() refuses a descriptor numbered 1024 or more, which a worker that
    # has run hundreds of tests can hand out ("filedescriptor out of range in select()")
    poller = select.poll()
    poller.register(server.stdout, select.POLLIN)
    ready = poller.poll(timeout_s * 1000)
    assert ready, f"{what} did not finish in {timeout_s} s"
    answer = server.stdout.readline()
    assert answer, f"the fork server died (exit code {server.poll()})"
    return int(answer), Path(out + ".stdout").read_text(), Path(out + ".stderr").read_text()
