"""The benchmark report: every benchmark in one run, one table, and the plots.

    ./dev bench              # installs what it needs, then runs this
    .venv/bin/python bench/report.py [--quick]

It runs, one after another and each with its baseline in the same run:

- `e2e.py` with 1, 10 and 100 environments: end-to-end throughput and latency
  against the CI deploy-script baseline (clone, write, commit, pull --rebase,
  push per release, 4 jobs in parallel);
- `ingest.py`: artifacts accepted per second and their p99 under gunicorn,
  the load from a separate process, against `GET /health` on the same server;
- `history.py`: release history and one release write at 100 and 10,000
  commits of history, against the Go original's `git log` walks and CI's
  clone, commit and push of the same release.

Then it prints the table of figures and goals and writes PNG plots into
`bench/plots/`: latency distributions, throughput against the number of
environments, history latency against repository size, and per-release write
cost against history length. The raw figures go to
`bench/results/report-<time>/`. Nothing asserts: these are measurements.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from reporting import RESULTS_DIR, ROOT, ratio, save_result, source_version  # beside this file

PLOTS_DIR = ROOT / "bench" / "plots"
ENVIRONMENTS = (1, 10, 100)
GOALS = {"throughput": 20.0, "ingest_per_second": 1000.0, "ingest_p99_ms": 50.0,
         "history": 50.0, "history_growth": 1.5}  # fmt: skip


def run(script: str, *args: str) -> None:
    """Run a benchmark beside this file, its output on this terminal."""
    command = [sys.executable, str(ROOT / "bench" / script), *args]
    print(f"\n$ {' '.join(command[1:])}", flush=True)
    subprocess.run(command, check=True, cwd=ROOT)


def measure(out: Path, quick: bool) -> dict[str, Any]:
    artifacts = "60" if quick else "200"
    e2e = {}
    for envs in ENVIRONMENTS:
        path = out / f"e2e-{envs}.json"
        profile = [] if envs == 10 else ["--no-profile"]
        run("e2e.py", "--envs", str(envs), "--artifacts", artifacts, "--json", str(path), *profile)
        e2e[envs] = json.loads(path.read_text())
    run("ingest.py", "--seconds", "3" if quick else "10", "--json", str(out / "ingest.json"))
    history_args = ["--quick"] if quick else []
    run("history.py", *history_args, "--json", str(out / "history.json"))
    return {
        "e2e": e2e,
        "ingest": json.loads((out / "ingest.json").read_text()),
        "history": json.loads((out / "history.json").read_text()),
    }


def table(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per figure: gimletd's value, the baseline's, their ratio and the goal."""
    rows: list[dict[str, Any]] = []

    def row(figure: str, ours: float, theirs: float, times: float, goal: str, met: bool | None):
        rows.append({"figure": figure, "gimletd": ours, "baseline": theirs, "ratio": times,
                     "goal": goal, "met": met})  # fmt: skip

    for envs, e2e in results["e2e"].items():
        g, b = e2e["runs"]["gimletd"], e2e["runs"]["baseline"]
        times = ratio(g["throughput"], b["throughput"])
        lost = g["artifacts"] - g["committed"] - g["outcomes"].get("superseded", 0)
        plural = "s" if str(envs) != "1" else ""
        row(f"e2e commits/s, {envs} env{plural}", g["throughput"],
            b["throughput"], times, f">= {GOALS['throughput']:g}x, 0 lost",
            times >= GOALS["throughput"] and lost == 0)  # fmt: skip
        superseded = g["outcomes"].get("superseded", 0)
        if superseded:
            # A policy deploy with a newer one of its app queued behind it is not committed:
            # its env ends on the newer artifact all the same (I3). The baseline commits each.
            settled = (g["committed"] + superseded) / g["window"]
            row(f"  releases settled/s ({superseded} superseded)", settled, b["throughput"],
                ratio(settled, b["throughput"]), "", None)  # fmt: skip
        if str(envs) == "10":
            row("e2e p50 latency s, 10 envs", g["p50"], b["p50"], ratio(b["p50"], g["p50"]),
                "", None)  # fmt: skip
            row("e2e p99 latency s, 10 envs", g["p99"], b["p99"], ratio(b["p99"], g["p99"]),
                "", None)  # fmt: skip
    ingest = results["ingest"]
    g, b = ingest["gimletd"], ingest["baseline"]
    row("ingest artifacts/s (baseline: GET /health)", g["per_second"], b["per_second"],
        ratio(g["per_second"], b["per_second"]), f">= {GOALS['ingest_per_second']:g}/s",
        g["per_second"] >= GOALS["ingest_per_second"])  # fmt: skip
    row("ingest p99 ms", g["p99_ms"], b["p99_ms"], ratio(b["p99_ms"], g["p99_ms"]),
        f"< {GOALS['ingest_p99_ms']:g} ms", g["p99_ms"] < GOALS["ingest_p99_ms"])  # fmt: skip
    sizes = results["history"]["sizes"]
    largest = max(sizes, key=int)
    for size, figures in sizes.items():
        query = figures["queries"][0]
        api, walk = query["api"]["median_ms"], query["baseline"]["median_ms"]
        goal, met = (f">= {GOALS['history']:g}x", ratio(walk, api) >= GOALS["history"])
        row(f"history ms, {size} commits (baseline: git walk)", api, walk, ratio(walk, api),
            *((goal, met) if size == largest else ("", None)))  # fmt: skip
    small, large = (sizes[k] for k in sorted(sizes, key=int))

    def growth(pick: Callable[[dict[str, Any]], float]) -> float:
        return ratio(pick(large), pick(small))

    api_growth = growth(lambda size: size["queries"][0]["api"]["median_ms"])
    walk_growth = growth(lambda size: size["queries"][0]["baseline"]["median_ms"])
    row("history growth, large/small", api_growth, walk_growth, float("nan"),
        f"< {GOALS['history_growth']:g}x", api_growth < GOALS["history_growth"])  # fmt: skip
    for size, figures in sizes.items():
        write, ci = figures["write"]["median_ms"], figures["baseline_write"]["median_ms"]
        row(f"write ms, {size} commits (baseline: CI job)", write, ci, ratio(ci, write),
            "", None)  # fmt: skip
    write_growth = growth(lambda size: size["write"]["median_ms"])
    ci_growth = growth(lambda size: size["baseline_write"]["median_ms"])
    row("write growth, large/small", write_growth, ci_growth, float("nan"),
        f"< {GOALS['history_growth']:g}x", write_growth < GOALS["history_growth"])  # fmt: skip
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"\n{'figure':<46} {'gimletd':>10} {'baseline':>10} {'ratio':>8}  goal")
    for r in rows:
        verdict = {True: "met", False: "NOT met", None: ""}[r["met"]]
        print(f"{r['figure']:<46} {r['gimletd']:>10.2f} {r['baseline']:>10.2f} "
              f"{r['ratio']:>7.1f}x  {r['goal']} {verdict}".rstrip())  # fmt: skip


def plot(results: dict[str, Any], directory: Path) -> list[Path]:
    """The four plots of the report, as PNG files in `directory`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    written = []

    def save(figure: Any, name: str) -> None:
        figure.tight_layout()
        path = directory / name
        figure.savefig(path, dpi=110)
        plt.close(figure)
        written.append(path)

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    e2e = results["e2e"]["10"] if "10" in results["e2e"] else results["e2e"][10]
    for name in ("gimletd", "baseline"):
        values = e2e["runs"][name]["latencies"]
        left.plot(values, [(i + 1) / len(values) for i in range(len(values))], label=name)
    left.set(xscale="log", xlabel="seconds from 201 (or job start) to commit on the remote",
             ylabel="share of releases", title="End-to-end latency, 10 environments")  # fmt: skip
    for name, label in (("gimletd", "POST /api/artifact"), ("baseline", "GET /health")):
        values = results["ingest"][name]["latencies_ms"]
        right.plot(values, [(i + 1) / len(values) for i in range(len(values))], label=label)
    right.axvline(GOALS["ingest_p99_ms"], color="grey", linestyle=":", label="p99 goal")
    right.set(xscale="log", xlabel="ms per request at the client", ylabel="share of requests",
              title="Ingestion latency under load")  # fmt: skip
    for axis in (left, right):
        axis.grid(alpha=0.3)
        axis.legend()
    save(figure, "latency.png")

    figure, axis = plt.subplots(figsize=(6, 4))
    envs = sorted(results["e2e"], key=int)
    for name in ("gimletd", "baseline"):
        axis.plot([int(e) for e in envs],
                  [results["e2e"][e]["runs"][name]["throughput"] for e in envs],
                  marker="o", label=name)  # fmt: skip
    axis.set(xscale="log", yscale="log", xlabel="environments", ylabel="commits per second",
             title="Throughput against the number of environments")  # fmt: skip
    axis.grid(alpha=0.3)
    axis.legend()
    save(figure, "throughput-envs.png")

    sizes = results["history"]["sizes"]
    commits = sorted(sizes, key=int)
    figure, axis = plt.subplots(figsize=(6, 4))
    for key, label in (("api", "gimletd GET /api/releases"),
                       ("baseline", "baseline: the original's git walks"),
                       ("baseline_stopping_early", "baseline stopping early")):  # fmt: skip
        axis.plot([int(c) for c in commits],
                  [sizes[c]["queries"][0][key]["median_ms"] for c in commits],
                  marker="o", label=label)  # fmt: skip
    axis.set(xscale="log", yscale="log", xlabel="commits of history", ylabel="ms (median)",
             title="Release history latency against repository size")  # fmt: skip
    axis.grid(alpha=0.3)
    axis.legend()
    save(figure, "history-latency.png")

    figure, axis = plt.subplots(figsize=(6, 4))
    for key, label in (("write", "gimletd: one release write"),
                       ("write_apply_queue", "  apply_queue"),
                       ("write_sync_index", "  sync_index of the commit"),
                       ("baseline_write", "baseline: CI's clone, commit and push")):  # fmt: skip
        axis.plot([int(c) for c in commits], [sizes[c][key]["median_ms"] for c in commits],
                  marker="o", label=label)  # fmt: skip
    axis.set(xscale="log", xlabel="commits of history", ylabel="ms (median)", ylim=(0, None),
             title="Per-release write cost against history length")  # fmt: skip
    axis.grid(alpha=0.3)
    axis.legend()
    save(figure, "write-cost.png")
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of every benchmark")
    parser.add_argument("--plots", type=Path, default=PLOTS_DIR, help="where the PNGs go")
    options = parser.parse_args(argv)
    out = RESULTS_DIR / f"report-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True)
    load = os.getloadavg()[0]
    try:
        results = json.loads(json.dumps(measure(out, options.quick)))  # str keys, as on disk
    except subprocess.CalledProcessError as exc:
        print(f"\nerror: {' '.join(exc.cmd[1:])} failed ({exc.returncode})", file=sys.stderr)
        return 1
    rows = table(results)
    print_table(rows)
    print(f"source: {source_version()}; machine: {os.cpu_count()} CPUs; 1-minute load average "
          f"{load:.2f} before, {os.getloadavg()[0]:.2f} after")  # fmt: skip
    for path in plot(results, options.plots):
        print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    summary = save_result("report", {"rows": rows, "source": source_version()}, out / "table.json")
    print(f"wrote {summary.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
