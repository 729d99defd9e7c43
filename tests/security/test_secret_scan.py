"""The secret scanner (detect-secrets) over every tracked file, against the audited baseline.

`.secrets.baseline` lists every string detect-secrets flags in the repository, each audited as not a
secret (placeholders such as ``env:HOOK_KEY``, canaries, documentation DSNs). A string the scanner
finds that the baseline does not hold fails here with its file and line: remove it, or, if it is a
placeholder, audit it into the baseline (docs/security.md, "The secret scanner"). Lines move all the
time, so findings are compared by file, type and hashed value, never by line number.

Every file is first read by the plugins alone (:func:`_may_hold_a_finding`); only the few files where
a plugin finds a candidate (about 32 of 960) go through detect-secrets' own scan with its filters.
The result is the same, since a filter only ever drops a plugin's candidate, and the scan costs a
fraction of the CPU: its per-line filters, run before the plugins on every line (the
indirect-reference regex first), were most of it.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BASELINE = ROOT / ".secrets.baseline"
# made-up credentials for the teeth test; the pragma keeps this source line itself out of the scan
PLANTED = ('aws_key = "AKIAIOSFODNN7EXAMPLF"\n'  # pragma: allowlist secret
           'password = "hunter2-but-longer-9f8e7d"\n')  # pragma: allowlist secret


def _key(filename: str, finding: dict) -> tuple[str, str, str]:
    return filename, finding["type"], finding["hashed_secret"]


def _tracked_files() -> list[str]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"not a git checkout ({exc}): the scanner covers tracked files only")
    return [name for name in out.stdout.decode().split("\0")
            if name and name != BASELINE.name and (ROOT / name).is_file()]


def _may_hold_a_finding(path: Path) -> bool:
    """Whether any configured plugin finds a candidate on any line detect-secrets would scan in
    ``path`` (the lines as read, then through its eager transformers), before any filter. A file
    where none does cannot hold a finding. An error says yes: the full scan then reports it."""
    from detect_secrets.core import scan
    from detect_secrets.settings import get_plugins
    from detect_secrets.util.code_snippet import get_code_snippet

    plugins, name = get_plugins(), str(path)
    try:
        for lines in scan._get_lines_from_file(name):
            for number, line in enumerate(lines, start=1):
                text, context = line.rstrip(), get_code_snippet(lines, number)
                for plugin in plugins:
                    if plugin.analyze_line(filename=name, line=text, line_number=number,
                                           context=context):
                        return True
    except Exception:  # noqa: BLE001 - the full scan sees the same error and reports it
        return True
    return False


def _scan(files: list[str], root: Path = ROOT) -> dict[tuple[str, str, str], int]:
    from detect_secrets.core import baseline
    from detect_secrets.settings import transient_settings

    audited = json.loads(BASELINE.read_text())
    config = {"plugins_used": audited["plugins_used"], "filters_used": audited["filters_used"]}
    found: dict[tuple[str, str, str], int] = {}
    with transient_settings(config):
        candidates = [name for name in files if _may_hold_a_finding(root / name)]
        collection = baseline.create(*candidates, root=str(root), num_processors=1)
    for filename, findings in collection.json().items():
        for finding in findings:
            found[_key(filename, finding)] = finding["line_number"]
    return found


def test_the_baseline_is_audited_and_holds_no_real_secret():
    audited = json.loads(BASELINE.read_text())
    findings = [(name, f) for name, fs in audited["results"].items() for f in fs]
    assert findings, "an empty baseline would let this file's other test pass over nothing"
    unaudited = [f"{name}:{f['line_number']} ({f['type']})" for name, f in findings
                 if f.get("is_secret") is not False]
    assert not unaudited, f"baseline entries not audited as placeholders: {unaudited}"


def test_no_tracked_file_holds_a_secret_the_baseline_does_not_know(monkeypatch):
    monkeypatch.chdir(ROOT)
    found = _scan(_tracked_files())
    audited = json.loads(BASELINE.read_text())
    known = {_key(name, f) for name, fs in audited["results"].items() for f in fs}
    new = sorted(f"{name}:{line} {kind}" for (name, kind, h), line in found.items()
                 if (name, kind, h) not in known)
    assert not new, ("detect-secrets found strings that look like secrets and are not in "
                     f".secrets.baseline: {new}. Remove them, or audit placeholders into the "
                     "baseline as docs/security.md says.")


def test_the_scanner_has_teeth(tmp_path, monkeypatch):
    """A planted AWS-style key and a password assignment are both found, through the same plugin
    pass and scan as the tracked files (beside two clean files): the scan is not a no-op."""
    (tmp_path / "leak.py").write_text(PLANTED)
    (tmp_path / "clean.py").write_text('answer = "forty-two"\n')
    (tmp_path / "notes.md").write_text("A plain line.\n")
    monkeypatch.chdir(tmp_path)
    found = _scan(["clean.py", "leak.py", "notes.md"], root=tmp_path)
    kinds = {kind for name, kind, _ in found if name == "leak.py"}
    assert "AWS Access Key" in kinds and "Secret Keyword" in kinds, found
    assert {name for name, _, _ in found} == {"leak.py"}, found
