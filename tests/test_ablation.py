"""The KD ablation table (wakd ablation): means, t-intervals and paired differences against hand
computation on made-up recall CSVs, and its refusals."""

import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from wakd.stages.ablation import AblationConfig, ablation_table, read_runs, run, t_interval
from wakd.utils import WakdError

T_975_2 = 4.302652729911275  # Student's t, 0.975 quantile, 2 degrees of freedom (tables)


def _csv(path, label, recalls, conditions=("all", "day")):
    rows = [{"model": label, "dataset": "synthetic", "split": "test", "rule": "25m", "condition": c,
             "R@1": r1, "R@5": r5, "queries": 10} for c, (r1, r5) in zip(conditions, recalls)]
    pd.DataFrame(rows).to_csv(path, index=False)
    return str(path)


@pytest.fixture()
def runs(tmp_path):
    """Three runs of teacher, student_nokd and student_kd (all / day: R@1, R@5)."""
    values = {
        "teacher": [[(0.5, 0.8), (0.6, 0.9)], [(0.4, 0.7), (0.5, 0.8)], [(0.6, 0.9), (0.7, 1.0)]],
        "student_nokd": [[(0.1, 0.3), (0.2, 0.4)], [(0.2, 0.4), (0.1, 0.3)], [(0.3, 0.5), (0.3, 0.6)]],
        "student_kd": [[(0.3, 0.6), (0.4, 0.6)], [(0.3, 0.5), (0.4, 0.5)], [(0.5, 0.7), (0.5, 0.8)]],
    }
    paths = []
    for variant, per_run in values.items():
        for i, recalls in enumerate(per_run):
            paths.append(_csv(tmp_path / f"{variant}_{i}.csv", f"{variant}@city0-seed{i}", recalls))
    return paths


def test_t_interval_by_hand():
    mean, lo, hi = t_interval([0.2, 0.1, 0.3])
    half = T_975_2 * 0.1 / math.sqrt(3)  # sample sd of (0.2, 0.1, 0.3) is 0.1
    assert mean == pytest.approx(0.2) and lo == pytest.approx(0.2 - half) and hi == pytest.approx(0.2 + half)
    assert math.isnan(t_interval([0.4])[1])  # one run: no interval


def test_table_means_intervals_and_paired_differences(runs):
    table = ablation_table(read_runs(runs), "student_nokd", "teacher").set_index(["variant", "condition"])
    kd = table.loc[("student_kd", "day")]
    assert kd["runs"] == 3 and kd["pairs"] == 3
    assert kd["R@1_mean"] == pytest.approx((0.4 + 0.4 + 0.5) / 3)
    # paired differences of day R@1: 0.4-0.2, 0.4-0.1, 0.5-0.3 = 0.2, 0.3, 0.2
    d = [0.2, 0.3, 0.2]
    mean = sum(d) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / 2)
    assert kd["R@1_diff"] == pytest.approx(mean)
    assert kd["R@1_diff_lo"] == pytest.approx(mean - T_975_2 * sd / math.sqrt(3))
    assert kd["R@1_diff_hi"] == pytest.approx(mean + T_975_2 * sd / math.sqrt(3))
    assert kd["R@1_teacher"] == pytest.approx((1.3 / 3) / (1.8 / 3))
    nokd = table.loc[("student_nokd", "all")]
    assert nokd["R@5_diff"] == 0 and nokd["R@5_diff_lo"] == 0  # against itself
    # the unpaired interval of the mean, from the three runs alone
    x = [0.3, 0.3, 0.5]
    sd = math.sqrt(sum((v - 1.1 / 3) ** 2 for v in x) / 2)
    assert table.loc[("student_kd", "all"), "R@1_hi"] == pytest.approx(1.1 / 3 + T_975_2 * sd / math.sqrt(3))


def test_differences_pair_by_run_not_by_position(runs, tmp_path):
    """A variant missing a run is paired over the runs both have."""
    extra = _csv(tmp_path / "x.csv", "student_x@city0-seed2", [(0.9, 1.0), (0.9, 1.0)])
    table = ablation_table(read_runs([*runs, extra]), "student_nokd", "teacher").set_index(["variant", "condition"])
    row = table.loc[("student_x", "day")]
    assert row["runs"] == 1 and row["pairs"] == 1
    assert row["R@1_diff"] == pytest.approx(0.9 - 0.3) and math.isnan(row["R@1_diff_lo"])
    assert row["R@1_teacher"] == pytest.approx(0.9 / 0.7)  # against the teacher of the same run


def test_run_writes_table_figure_and_record(runs, tmp_path):
    out = tmp_path / "ablation.csv"
    run(AblationConfig(recall=tuple(runs), out=str(out), figure=str(tmp_path / "a.png")))
    table = pd.read_csv(out)
    assert set(table["variant"]) == {"teacher", "student_nokd", "student_kd"}
    assert (tmp_path / "a.png").stat().st_size > 0 and (tmp_path / "ablation.csv.info.json").exists()


@pytest.mark.parametrize("case,needle", [
    ("label", "is not VARIANT@RUN"),
    ("twice", "appears twice"),
    ("baseline", "--baseline student_none: no such variant"),
    ("out_is_input", "is also the input --recall"),  # the guard every command has (wakd.options.check_paths)
    ("figure_is_out", "is also --out"),
])
def test_refusals_name_the_file_or_option(runs, tmp_path, case, needle):
    recall, baseline, out, extra = list(runs), "student_nokd", tmp_path / "t.csv", []
    if case == "out_is_input":
        out = Path(runs[0])
    elif case == "figure_is_out":
        extra = ["--figure", str(out)]
    elif case == "label":
        recall.append(_csv(tmp_path / "bad.csv", "student_kd", [(0.1, 0.2), (0.1, 0.2)]))
    elif case == "twice":
        recall.append(runs[-1])
    else:
        baseline = "student_none"
    before = Path(runs[0]).read_bytes()
    res = subprocess.run([sys.executable, "-m", "wakd", "ablation", "--recall", *recall, "--baseline", baseline,
                          "--out", str(out), *extra], capture_output=True, text=True)
    assert res.returncode == 2 and needle in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert Path(runs[0]).read_bytes() == before  # no input touched
    if case != "out_is_input":
        assert not out.exists()
    with pytest.raises(WakdError):
        run(AblationConfig(recall=tuple(recall), out=str(out), baseline=baseline, figure=extra[-1] if extra else None))
