"""The suite's chaos report: each test's record (faults and events, also from xdist workers
through their reports), the terminal summary, the JSON file of `--chaos-report`, and the
timeline section a failed test shows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_chaos._keys import config_key

if TYPE_CHECKING:
    from pytest_chaos.chaos import Chaos

REPORT_PROPERTY = "chaos"


def attach_record(item: pytest.Item, report: pytest.TestReport, chaos: Chaos) -> None:
    """Put the test's chaos record on its call report (and its timeline on a failure)."""
    from pytest_chaos.backends.client import FeatureUnavailable, ToxiproxyError

    try:
        timeline = chaos.timeline()
    except (ToxiproxyError, FeatureUnavailable) as error:
        # The report must not die with the engine: show the faults, and why events are missing.
        timeline = chaos.timeline_without_events(f"(events unavailable: {error})")
    if report.failed and (timeline.entries() or timeline.note):
        # A test that injected nothing and whose proxies saw nothing gets no empty section.
        report.sections.append(("chaos timeline", timeline.render()))
    record = {"nodeid": item.nodeid, "outcome": report.outcome, **timeline.to_json()}
    loads = [load.to_json(chaos.started_at) for load in chaos.loads if load.started_at]
    if loads:
        record["loads"] = loads
    entry = (REPORT_PROPERTY, json.dumps(record))
    report.user_properties.append(entry)
    # As record_property does: JUnit XML reads the properties of the teardown report, which
    # copies the item's.
    item.user_properties.append(entry)


class ChaosReporter:
    """Gathers each test's chaos record for the terminal summary and the JSON report."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.settings = config.stash[config_key]
        self.faults = 0
        self.records: list[dict[str, Any]] = []
        self.html_written: Path | None = None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # The call report and the teardown report both carry the record; count it once.
        if report.when != "teardown":
            return
        for key, value in report.user_properties:
            if key == REPORT_PROPERTY and isinstance(value, str):
                record = json.loads(value)
                self.records.append(record)
                self.faults += len(record["faults"])

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.html_written is not None:
            terminalreporter.write_line(f"chaos: HTML report written to {self.html_written}")
        if self.records:
            tests = len(self.records)
            terminalreporter.write_line(
                f"chaos: {self.faults} fault{'s' if self.faults != 1 else ''} injected in"
                f" {tests} test{'s' if tests != 1 else ''}"
                f" (backend {self.settings.backend}, seed {self.settings.seed})"
            )

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if hasattr(self.config, "workerinput"):
            return
        payload = {
            "seed": self.settings.seed,
            "backend": self.settings.backend,
            "tests": self.records,
        }
        path = self.settings.report_path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(payload, indent=2) + "\n")
        html_path = self.settings.html_path
        if html_path is not None:
            # Only runs that ask for the HTML report import the charting library.
            from pytest_chaos.report.html import write_html

            write_html(html_path, payload)
            self.html_written = html_path
