"""Recall@N, chunked exact search, panorama de-duplication, extract -> evaluate -> figures."""

import json

import h5py
import numpy as np
import pandas as pd
import pytest

from wakd.cli import main
from wakd.data import load_dataset
from wakd.recall import recall_at_n
from wakd.search import knn
from wakd.stages.evaluate import dedup_predictions, evaluate_file, panorama_ids
from wakd.utils import WakdError


def test_recall_hand_computed():
    preds = np.array([[3, 1, 2, 0],   # positive at rank 2
                      [0, 1, 2, 3],   # positive at rank 1
                      [2, 3, 1, 0],   # positive at rank 4
                      [0, 1, 2, 3]])  # no positives: always a miss
    pos = [np.array([1]), np.array([0, 3]), np.array([0]), np.array([], dtype=np.int64)]
    assert recall_at_n(preds, pos, ns=(1, 2, 4)) == {1: 0.25, 2: 0.5, 4: 0.75}


def test_recall_needs_enough_predictions():
    with pytest.raises(ValueError, match="Recall@5 needs at least 5"):
        recall_at_n(np.zeros((1, 3), dtype=int), [np.array([0])], ns=(1, 5))


def test_ties_ranked_by_lower_index():
    db = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]], dtype=np.float32)
    q = np.array([[1.0, 0.0]], dtype=np.float32)
    _, idx = knn(db, q, 3, chunk_rows=1)  # ties across chunks
    assert idx.tolist() == [[0, 2, 3]]
    # with db 2 the only positive, the tie puts it second: a miss at R@1, a hit at R@2
    assert recall_at_n(idx, [np.array([2])], ns=(1, 2)) == {1: 0.0, 2: 1.0}


@pytest.mark.parametrize("chunk_rows", [7, 64, 1000])
def test_chunked_search_equals_brute_force(chunk_rows):
    rng = np.random.default_rng(chunk_rows)
    db = rng.normal(size=(300, 16)).astype(np.float32)
    db /= np.linalg.norm(db, axis=1, keepdims=True)
    q = rng.normal(size=(40, 16)).astype(np.float32)
    scores, idx = knn(db, q, 20, chunk_rows=chunk_rows)
    sims = q @ db.T
    brute = np.argsort(-sims, axis=1, kind="stable")[:, :20]
    np.testing.assert_array_equal(idx, brute)
    np.testing.assert_allclose(scores, np.take_along_axis(sims, brute, 1), rtol=1e-5, atol=1e-6)
    assert idx.shape == (40, 20) and knn(db[:5], q, 20)[1].shape == (40, 5)


def test_panorama_dedup():
    utm = np.array([[0, 0], [0, 0], [0, 0], [50, 0], [50, 0], [99, 0]], dtype=float)
    pano = panorama_ids(utm)
    assert pano.tolist() == [0, 0, 0, 1, 1, 2]
    pred = np.array([[1, 0, 4, 2, 5, 3], [5, 3, 4, 0, 1, 2]])
    assert dedup_predictions(pred, pano, 3).tolist() == [[1, 4, 5], [5, 3, 0]]
    assert dedup_predictions(pred[:, :2], pano, 3).tolist() == [[1, -1, -1], [5, 3, -1]]  # padded


def test_extract_evaluate_figures_end_to_end(tiny_city, tmp_path):
    desc, csv = tmp_path / "d.hdf5", tmp_path / "recall.csv"
    common = ["--arch", "mobilenetv3_small", "--num-clusters", "8", "--workers", "0"]
    assert main(["extract", *common, "--dataset", "synthetic", "--root", str(tiny_city), "--out", str(desc)]) == 0
    ds = load_dataset("synthetic", "test", tiny_city)
    with h5py.File(desc) as f:
        assert f["db/descriptors"].shape == (ds.num_db, 8 * 512) and f["db/descriptors"].dtype == np.float16
        assert f["queries/descriptors"].shape == (ds.num_queries, 8 * 512)
        np.testing.assert_allclose(np.linalg.norm(f["queries/descriptors"][:].astype(np.float32), axis=1), 1,
                                   atol=2e-3)
        assert [c.decode() for c in f["queries/conditions"][:5]] == ds.q_conditions[:5]
        np.testing.assert_array_equal(f["db/utm"][:], ds.db_utm)
        assert json.loads(f.attrs["provenance"])["config"]["arch"] == "mobilenetv3_small"

    preds, grid, curve = tmp_path / "p.hdf5", tmp_path / "grid.png", tmp_path / "curve.png"
    assert main(["evaluate", "--descriptors", str(desc), "--model", "random", "--out", str(csv), "--predictions",
                 str(preds), "--figure", str(grid), "--num-queries", "3", "--only-wrong"]) == 0
    table = pd.read_csv(csv)
    assert list(table.columns) == ["model", "dataset", "split", "rule", "condition", "R@1", "R@5", "R@10", "R@20",
                                   "queries", "hub_share"]
    assert set(table["condition"]) == {"all", "day", "sunset", "night"}
    from wakd.report import prediction_rows

    with h5py.File(preds) as f:
        top1_all = f["predictions"][:]
    # captions: the query's condition and its top-1's distance, each prediction's distance to the query
    for cells in prediction_rows(ds, top1_all, 3, 5):
        qi = int(cells[0][1].split(" ")[0][1:])
        d1 = np.linalg.norm(ds.db_utm[top1_all[qi, 0]] - ds.q_utm[qi])
        assert cells[0][1] == f"q{qi} {ds.q_conditions[qi]}: top-1 {d1:.0f} m"
        assert cells[1][1] == f"#1 db {top1_all[qi, 0]}, {d1:.0f} m" and len(cells) == 6
    # the map: per condition, its green dots are its R@1 x queries (25 m rule)
    from wakd.maps import evaluation_map

    counts = evaluation_map(ds, top1_all, tmp_path / "map.png", title="random")
    assert set(counts) == {"day", "sunset", "night"} and (tmp_path / "map.png").stat().st_size > 10_000
    rows25 = table[table["rule"] == "25m"].set_index("condition")
    for cond, (green, n) in counts.items():
        assert n == rows25.loc[cond, "queries"] and green == round(rows25.loc[cond, "R@1"] * n)
    assert main(["evaluate", "--descriptors", str(desc), "--model", "random", "--out", str(tmp_path / "r2.csv"),
                 "--map", str(tmp_path / "cli_map.png")]) == 0 and (tmp_path / "cli_map.png").exists()
    with h5py.File(preds) as f:  # hub_share: the most frequent top-1's share of each condition's queries
        top1 = f["predictions"][:, 0]
    conds = np.asarray(ds.q_conditions)
    for _, row in table.iterrows():
        sel = top1 if row["condition"] == "all" else top1[conds == row["condition"]]
        assert row["hub_share"] == pytest.approx(np.bincount(sel).max() / len(sel), abs=1e-4)
    assert set(table["rule"]) == {"25m", "25m+yaw45"}
    row = table[(table["rule"] == "25m") & (table["condition"] == "all")].iloc[0]
    assert row["queries"] == ds.num_queries and 0 <= row["R@1"] <= row["R@5"] <= row["R@20"] <= 1
    with h5py.File(preds) as f:
        pred = f["predictions"][:]
    assert pred.shape == (ds.num_queries, 20)
    expect = recall_at_n(pred, ds.positives(), (1, 5))
    assert row["R@1"] == pytest.approx(expect[1], abs=1e-4) and row["R@5"] == pytest.approx(expect[5], abs=1e-4)
    both = tmp_path / "both.csv"
    assert main(["summarize", "--csv", str(csv), str(csv), "--out", str(both), "--figure", str(curve)]) == 0
    assert len(pd.read_csv(both)) == 2 * len(table)
    from wakd.report import recall_curves

    titles = recall_curves(table, tmp_path / "panels.png")  # one panel per condition, all first
    assert [t.split(" (")[0] for t in titles] == [f"synthetic: {c}" for c in ("all", "day", "sunset", "night")]
    assert f"({ds.num_queries} queries, 25m)" in titles[0]
    assert recall_curves(table, tmp_path / "day.png", condition="day") == [titles[1]]
    for png in (grid, curve):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000

    # the same file evaluated with de-duplication: every query keeps distinct panoramas
    _, dedup, dscores = evaluate_file(desc, "random", dedup_panoramas=True)
    pano = panorama_ids(ds.db_utm)
    assert all(len(set(pano[r[r >= 0]])) == (r >= 0).sum() for r in dedup)
    # each kept prediction keeps its similarity, best first; padding alone is NaN
    assert np.isfinite(dscores[dedup >= 0]).all() and np.isnan(dscores[dedup < 0]).all()
    kept = dscores[:, :3]
    assert (np.diff(kept[np.isfinite(kept).all(axis=1)], axis=1) <= 1e-6).all()


def test_evaluate_rejects_non_descriptor_file(tmp_path):
    bad = tmp_path / "x.hdf5"
    with h5py.File(bad, "w") as f:
        f.create_dataset("db/descriptors", data=np.zeros((2, 2)))
    with pytest.raises(WakdError, match=r"x\.hdf5: missing dataset /db/utm"):
        evaluate_file(bad, "m")


def test_torch_search_path_matches_faiss_and_names_bad_rows():
    """The GPU search's code path (float16 chunks as stored, checked and scored in float32 on the device), run on
    the CPU."""
    rng = np.random.default_rng(0)
    db = rng.standard_normal((3000, 64)).astype(np.float32)
    db = (db / np.linalg.norm(db, axis=1, keepdims=True)).astype(np.float16)
    q = db[:50].astype(np.float32) + 0.01 * rng.standard_normal((50, 64)).astype(np.float32)
    ref_s, ref = knn(db, q, 5)
    got_s, got = knn(db, q, 5, chunk_rows=1024, device="cpu:0")  # any device but "cpu" takes the torch path
    assert (ref == got).all() and got.shape == (50, 5) and got_s.dtype == np.float32
    np.testing.assert_allclose(got_s, ref_s, atol=1e-5)  # scored in float32, as faiss does
    db[1500, 3] = np.nan
    with pytest.raises(WakdError, match="row 1500 is not finite"):
        knn(db, q, 5, chunk_rows=1024, device="cpu:0")


def test_summarize_markdown_table(tmp_path, capsys):
    """`wakd summarize --markdown`: one row per model, R@1/5/10 in % per condition of the rule."""
    import pandas as pd

    from wakd.cli import main as cli

    rows = [{"model": m, "dataset": "synthetic", "split": "test", "rule": "25m", "condition": c, "R@1": r1,
             "R@5": 0.5, "R@10": 0.75, "R@20": 0.9, "queries": 10}
            for m, r1 in (("teacher", 0.4), ("student_kd", 0.25)) for c in ("all", "day")]
    rows.append({**rows[0], "rule": "10m", "R@1": 0.1})
    csv = tmp_path / "r.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    assert cli(["summarize", "--csv", str(csv), "--out", str(tmp_path / "s.csv"), "--markdown"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "| dataset | model | all R@1/5/10 | day R@1/5/10 |"
    assert lines[2] == "| synthetic | `teacher` | 40.0 / 50.0 / 75.0 | 40.0 / 50.0 / 75.0 |"
    assert lines[3].startswith("| synthetic | `student_kd` | 25.0 / 50.0") and len(lines) == 4
    assert cli(["summarize", "--csv", str(csv), "--out", str(tmp_path / "t.csv"), "--markdown",
                "--rule", "5m"]) == 2
    assert not (tmp_path / "t.csv").exists()  # refused before anything is written


def test_training_curves_draw_the_history(tmp_path):
    """wakd curves: every line drawn is a history column as written, per run; bad histories are refused."""
    from wakd.stages.curves import CurvesConfig
    from wakd.stages.curves import run as run_curves

    teacher = pd.DataFrame({"epoch": [0, 1, 2], "generation": [0, 0, 0], "loss": [0.3, 0.2, 0.1],
                            "R@1": [0.1, 0.2, 0.3], "R@5": [0.3, 0.5, 0.4], "R@10": [0.5, 0.6, 0.7],
                            "day_R@1": [0.2, 0.3, 0.4],
                            "night_R@1": [0.0, 0.05, 0.1], "cache_share": [0.2, 0.15, 0.1]})
    student = teacher.assign(hard_loss=[0.1, 0.1, 0.1], kd_vlad=[0.01, 0.005, 0.002], gshare_hard=[0.5, 0.6, 0.7],
                             gshare_kd_vlad=[0.5, 0.4, 0.3], generation=[0, 1, 1], soft_loss=[0.0, 2.0, 1.5])
    (tmp_path / "t").mkdir(), (tmp_path / "s").mkdir()
    teacher.to_csv(tmp_path / "t/history.csv", index=False)
    student.to_csv(tmp_path / "s/history.csv", index=False)
    drawn = run_curves(CurvesConfig(history=(str(tmp_path / "t/history.csv"), str(tmp_path / "s/history.csv")),
                                    out=str(tmp_path / "c.png")))
    assert (tmp_path / "c.png").stat().st_size > 10_000
    for label, hist in (("t", teacher), ("s", student)):
        for col in hist.columns:
            if col not in ("epoch", "generation"):
                assert drawn[(label, col)] == hist[col].tolist(), (label, col)
    (tmp_path / "bad.csv").write_text("epoch,loss\n0,high\n")
    with pytest.raises(WakdError, match="bad.csv: column loss holds 'high'"):
        run_curves(CurvesConfig(history=(str(tmp_path / "bad.csv"),), out=str(tmp_path / "d.png")))
    with pytest.raises(WakdError, match="--labels: 1 names for 2"):
        run_curves(CurvesConfig(history=(str(tmp_path / "t/history.csv"),) * 2, labels=("a",),
                                out=str(tmp_path / "d.png")))
