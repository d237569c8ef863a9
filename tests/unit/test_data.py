"""flowops.data: reading CSV, JSON Lines and Parquet tables for the drift commands."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

import flowops.data
from flowops.data import read_table
from flowops.errors import EmptyInputError, InputError

ROWS: list[dict[str, Any]] = [
    {"age": 34, "income": 52000.5, "region": "north"},
    {"age": None, "income": float("inf"), "region": "south"},
    {"age": 51, "income": None, "region": None},
    {"age": 28, "income": -1.5e3, "region": "north"},
]


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(record) + b"\n" for record in records))
    return path


def write_parquet(path: Path, records: list[dict[str, Any]]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(records), path)
    return path


def write_rows(folder: Path, suffix: str, records: list[dict[str, Any]]) -> Path:
    path = folder / f"data{suffix}"
    if suffix == ".csv":
        names = list(records[0])
        lines = [",".join(names)]
        lines += [",".join(_cell(record[name]) for name in names) for record in records]
        return write_csv(path, "\n".join(lines) + "\n")
    if suffix == ".parquet":
        return write_parquet(path, records)
    # orjson refuses inf; JSON Lines carry it as a string, which still parses as a number
    return write_jsonl(path, [{k: _json_value(v) for k, v in r.items()} for r in records])


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def _json_value(value: Any) -> Any:
    return str(value) if isinstance(value, float) and not np.isfinite(value) else value


def test_public_names() -> None:
    assert sorted(flowops.data.__all__) == [
        "Column",
        "Kind",
        "Table",
        "build_profile",
        "compare_files",
        "read_profile",
        "read_table",
    ]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".ndjson", ".json", ".parquet"])
def test_reads_every_format_alike(tmp_path: Path, suffix: str) -> None:
    table = read_table(write_rows(tmp_path, suffix, ROWS))

    assert table.rows == 4
    assert table.kinds == {"age": "numeric", "income": "numeric", "region": "categorical"}
    np.testing.assert_array_equal(table.columns["age"], [34.0, np.nan, 51.0, 28.0])
    np.testing.assert_array_equal(table.columns["income"], [52000.5, np.inf, np.nan, -1500.0])
    assert table.columns["region"] == ["north", "south", None, "north"]
    assert table.path.endswith(f"data{suffix}")


def test_table_is_frozen(tmp_path: Path) -> None:
    table = read_table(write_rows(tmp_path, ".csv", ROWS))
    with pytest.raises(dataclasses.FrozenInstanceError):
        table.rows = 3  # type: ignore[misc]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_reads_the_requested_columns_in_their_order(tmp_path: Path, suffix: str) -> None:
    table = read_table(write_rows(tmp_path, suffix, ROWS), columns=["region", "age"])

    assert list(table.columns) == ["region", "age"]
    assert list(table.kinds) == ["region", "age"]


@pytest.mark.parametrize(
    ("cells", "expected"),
    [
        (["1", " 2.5 ", "-3e2", "1_000"], [1.0, 2.5, -300.0, 1000.0]),
        (["nan", "NaN", "inf", "-Infinity"], [np.nan, np.nan, np.inf, -np.inf]),
        (["", "  ", "4", ""], [np.nan, np.nan, 4.0, np.nan]),
    ],
)
def test_numbers_nan_inf_and_blanks(
    tmp_path: Path, cells: list[str], expected: list[float]
) -> None:
    path = write_csv(tmp_path / "x.csv", "x,y\n" + "".join(f"{c},k\n" for c in cells))
    table = read_table(path)

    assert table.kinds["x"] == "numeric"
    np.testing.assert_array_equal(table.columns["x"], expected)


def test_first_non_missing_value_decides_the_kind(tmp_path: Path) -> None:
    rows = [",\n"] * 700 + ["7,b\n"] + ["8,3\n"] * 10  # decided in a later chunk
    table = read_table(write_csv(tmp_path / "x.csv", "num,cat\n" + "".join(rows)))

    assert table.kinds == {"num": "numeric", "cat": "categorical"}
    assert np.isnan(table.columns["num"][:700]).all()
    np.testing.assert_array_equal(table.columns["num"][700:], [7.0] + [8.0] * 10)
    assert table.columns["cat"] == [None] * 700 + ["b"] + ["3"] * 10


def test_a_column_with_no_value_is_numeric_and_all_nan(tmp_path: Path) -> None:
    table = read_table(write_csv(tmp_path / "x.csv", "a,b\n,1\n,2\n"))

    assert table.kinds["a"] == "numeric"
    assert np.isnan(table.columns["a"]).all()
    assert len(table.columns["a"]) == 2


def test_kinds_override_inference(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "x.csv", "zip,score\n02139,1\n10001,2\n")
    table = read_table(path, kinds={"zip": "categorical"})

    assert table.columns["zip"] == ["02139", "10001"]
    assert table.kinds == {"zip": "categorical", "score": "numeric"}


def test_kinds_name_columns_that_must_exist(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "x.csv", "a\n1\n")
    with pytest.raises(InputError, match="column 'b': no such column; the file has: a"):
        read_table(path, kinds={"b": "numeric"})


@pytest.mark.parametrize(
    ("text", "line", "row"),
    [
        ("age,city\n34,a\n51,b\nabc,c\n", 4, 3),
        ("age,city\n34,a\n\n\n51,b\nabc,c\n", 6, 3),  # blank lines count as lines only
        ('age,city\n34,"two\nlines"\n51,b\nabc,c\n', 5, 3),  # a quoted field spans lines
        ("age,city\n" + "1,a\n" * 1499 + "abc,c\n", 1501, 1500),  # in a later chunk
    ],
)
def test_text_in_a_numeric_column_names_file_line_and_column(
    tmp_path: Path, text: str, line: int, row: int
) -> None:
    path = write_csv(tmp_path / "data.csv", text)
    with pytest.raises(InputError) as caught:
        read_table(path)

    assert str(caught.value) == f"{path}: line {line}: column 'age': not a number: 'abc'"
    assert (caught.value.path, caught.value.column, caught.value.row) == (str(path), "age", row)


def test_text_in_a_numeric_jsonl_column_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text('{"age": 3}\n\n{"age": null}\n{"age": "old"}\n')
    with pytest.raises(InputError, match=r"data.jsonl: line 4: column 'age': not a number: 'old'"):
        read_table(path)


@pytest.mark.parametrize("value", [True, [1, 2], {"a": 1}])
def test_json_values_that_are_not_numbers(tmp_path: Path, value: Any) -> None:
    path = write_jsonl(tmp_path / "data.jsonl", [{"x": 1.5}, {"x": value}])
    with pytest.raises(InputError, match="line 2: column 'x': not a number"):
        read_table(path)


def test_json_scalars_become_categories(tmp_path: Path) -> None:
    records = [{"c": "a"}, {"c": 3}, {"c": True}, {"c": None}, {"c": 1.5}, {}]
    table = read_table(write_jsonl(tmp_path / "data.jsonl", records))

    assert table.columns["c"] == ["a", "3", "true", None, "1.5", None]


def test_json_objects_are_not_categories(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "data.jsonl", [{"c": "a"}, {"c": {"nested": 1}}])
    with pytest.raises(InputError, match="line 2: column 'c': not a category"):
        read_table(path)


def test_jsonl_keys_first_seen_late_are_missing_before(tmp_path: Path) -> None:
    records = [{"a": 1}] * 600 + [{"a": 2, "b": "x"}]
    table = read_table(write_jsonl(tmp_path / "data.jsonl", records))

    assert list(table.columns) == ["a", "b"]
    assert table.columns["b"] == [None] * 600 + ["x"]


def test_parquet_bad_value_names_the_row(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "data.parquet", [{"x": "1"}, {"x": "2"}, {"x": "abc"}])
    with pytest.raises(InputError) as caught:
        read_table(path, kinds={"x": "numeric"})

    assert str(caught.value) == f"{path}: row 3: column 'x': not a number: 'abc'"


def test_parquet_kinds_come_from_the_schema(tmp_path: Path) -> None:
    records = [{"n": 1, "s": "7", "b": True}, {"n": None, "s": "8", "b": False}]
    table = read_table(write_parquet(tmp_path / "data.parquet", records))

    assert table.kinds == {"n": "numeric", "s": "categorical", "b": "categorical"}
    np.testing.assert_array_equal(table.columns["n"], [1.0, np.nan])
    assert table.columns["b"] == ["true", "false"]


def test_parquet_columns_of_other_types_are_refused(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "data.parquet", [{"l": [1, 2]}])
    with pytest.raises(InputError, match="column 'l': cannot compare values of type list"):
        read_table(path)


def test_parquet_without_pyarrow_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_parquet(tmp_path / "data.parquet", ROWS)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(InputError, match=r"pip install 'flowops\[parquet\]'"):
        read_table(path)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("data.csv", ""),
        ("data.csv", "\n\n"),
        ("data.csv", "a,b\n"),
        ("data.csv", "a,b\n\n\n"),
        ("data.jsonl", ""),
        ("data.jsonl", "\n  \n"),
    ],
)
def test_empty_files(tmp_path: Path, name: str, content: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(EmptyInputError) as caught:
        read_table(path)

    assert caught.value.path == str(path)
    assert str(caught.value).startswith(f"{path}: ")


def test_empty_parquet(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "data.parquet"
    pq.write_table(pa.table({"a": pa.array([], pa.float64())}), path)
    with pytest.raises(EmptyInputError, match="no data rows"):
        read_table(path)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_missing_column_lists_the_columns_present(tmp_path: Path, suffix: str) -> None:
    path = write_rows(tmp_path, suffix, ROWS)
    with pytest.raises(InputError) as caught:
        read_table(path, columns=["age", "salary"])

    message = f"{path}: column 'salary': no such column; the file has: age, income, region"
    assert str(caught.value) == message
    assert caught.value.column == "salary"


def test_missing_file_gives_the_os_reason(tmp_path: Path) -> None:
    path = tmp_path / "nope.csv"
    with pytest.raises(InputError, match=f"^{path}: cannot read: No such file or directory$"):
        read_table(path)


def test_a_directory_is_not_readable(tmp_path: Path) -> None:
    folder = tmp_path / "dir.csv"
    folder.mkdir()
    with pytest.raises(InputError, match="cannot read: Is a directory"):
        read_table(folder)


@pytest.mark.parametrize("name", ["data.txt", "data.xlsx", "data"])
def test_unknown_format(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("a\n1\n")
    with pytest.raises(InputError, match=r"unknown file format .*use one of .*\.csv.*\.parquet"):
        read_table(path)


def test_suffix_case_does_not_matter(tmp_path: Path) -> None:
    assert read_table(write_csv(tmp_path / "DATA.CSV", "a\n1\n")).rows == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"a": 1}\n{"a": 2,}\n', r"line 2: not valid JSON \(column \d+\)"),
        ('{"a": 1}\n\n[1, 2]\n', "line 3: expected one JSON object per line, found a list"),
    ],
)
def test_bad_json_lines(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text(content)
    with pytest.raises(InputError, match=message):
        read_table(path)


def test_ragged_csv_row(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "data.csv", "a,b\n1,2\n3\n")
    with pytest.raises(InputError, match=r"data\.csv: line 3: expected 2 fields, found 1$"):
        read_table(path)


def test_duplicate_header_names(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "data.csv", "a,b,a\n1,2,3\n")
    with pytest.raises(InputError, match="duplicate column names in the header: a"):
        read_table(path)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_bytes(b"name\n\xff\xfe\n")
    with pytest.raises(InputError, match="not UTF-8 text"):
        read_table(path)


def test_byte_order_mark_is_not_part_of_the_first_name(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_bytes("\ufeffage\n3\n".encode())
    assert list(read_table(path).columns) == ["age"]
