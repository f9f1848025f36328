"""What every benchmark shares: ratios, the source version measured, and result files.

Imported by the scripts beside it (`python bench/<name>.py` puts `bench/` on sys.path).
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "bench" / "results"


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def source_version() -> str:
    """The commit measured, `-dirty` when tracked files changed, `unknown` outside git."""
    try:
        head = _git("rev-parse", "--short", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}-dirty" if dirty else head


def save_result(name: str, result: dict[str, Any], path: Path | None = None) -> Path:
    """Write `result` as JSON to `path`, or to `bench/results/<name>-<time>.json`."""
    if path is None:
        path = RESULTS_DIR / f"{name}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(json_safe(result), indent=2, default=str) + "\n")
    return path


def json_safe(value: Any) -> Any:
    """NaN (say, a ratio to a run that measured nothing) as null, since JSON has no NaN."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


def _git(*args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()
