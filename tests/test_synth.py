"""The embedded synthetic city: layout, determinism, geography and signal."""

import hashlib

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy.spatial.distance import cdist

from wakd.data import load_dataset
from wakd.data.synthetic import synthetic_raw_dir
from wakd.synth.baseline import baseline_recalls, chance_recall, thumbnail_descriptor
from wakd.synth.generate import generate
from wakd.synth.presets import Preset
from wakd.synth.render import make_lighting, render
from wakd.synth.world import make_city
from wakd.utils import WakdError

MICRO = Preset(blocks=(2, 2), db_spacing=25.0, yaws=2, queries=(6, 6, 6), size=(48, 64))


def test_tiny_loads_through_the_pittsburgh_loader(tiny_city):
    for split in ("train", "val", "test"):
        ds = load_dataset("synthetic", split, tiny_city)
        side = pd.read_csv(tiny_city / f"raw/synthetic_{split}_images.csv")
        assert ds.num_db == (side["set"] == "db").sum() > 0
        assert ds.num_queries == (side["set"] == "query").sum() > 0
        assert ds.num_db % 4 == 0  # 4 yaws per panorama, one position per panorama
        np.testing.assert_allclose(ds.db_utm, side.loc[side["set"] == "db", ["easting", "northing"]], atol=1e-3)
        assert (ds.pos_dist_thr, ds.train_pos_dist_thr) == (25.0, 10.0)
        assert set(ds.q_conditions) <= {"day", "sunset", "night"}
        img = Image.open(ds.q_paths[0])
        assert img.size == (128, 96) and img.mode == "RGB"
    db = ds.db_utm.reshape(-1, 4, 2)
    assert (db == db[:, :1]).all()
    prefixes = [p.rsplit("_yaw", 1)[0] for p in ds.db_paths]
    assert all(len(set(prefixes[i:i + 4])) == 1 for i in range(0, len(prefixes), 4))


def test_splits_are_geographically_disjoint(tiny_city):
    pos = {s: np.concatenate([d.db_utm, d.q_utm]) for s in ("train", "val", "test")
           for d in [load_dataset("synthetic", s, tiny_city)]}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert cdist(pos[a], pos[b]).min() > 25.0, (a, b)


def test_same_seed_same_bytes(tmp_path):
    a = generate(tmp_path / "a", MICRO, seed=3, workers=1, preview=False)
    generate(tmp_path / "b", MICRO, seed=3, workers=2, preview=False)
    generate(tmp_path / "c", MICRO, seed=4, workers=1, preview=False)

    def digest(root):
        files = sorted(p for p in (root / "raw").rglob("*") if p.is_file())
        return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}

    da, db_, dc = digest(tmp_path / "a"), digest(tmp_path / "b"), digest(tmp_path / "c")
    assert da == db_
    assert da["raw/synthetic_test.mat"] != dc["raw/synthetic_test.mat"]
    assert a["images"] == sum(v["db"] + v["queries"] for v in a["counts"].values())


def test_refuses_to_overwrite_and_leaves_nothing_half_written(tmp_path):
    out = tmp_path / "city"
    out.mkdir()
    (out / "something").write_text("x")
    with pytest.raises(WakdError, match="exists and is not empty"):
        generate(out, MICRO, workers=1)
    assert [p.name for p in tmp_path.iterdir()] == ["city"]


def test_loader_needs_side_table(tmp_path):
    generate(tmp_path / "c", MICRO, workers=1, preview=False)
    (synthetic_raw_dir(tmp_path / "c") / "synthetic_val_images.csv").unlink()
    with pytest.raises(WakdError, match=r"synthetic_val_images\.csv: side table not found"):
        load_dataset("synthetic", "val", tmp_path / "c")


def test_nearby_views_are_more_similar_than_far_ones():
    city = make_city(0, (3, 3))
    rng = np.random.default_rng(0)
    pts, dirs = city.street_samples(1.0)
    near, far = [], []
    for _ in range(30):
        i = rng.integers(len(pts))
        step = np.array([np.cos(np.deg2rad(dirs[i])), np.sin(np.deg2rad(dirs[i]))])
        yaw = dirs[i] + 90.0 * rng.integers(4)
        light = make_lighting("day", rng)

        def desc(p, yaw=yaw, light=light):
            return thumbnail_descriptor(Image.fromarray(render(city, p, yaw, (48, 64), light)))

        base = desc(pts[i])
        near.append(base @ desc(pts[i] + 5 * step))
        j = np.flatnonzero(np.linalg.norm(pts - pts[i], axis=1) > 100)
        far.append(base @ desc(pts[rng.choice(j)]))
    assert np.mean(near) > np.mean(far) + 0.1


def test_day_queries_retrievable_and_night_harder(tiny_city):
    ds = load_dataset("synthetic", "test", tiny_city)
    chance1, chance5 = chance_recall(ds, 1, max_yaw_diff=45), chance_recall(ds, 5, max_yaw_diff=45)
    hist = baseline_recalls(ds, "histogram", ns=(1, 5), max_yaw_diff=45)
    assert hist["day"][5] > 2 * chance5 and hist["day"][5] > chance5 + 0.2
    assert hist["day"][5] > hist["night"][5] + 0.2
    thumb = baseline_recalls(ds, "thumbnail", ns=(1, 5), max_yaw_diff=45)
    assert thumb["day"][1] > 2 * chance1
    assert thumb["day"][5] > thumb["night"][5] + 0.1
