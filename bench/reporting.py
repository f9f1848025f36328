"""What every benchmark shares: ratios, the source version measured, and result files.

Imported by the scripts beside it (`python bench/<name>.py` puts `bench/` on sys.path).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
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


#: A frame of py-spy's raw output: `function (path:line)`.
FRAME = re.compile(r"^(?P<function>.*) \((?P<path>[^()]*):\d+\)$")
#: Our code, as opposed to the libraries it calls.
OWN_CODE = ("api/", "workers/", "gimletd/")


def start_py_spy(pid: int, output: Path) -> subprocess.Popen[bytes]:
    """Sample `pid` and its children with py-spy into `output` until `stop_py_spy`.

    Attaching needs ptrace: root, or `kernel.yama.ptrace_scope` 0.

    :raise RuntimeError: when py-spy is not installed (the `bench` extra has it).
    """
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        raise RuntimeError("py-spy is not installed: ./dev bench installs it (the bench extra)")
    command = [py_spy, "record", "--pid", str(pid), "--subprocesses", "--rate", "200",
               "--format", "raw", "--output", str(output), "--nonblocking"]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stop_py_spy(
    samplers: list[tuple[subprocess.Popen[bytes], Path]], *, within: str | tuple[str, ...]
) -> dict[str, list[tuple[float, str]]]:
    """Stop the samplers (py-spy writes its file on SIGINT) and summarise what they saw."""
    for sampler, _ in samplers:
        sampler.send_signal(signal.SIGINT)
    lines: list[str] = []
    for sampler, raw in samplers:
        _, errors = sampler.communicate(timeout=60)
        if not raw.exists():
            raise RuntimeError(f"py-spy wrote nothing (it needs root or ptrace_scope 0): "
                               f"{errors.decode()[-500:]}")  # fmt: skip
        lines += raw.read_text().splitlines()
    return py_spy_summary(lines, within=within)


def py_spy_summary(
    lines: list[str], *, within: str | tuple[str, ...], top: int = 20
) -> dict[str, list[tuple[float, str]]]:
    """Where the samples whose stack passes through `within` (any of) were taken, as shares.

    `ours`: our functions, each counted once per sample it is on the stack of
    (inclusive: a caller's share includes its callees'). `innermost`: the
    function running when the sample was taken (any code, libraries included),
    which says whether the time is SQLite, Redis, JSON or Python glue.
    """
    markers = (within,) if isinstance(within, str) else within
    ours: Counter[str] = Counter()
    innermost: Counter[str] = Counter()
    total = 0
    for line in lines:
        stack, _, count = line.rpartition(" ")
        if not count.isdigit() or not any(frame in stack for frame in markers):
            continue
        frames = [m for m in map(FRAME.match, stack.split(";")) if m is not None]
        if not frames:
            continue
        total += int(count)
        ours.update(dict.fromkeys(_names(frames, own_only=True), int(count)))
        innermost[_names(frames[-1:], own_only=False)[0]] += int(count)
    if not total:
        return {"ours": [], "innermost": []}
    return {
        key: [(100 * n / total, name) for name, n in counter.most_common(top)]
        for key, counter in (("ours", ours), ("innermost", innermost))
    }


def _names(frames: list[re.Match[str]], *, own_only: bool) -> list[str]:
    names = []
    for frame in frames:
        path = _own_path(frame["path"])
        if path or not own_only:
            where = path or frame["path"].rpartition("site-packages/")[2]
            names.append(f"{frame['function']} ({where})")
    return names


def _own_path(path: str) -> str:
    """`path` relative to the project when it is our code, else ""."""
    relative = path.split(str(ROOT) + "/", 1)[-1]
    return relative if relative.startswith(OWN_CODE) else ""


def print_profile(profile: dict[str, list[tuple[float, str]]], what: str) -> None:
    """Print a `py_spy_summary`."""
    print(f"\nwhere {what} spends its time (py-spy; share of its samples):")
    print("  our functions, with what they call:")
    for share, function in profile["ours"]:
        print(f"    {share:5.1f}%  {function}")
    print("  running when sampled:")
    for share, function in profile["innermost"]:
        print(f"    {share:5.1f}%  {function}")
