"""``.env.example`` lists every secret tapeflow reads (and its ``_FILE`` form); the pre-commit config
runs the secret scanner against the audited baseline (issue 13, "Secrets")."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _secret_names() -> set[str]:
    # every name read through tapeflow.secrets.env_secret, and the warehouse password's
    names = set()
    for path in (ROOT / "tapeflow").rglob("*.py"):
        names |= set(re.findall(r'env_secret\(\w+, "([A-Z0-9_]+)"\)', path.read_text()))
    names |= set(re.findall(r'PASSWORD_ENV = "([A-Z0-9_]+)"', (ROOT / "tapeflow/storage/dsn.py").read_text()))
    return names


def test_every_secret_and_its_file_form_is_in_the_env_example() -> None:
    names = _secret_names()
    assert {"DATABENTO_API_KEY", "TAPEFLOW_CLICKHOUSE_PASSWORD"} <= names
    lines = (ROOT / ".env.example").read_text().splitlines()
    for name in names | {"TAPEFLOW_SERVE_TOKEN"}:
        for form in (name, f"{name}_FILE"):
            (line,) = [x for x in lines if re.match(rf"#\s*{form}=", x)]
            assert "# secret" in line, line  # marked as one (and commented out: no value is set)


def test_pre_commit_runs_the_secret_scanner_against_the_baseline() -> None:
    config = (ROOT / ".pre-commit-config.yaml").read_text()
    assert re.search(r"entry: detect-secrets-hook --baseline \.secrets\.baseline", config)
    assert (ROOT / ".secrets.baseline").is_file()
