"""A project-local ``DAGSTER_HOME``: run history that survives restarts, telemetry off, one run at a time.

``python -m dagster_project.home [DIR]`` creates ``DIR`` (default ``.dagster``) and its
``dagster.yaml`` when missing (an existing one is left as the user edited it); ``make ui`` and
``make validate`` call it first.
"""

from __future__ import annotations

import sys
from pathlib import Path

DEFAULT_HOME = Path(".dagster")
# One run at a time: the embedded ClickHouse (chdb) admits one writer process per data directory,
# and a two-core machine gains nothing from parallel runs. Queued runs wait, they do not fail.
DAGSTER_YAML = """\
# written by dagster_project/home.py (make ui); edit freely, it is not overwritten
telemetry:
  enabled: false
run_queue:
  max_concurrent_runs: 1
run_monitoring:
  enabled: true
"""


def ensure_home(home: Path = DEFAULT_HOME) -> Path:
    """Create ``home`` with a ``dagster.yaml`` (telemetry off, a one-run queue) unless it has one.

    Returns:
        The absolute path of ``home``.
    """
    home = Path(home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML)
    return home


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    print(ensure_home(Path(args[0]) if args else DEFAULT_HOME))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
