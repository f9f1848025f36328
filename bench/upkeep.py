"""A worker's clone of a network GitOps remote as fetches pile up, with and without upkeep.

    .venv/bin/python bench/upkeep.py [--rounds N] [--quick]

libgit2 keeps the pack of every fetch that brings objects, so a worker's clone
of a network remote gains a pack per fetch, and each pack makes object lookups
slower. Workers run `git gc --auto` by git's own thresholds after their writes
(`workers.gitops.keep_packed`: `GitopsRepository.upkeep_due`, then `upkeep`).
This measures what that is worth, in one run:

- one bare remote served by `git daemon` on 127.0.0.1 (the git protocol, as
  the tests' network remote);
- three clones of it, as three worker processes would hold them: **others**
  commits a release each round, so that every fetch of the other two brings
  objects; **kept** writes a release each round and then does what a worker
  does after a drain (a look, and gc when due); **left** (the baseline, GimletD
  before upkeep) writes a release each round and never packs;
- a write is `fetch`, `commit` and `push` of one release (two files in
  `<env>/<app>/`), as `apply_queue` makes them; its cost is this process's CPU
  (user and system) for it, and for **kept** the CPU of `git gc` too (a child
  process, from `RUSAGE_CHILDREN`). The server's side (git daemon,
  upload-pack, receive-pack) is left out for both.

At each checkpoint it prints the packs in each clone and the mean CPU per write
of the writes since the previous checkpoint. A measurement, not a test: nothing
asserts on timings. Results also go to bench/results/upkeep-<time>.json.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reporting import ratio, save_result, source_version  # beside this file

from gimletd.gitops.repository import AppChange, GitopsRepository, init_bare
from tests.support.gitdaemon import served_by_git_daemon


@dataclass
class Clone:
    """One worker's clone and what its writes cost since the last checkpoint."""

    name: str
    repo: GitopsRepository
    keep_packed: bool
    cpu_seconds: float = 0.0
    writes: int = 0
    upkeeps: int = 0
    checkpoints: list[dict[str, Any]] = field(default_factory=list)

    def packs(self) -> int:
        return len(list((self.repo.path / "objects" / "pack").glob("*.pack")))

    def checkpoint(self, fetches: int) -> dict[str, Any]:
        row = {
            "fetches": fetches,
            "packs": self.packs(),
            "cpu_ms_per_write": 1000 * self.cpu_seconds / max(self.writes, 1),
            "upkeeps": self.upkeeps,
        }
        self.checkpoints.append(row)
        self.cpu_seconds, self.writes = 0.0, 0
        return row


def cpu_seconds() -> float:
    """CPU of this process and of the children it waited for (git gc), user and system."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def write_release(repo: GitopsRepository, number: int) -> None:
    """Fetch, commit one release of `app-{number % 7}` in `env-{number % 10}`, push."""
    files = {
        "deployment.yaml": f"image: registry.example.com/app:{number}\n".encode(),
        "release.json": f'{{"version": {{"sha": "{number:040x}"}}}}\n'.encode(),
    }
    change = AppChange(f"env-{number % 10}", f"app-{number % 7}", files, {})
    head = repo.fetch()
    commit = repo.commit(change, f"release {number}", parent=head)
    if commit is None:
        raise RuntimeError(f"release {number} changed nothing")
    repo.push(commit, expected=head)


def measure(work: Path, rounds: int, checkpoints: Sequence[int]) -> list[Clone]:
    base = work / "served"
    init_bare(base / "gitops.git")
    with served_by_git_daemon(base) as server:
        url = f"{server}/gitops.git"

        def clone(name: str) -> GitopsRepository:
            return GitopsRepository(url, cache_dir=work / "cache", clone_name=name)

        others = clone("others")
        kept, left = Clone("kept", clone("kept"), True), Clone("left", clone("left"), False)
        number = 0
        for fetches in range(1, rounds + 1):
            for writer in (None, kept, left):
                number += 1
                if writer is None:
                    write_release(others, number)
                    continue
                before = cpu_seconds()
                write_release(writer.repo, number)
                if writer.keep_packed and writer.repo.upkeep_due():
                    writer.repo.upkeep()
                    writer.upkeeps += 1
                writer.cpu_seconds += cpu_seconds() - before
                writer.writes += 1
            if fetches in checkpoints:
                rows = [c.checkpoint(fetches) for c in (left, kept)]
                print(
                    f"{fetches:>8} {rows[0]['packs']:>8} {rows[0]['cpu_ms_per_write']:>10.2f}"
                    f" {rows[1]['packs']:>8} {rows[1]['cpu_ms_per_write']:>10.2f}"
                    f" {ratio(rows[0]['cpu_ms_per_write'], rows[1]['cpu_ms_per_write']):>7.2f}x",
                    flush=True,
                )
    return [left, kept]


def parse_options(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=600, help="writes per clone (600)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 120 rounds")
    parser.add_argument("--json", dest="json_path", type=Path, help="write the figures here")
    options = parser.parse_args(argv)
    if options.quick:
        options.rounds = 120
    return options


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    if shutil.which("git") is None:
        print("error: git is not installed", file=sys.stderr)
        return 1
    step = max(options.rounds // 6, 1)
    checkpoints = [*range(step, options.rounds, step), options.rounds]
    print(f"upkeep: {options.rounds} fetches into each clone, each bringing a pack")
    print(f"{'':>8} {'left (no upkeep)':>19} {'kept (upkeep)':>19}")
    print(f"{'fetches':>8} {'packs':>8} {'CPU ms':>10} {'packs':>8} {'CPU ms':>10} {'ratio':>8}")
    work = Path(tempfile.mkdtemp(prefix="gimletd-bench-upkeep-"))
    try:
        left, kept = measure(work, options.rounds, checkpoints)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "version": source_version(),
        "rounds": options.rounds,
        "left": left.checkpoints,
        "kept": kept.checkpoints,
        "ratio_last": ratio(
            left.checkpoints[-1]["cpu_ms_per_write"], kept.checkpoints[-1]["cpu_ms_per_write"]
        ),
    }
    print("CPU ms: mean per write since the row before (kept: with its git gc runs)")
    print(f"wrote {save_result('upkeep', result, options.json_path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
