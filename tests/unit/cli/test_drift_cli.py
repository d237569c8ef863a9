"""``flowops drift baseline`` and ``flowops drift compare``, through click and as a process."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from flowops.cli import cli

ROOT = Path(__file__).resolve().parents[3]
FEATURE_KEYS = {
    "feature",
    "kind",
    "psi",
    "psi_pvalue",
    "ks_statistic",
    "ks_pvalue",
    "chi2_statistic",
    "chi2_pvalue",
    "pvalue",
    "adjusted_pvalue",
    "drift",
    "severity",
    "n_reference",
    "n_current",
    "excluded",
    "tests",
}


pytestmark = pytest.mark.usefixtures("clean_env")


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's data: examples/sample_data.py, 20,000 rows per file."""
    spec = importlib.util.spec_from_file_location("sample_data", ROOT / "examples/sample_data.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    folder = tmp_path_factory.mktemp("sample")
    module.main([str(folder)])
    return folder


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, prog_name="flowops")


def compare_json(
    reference: Path, current: Path, *extra: str, env: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    result = run(
        "drift",
        "compare",
        "--reference",
        str(reference),
        "--current",
        str(current),
        "-o",
        "json",
        *extra,
        env=env,
    )
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.stdout)


def drifted(report: dict[str, Any]) -> list[str]:
    return [feature["feature"] for feature in report["features"] if feature["drift"]]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# -- compare: the verdict, its shape and its exit code ---------------------------------


def test_sample_data_drifts_in_income_and_channel_only(sample: Path) -> None:
    code, report = compare_json(sample / "reference.csv", sample / "current.csv")

    assert code == 1
    assert report["drift"] is True
    assert drifted(report) == ["income", "channel"]


def test_compare_json_shape(sample: Path) -> None:
    _, report = compare_json(sample / "reference.csv", sample / "current.csv")

    assert {"features", "drift", "alpha", "correction"} <= report.keys()
    assert (report["alpha"], report["correction"]) == (0.05, "bh")
    assert [f["feature"] for f in report["features"]] == [
        "age",
        "income",
        "debt_ratio",
        "region",
        "channel",
    ]
    for feature in report["features"]:
        assert feature.keys() >= FEATURE_KEYS
        numeric = feature["kind"] == "numeric"
        assert (feature["ks_pvalue"] is None) is not numeric
        assert (feature["chi2_pvalue"] is None) is numeric
        assert 0.0 <= feature["adjusted_pvalue"] <= 1.0
    kinds = {f["feature"]: f["kind"] for f in report["features"]}
    assert kinds == {
        "age": "numeric",
        "income": "numeric",
        "debt_ratio": "numeric",
        "region": "categorical",
        "channel": "categorical",
    }


def test_no_drift_exits_0(sample: Path) -> None:
    code, report = compare_json(sample / "reference.csv", sample / "reference.csv")

    assert code == 0
    assert report["drift"] is False
    assert drifted(report) == []


def test_table_shows_each_feature_and_the_verdict(sample: Path) -> None:
    result = run(
        "drift",
        "compare",
        "--reference",
        str(sample / "reference.csv"),
        "--current",
        str(sample / "current.csv"),
    )

    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "feature",
        "kind",
        "PSI",
        "PSI",
        "p",
        "KS",
        "D",
        "/",
        "chi2",
        "KS",
        "p",
        "/",
        "chi2",
        "p",
        "adjusted",
        "p",
        "excluded",
        "severity",
        "verdict",
    ]
    verdicts = {line.split()[0]: line.split()[-1] for line in lines[1:6]}
    assert verdicts == {
        "age": "ok",
        "income": "DRIFT",
        "debt_ratio": "ok",
        "region": "ok",
        "channel": "DRIFT",
    }
    assert lines[-1] == (
        "DRIFT in 2 of 5 features (income, channel, 40%): adjusted p < 0.05 "
        "(Benjamini-Hochberg) and effect >= its floor."
    )


def test_table_without_drift_says_so(sample: Path) -> None:
    result = run(
        "drift",
        "compare",
        "--reference",
        str(sample / "reference.csv"),
        "--current",
        str(sample / "reference.csv"),
        "--features",
        "age,region",
    )

    assert result.exit_code == 0
    assert result.stdout.splitlines()[-1] == (
        "No drift in 2 features: no adjusted p < 0.05 (Benjamini-Hochberg) and effect >= its floor."
    )


def test_features_limits_the_comparison(sample: Path) -> None:
    _, report = compare_json(
        sample / "reference.csv", sample / "current.csv", "--features", "region, income"
    )

    assert [f["feature"] for f in report["features"]] == ["region", "income"]


def test_nan_inf_and_missing_values_are_excluded_and_counted(tmp_path: Path) -> None:
    reference = write(
        tmp_path / "ref.csv", "x,c\n" + "".join(f"{i % 50},{'ab'[i % 2]}\n" for i in range(400))
    )
    current = write(
        tmp_path / "cur.csv",
        "x,c\n"
        + "".join(f"{i % 50},{'ab'[i % 2]}\n" for i in range(400))
        + "nan,a\ninf,\n,b\n-inf,b\n",
    )

    _, report = compare_json(reference, current)
    excluded = {f["feature"]: f["excluded"] for f in report["features"]}
    assert excluded == {"x": 4, "c": 1}
    n_current = {f["feature"]: f["n_current"] for f in report["features"]}
    assert n_current == {"x": 400, "c": 403}

    table = run("drift", "compare", "--reference", str(reference), "--current", str(current))
    assert table.stdout.splitlines()[1].split()[0:2] == ["x", "numeric"]
    assert table.stdout.splitlines()[1].split()[-3] == "4"


def test_parquet_reference_against_json_lines(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"score": float(i % 97), "segment": "ab"[i % 2]} for i in range(500)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "ref.parquet")
    shifted = [{"score": row["score"] + 30, "segment": row["segment"]} for row in rows]
    write(tmp_path / "cur.jsonl", "".join(json.dumps(row) + "\n" for row in shifted))

    code, report = compare_json(tmp_path / "ref.parquet", tmp_path / "cur.jsonl")

    assert code == 1
    assert drifted(report) == ["score"]


def test_current_columns_take_the_kinds_of_the_reference(tmp_path: Path) -> None:
    reference = write(tmp_path / "ref.csv", "code\n" + "x\ny\n" * 200)
    current = write(tmp_path / "cur.csv", "code\n" + "1\n2\n" * 200)

    code, report = compare_json(reference, current)

    assert code == 1
    assert report["features"][0]["kind"] == "categorical"


# -- settings: flags over environment over the config file ----------------------------


def test_config_file_sets_alpha_and_correction(sample: Path, tmp_path: Path) -> None:
    config = write(tmp_path / "flowops.yaml", "drift:\n  alpha: 0.01\n  correction: bonferroni\n")
    _, report = compare_json(
        sample / "reference.csv", sample / "current.csv", "--config", str(config)
    )

    assert (report["alpha"], report["correction"]) == (0.01, "bonferroni")


def test_flags_win_over_environment_and_config(sample: Path, tmp_path: Path) -> None:
    config = write(tmp_path / "flowops.yaml", "drift:\n  alpha: 0.01\n")
    _, report = compare_json(
        sample / "reference.csv",
        sample / "current.csv",
        "--config",
        str(config),
        "--alpha",
        "0.2",
        "--correction",
        "none",
        env={"FLOWOPS_DRIFT__ALPHA": "0.03", "FLOWOPS_DRIFT__CORRECTION": "bonferroni"},
    )

    assert (report["alpha"], report["correction"]) == (0.2, "none")


def test_environment_wins_over_config(sample: Path, tmp_path: Path) -> None:
    config = write(tmp_path / "flowops.yaml", "drift:\n  alpha: 0.01\n")
    _, report = compare_json(
        sample / "reference.csv",
        sample / "current.csv",
        "--config",
        str(config),
        env={"FLOWOPS_DRIFT__ALPHA": "0.03"},
    )

    assert report["alpha"] == 0.03


# -- baseline, and comparing against the profile it writes ----------------------------


def test_profile_round_trip(sample: Path, tmp_path: Path) -> None:
    profile = tmp_path / "profile.json"
    result = run(
        "drift",
        "baseline",
        "--data",
        str(sample / "reference.csv"),
        "-o",
        str(profile),
        "--model",
        "credit",
    )

    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "profiled 5 features of" in result.stderr
    assert (
        "(20,000 rows; left out as missing, NaN or inf: income 40, debt_ratio 20, "
        "region 20) -> " in result.stderr
    )
    stored = json.loads(profile.read_text())
    assert stored["model"] == "credit"
    assert list(stored["features"]) == ["age", "income", "debt_ratio", "region", "channel"]

    code, report = compare_json(profile, sample / "current.csv")
    assert code == 1
    assert drifted(report) == ["income", "channel"]
    code, report = compare_json(profile, sample / "reference.csv")
    assert code == 0


def test_baseline_writes_to_stdout_without_output(sample: Path) -> None:
    from flowops.drift import Profile

    result = run(
        "drift",
        "baseline",
        "--data",
        str(sample / "reference.csv"),
        "--features",
        "age,channel",
        "--bins",
        "4",
        "--sample-size",
        "100",
    )

    assert result.exit_code == 0
    profile = Profile.from_json(result.stdout)
    assert list(profile.features) == ["age", "channel"]
    assert (profile.bins, profile.sample_size) == (4, 100)
    assert "-> stdout" in result.stderr


def test_baseline_takes_bins_from_the_config_file(sample: Path, tmp_path: Path) -> None:
    config = write(tmp_path / "flowops.yaml", "drift:\n  bins: 7\n")
    result = run(
        "drift", "baseline", "--data", str(sample / "reference.csv"), "--config", str(config)
    )

    assert json.loads(result.stdout)["bins"] == 7


# -- user errors: one line on stderr, exit 2, never a traceback ------------------------


@pytest.fixture
def files(tmp_path: Path) -> Path:
    write(
        tmp_path / "ref.csv",
        "age,city\n" + "".join(f"{20 + i % 40},c{i % 3}\n" for i in range(300)),
    )
    write(
        tmp_path / "cur.csv",
        "age,city\n" + "".join(f"{20 + i % 40},c{i % 3}\n" for i in range(300)),
    )
    write(tmp_path / "text.csv", "age,city\n30,a\n31,b\nabc,c\n")
    write(tmp_path / "empty.csv", "age,city\n")
    write(tmp_path / "bad.json", '{"features": {"age": 3}, "bins": 10}\n')
    write(tmp_path / "data.txt", "age\n3\n")
    write(tmp_path / "flowops.yaml", "drift:\n  bins: 1\n")
    return tmp_path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--current", "text.csv"], "text.csv: line 4: column 'age': not a number: 'abc'"),
        (["--current", "empty.csv"], "empty.csv: no data rows"),
        (["--current", "nope.csv"], "nope.csv: cannot read: No such file or directory"),
        (["--current", "data.txt"], "data.txt: unknown file format '.txt'"),
        (
            ["--current", "cur.csv", "--features", "age,salary"],
            "ref.csv: column 'salary': no such column; the file has: age, city",
        ),
        (["--current", "cur.csv", "--config", "flowops.yaml"], "config: drift.bins:"),
        (
            ["--current", "cur.csv", "--reference", "bad.json"],
            "bad.json: not a valid FlowOps profile",
        ),
    ],
)
def test_user_errors_exit_2_with_one_line(
    files: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    monkeypatch.chdir(files)
    result = run("drift", "compare", "--reference", "ref.csv", *args)

    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"flowops: error: {message}")
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--alpha", "1.5"], "Invalid value for '--alpha'"),
        (["--correction", "holm"], "Invalid value for '--correction'"),
        (["--features", " , "], "name at least one feature"),
        (["--bins", "1"], "Invalid value for '--bins'"),
    ],
)
def test_bad_flags_are_usage_errors(files: Path, args: list[str], message: str) -> None:
    result = run(
        "drift",
        "compare",
        "--reference",
        str(files / "ref.csv"),
        "--current",
        str(files / "cur.csv"),
        *args,
    )

    assert result.exit_code == 2
    assert message in result.stderr


def test_bad_environment_setting_is_a_config_error(files: Path) -> None:
    result = run(
        "drift",
        "compare",
        "--reference",
        str(files / "ref.csv"),
        "--current",
        str(files / "cur.csv"),
        env={"FLOWOPS_DRIFT__ALPHA": "2"},
    )

    assert result.exit_code == 2
    assert result.stderr.startswith("flowops: error: config: drift.alpha:")


def test_feature_missing_from_the_profile(files: Path, tmp_path: Path) -> None:
    profile = tmp_path / "p.json"
    assert (
        run(
            "drift",
            "baseline",
            "--data",
            str(files / "ref.csv"),
            "--features",
            "age",
            "-o",
            str(profile),
        ).exit_code
        == 0
    )
    result = run(
        "drift",
        "compare",
        "--reference",
        str(profile),
        "--current",
        str(files / "cur.csv"),
        "--features",
        "city",
    )

    assert result.exit_code == 2
    assert "p.json: column 'city': no such feature in the profile; it has: age" in result.stderr


def test_baseline_cannot_write(files: Path) -> None:
    result = run(
        "drift",
        "baseline",
        "--data",
        str(files / "ref.csv"),
        "-o",
        str(files / "missing-dir" / "p.json"),
    )

    assert result.exit_code == 2
    assert "cannot write the profile: No such file or directory" in result.stderr


def test_baseline_requires_data() -> None:
    result = run("drift", "baseline")

    assert result.exit_code == 2
    assert "Missing option '--data'" in result.stderr


# -- as a process: python -m flowops ------------------------------------------------


def flowops(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWOPS_")}
    return subprocess.run(
        [sys.executable, "-m", "flowops", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )


def test_python_m_flowops_drift_compare(sample: Path) -> None:
    done = flowops(
        "drift",
        "compare",
        "--reference",
        str(sample / "reference.csv"),
        "--current",
        str(sample / "current.csv"),
        "-o",
        "json",
    )

    assert done.returncode == 1, done.stderr
    assert drifted(json.loads(done.stdout)) == ["income", "channel"]
    assert done.stderr == ""


def test_python_m_flowops_user_error(files: Path) -> None:
    done = flowops(
        "drift",
        "compare",
        "--reference",
        str(files / "ref.csv"),
        "--current",
        str(files / "text.csv"),
    )

    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (
        f"flowops: error: {files / 'text.csv'}: line 4: column 'age': not a number: 'abc'\n"
    )


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["drift", "--help"],
        ["drift", "compare", "--help"],
        ["drift", "baseline", "--help"],
    ],
)
def test_help_does_not_import_numeric_or_rendering_libraries(args: list[str]) -> None:
    code = (
        "import sys\n"
        "from flowops.cli import cli\n"
        f"cli({args!r}, prog_name='flowops', standalone_mode=False)\n"
        "heavy = {'numpy', 'scipy', 'rich', 'flowops.drift', 'flowops.data'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )

    assert done.returncode == 0, done.stderr
    assert "Usage: flowops" in done.stdout


@pytest.mark.parametrize("command", ["baseline", "compare"])
def test_help_teaches_by_example_and_documents_exit_codes(command: str) -> None:
    text = run("drift", command, "--help").stdout

    assert f"flowops drift {command} --" in text.split("Options:")[0]
    assert "Exit codes:" in text
    assert "1  drift by the verdict rule" in text
    assert "2  usage, input or configuration error" in text
