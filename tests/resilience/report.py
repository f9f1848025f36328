"""The resilience report: what each run did and every invariant it breached, after the session.

A plugin of the whole suite (`tests/conftest.py` loads it), not of this
directory's conftest: under pytest-xdist the tests run in worker processes, and
only the reports of their tests reach the process that prints the summary. Each
run's lines travel in its test report's `user_properties`.
"""

from __future__ import annotations

from typing import Any

import pytest

#: The name of the user property that carries a run's report lines.
REPORT_PROPERTY = "resilience-report"

_RUNS: list[list[str]] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call":
        _RUNS.extend(value for name, value in report.user_properties if name == REPORT_PROPERTY)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _RUNS:
        return
    terminalreporter.section("resilience report")
    for lines in _RUNS:
        for line in lines:
            terminalreporter.write_line(line)
