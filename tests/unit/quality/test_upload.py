"""flowops.quality.upload and ``flowops labels send`` without a broker: reading label
files of every format, and the one-line errors for what cannot be sent."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from flowops.broker import free_port
from flowops.cli import cli
from flowops.errors import InputError
from flowops.quality.upload import read_labels

pytestmark = pytest.mark.usefixtures("clean_env")


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), prog_name="flowops")


def test_csv_with_model_version_and_timestamp_columns_groups_by_model_version(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        "l.csv",
        "request_id,label,model,version,timestamp\n"
        "a,1,credit,3,10\nb,0,credit,4,11\nc,0,credit,3,12\nd,1,fraud,,13\n",
    )
    found = [
        (b.model, b.version, b.request_ids, b.labels, b.timestamps.tolist())
        for b in read_labels(path)
    ]
    assert found == [
        ("credit", "3", ["a", "c"], [1, 0], [10.0, 12.0]),
        ("credit", "4", ["b"], [0], [11.0]),
        ("fraud", None, ["d"], [1], [13.0]),
    ]


def test_model_flag_wins_and_rows_without_a_timestamp_get_now(tmp_path: Path) -> None:
    path = write(tmp_path, "l.jsonl", '{"rid": 7, "y": 2.5, "model": "x"}\n{"rid": 8, "y": 3}\n')
    [batch] = read_labels(path, model="house", label_column="y", id_column="rid", now=99.0)
    assert (batch.model, batch.request_ids, batch.labels) == ("house", ["7", "8"], [2.5, 3])
    assert batch.timestamps.tolist() == [99.0, 99.0]


def test_parquet_is_read_too(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "l.parquet"
    pq.write_table(pa.table({"request_id": ["a", "b"], "label": [1, 0]}), path)
    [batch] = read_labels(path, model="m", now=1.0)
    assert batch.request_ids == ["a", "b"]
    assert batch.labels == [1, 0]


@pytest.mark.parametrize(
    ("text", "model", "message"),
    [
        ("request_id,label\na,\n", "m", "row 1: column 'label': no label"),
        ("request_id,label\na,1\n,0\n", "m", "row 2: column 'request_id': no request id"),
        ("request_id,outcome\na,1\n", "m", "column 'label': no such column"),
        ("request_id,label\na,1\n", None, "no model: give --model NAME or a 'model' column"),
        ("request_id,label,timestamp\na,1,\n", "m", "row 1: column 'timestamp': no timestamp"),
        ("request_id,label,timestamp\na,1,soon\n", "m", "column 'timestamp': expected Unix"),
    ],
)
def test_what_cannot_be_sent_is_named(
    tmp_path: Path, text: str, model: str | None, message: str
) -> None:
    path = write(tmp_path, "l.csv", text)
    with pytest.raises(InputError, match=message):
        read_labels(path, model=model)


def test_the_command_stops_on_bad_input_with_one_line_and_exit_2(tmp_path: Path) -> None:
    path = write(tmp_path, "l.csv", "request_id,label\na,\n")
    result = run("labels", "send", "--data", str(path), "--model", "m")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert "column 'label': no label" in result.stderr


def test_without_a_broker_the_command_says_so_in_one_line_and_exits_3(tmp_path: Path) -> None:
    path = write(tmp_path, "l.csv", "request_id,label\na,1\n")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FLOWOPS_")}
    done = subprocess.run(
        [sys.executable, "-m", "flowops", "labels", "send", "--data", str(path),
         "--model", "m", "--bootstrap", f"127.0.0.1:{free_port()}"],
        capture_output=True, text=True, timeout=60, check=False, env=clean,
    )  # fmt: skip
    assert done.returncode == 3
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith("flowops: error: 127.0.0.1:")
    assert "cannot reach the Kafka broker" in line


def test_the_command_is_listed_and_its_help_teaches() -> None:
    assert "labels" in run("--help").output
    help_text = run("labels", "send", "--help").output
    for flag in ("--data", "--model", "--label-column", "--id-column", "--bootstrap", "-o"):
        assert flag in help_text
    assert "Examples:" in help_text
