"""How `flowops drift watch` shows alerts: JSON lines, and table rows that line up."""

from __future__ import annotations

import io
from datetime import datetime
from typing import Any

import pytest
from rich.console import Console

from flowops.cli.render import AlertTable, alert_line, alert_row
from flowops.events import DriftAlert

AT = datetime(2026, 11, 28, 9, 30, 5).timestamp()


def alert(**fields: Any) -> DriftAlert:
    values: dict[str, Any] = {
        "alert_id": "a1",
        "model": "credit",
        "version": "3",
        "feature": "income",
        "test": "ks",
        "statistic": 0.123456,
        "pvalue": 0.00002,
        "threshold": 0.05,
        "window_start": 0.0,
        "window_end": 60.0,
        "window_index": 12,
        "n_reference": 1000,
        "n_current": 500,
        "severity": "critical",
        "reference": "profile",
        "detected_at": AT,
    }
    return DriftAlert(**(values | fields))


def console(width: int) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=width, highlight=False, color_system=None), out


def test_json_line_is_the_event_on_one_line() -> None:
    line = alert_line(alert())
    assert "\n" not in line
    assert DriftAlert.from_json(line) == alert()


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {},
            ["09:30:05", "credit", "3", "income", "ks", "0.1235", "2.0e-05", "0.05", "#12"],
        ),
        (
            {"test": "adwin", "pvalue": None, "threshold": 0.002, "window_index": 4512},
            ["09:30:05", "credit", "3", "income", "adwin", "0.1235", "-", "0.002", "row 4512"],
        ),
        (
            {"test": "psi", "pvalue": None, "statistic": 0.25, "threshold": 0.2},
            ["09:30:05", "credit", "3", "income", "psi", "0.25", "-", "0.2", "#12"],
        ),
        (
            {
                "feature": "dataset",
                "test": "verdict",
                "pvalue": None,
                "statistic": 0.4,
                "threshold": 0.0,
            },
            ["09:30:05", "credit", "3", "dataset", "verdict", "0.4", "-", "0", "#12"],
        ),
    ],
)
def test_row_cells(fields: dict[str, Any], expected: list[str]) -> None:
    cells = alert_row(alert(**fields))
    shown = [str(cells[name]) for name in list(cells)[:9]]
    assert shown == expected
    assert (str(cells["severity"]), cells["reference"]) == ("critical", "profile")


def test_first_window_reference_and_warning_severity() -> None:
    cells = alert_row(alert(reference="first_window", severity="warning"))
    assert (str(cells["severity"]), cells["reference"]) == ("warning", "1st window")


def test_table_prints_the_header_once_and_rows_that_line_up() -> None:
    screen, out = console(120)
    table = AlertTable(screen)
    table.add(alert())
    table.add(alert(alert_id="a2", model="a-model-with-a-long-name", window_index=13))

    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert lines[0].split() == [
        "time",
        "model",
        "version",
        "feature",
        "test",
        "statistic",
        "p",
        "threshold",
        "window",
        "severity",
        "reference",
    ]
    assert lines[1].split() == [
        "09:30:05",
        "credit",
        "3",
        "income",
        "ks",
        "0.1235",
        "2.0e-05",
        "0.05",
        "#12",
        "critical",
        "profile",
    ]
    assert "a-model-wit…" in lines[2]  # cut to the column, never wrapped
    table.add(alert(alert_id="a3", feature="dataset", test="verdict", pvalue=None))
    assert out.getvalue().splitlines()[3].split()[3:5] == ["dataset", "verdict"]  # not cut
    assert {line.index("income") for line in lines[1:]} == {lines[0].index("feature")}
    assert table.count == 3


def test_a_narrow_console_gets_the_essential_columns() -> None:
    screen, out = console(80)
    AlertTable(screen).add(alert())
    header, row = out.getvalue().splitlines()
    assert header.split() == ["time", "model", "feature", "test", "statistic", "p", "severity"]
    assert row.split() == ["09:30:05", "credit", "income", "ks", "0.1235", "2.0e-05", "critical"]
    assert max(len(line.rstrip()) for line in (header, row)) <= 80
