"""A trained network on anyone's photos: wakd.load_model / describe, wakd index / query / export."""

import json
import shutil

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

import wakd
from wakd.cli import main
from wakd.data import load_dataset
from wakd.index import Index, distance_m, position_from_name, positions_for, read_positions
from wakd.utils import WakdError


@pytest.fixture(scope="module")
def trained(tiny_city, tmp_path_factory):
    """A student distilled for one short epoch on the tiny city (a real `wakd train` run)."""
    d = tmp_path_factory.mktemp("deploy")
    common = ["--arch", "mobilenetv3_small", "--output-stride", "16", "--num-clusters", "8", "--dataset",
              "synthetic", "--root", str(tiny_city), "--workers", "0", "--size", "64x88", "--precision", "fp32"]
    assert main(["cluster", *common, "--num-images", "40", "--per-image", "10", "--out", str(d / "c.hdf5")]) == 0
    assert main(["train", *common, "--clusters", str(d / "c.hdf5"), "--epochs", "1", "--queries-per-epoch", "16",
                 "--tuples-per-batch", "4", "--neg-num", "4", "--neg-pool", "40", "--cache-size", "24",
                 "--out-dir", str(d / "run")]) == 0
    return d / "run/model_best.pth.tar"


@pytest.fixture()
def photos(tiny_city, tmp_path):
    """Eight database images of the tiny city under gmberton-style names (positions in the name)."""
    ds = load_dataset("synthetic", "test", tiny_city)
    folder = tmp_path / "photos"
    (folder / "street").mkdir(parents=True)
    picks = list(range(0, ds.num_db, ds.num_db // 8))[:8]
    paths = []
    for n, i in enumerate(picks):
        sub = folder / "street" if n % 2 else folder  # recursive
        dst = sub / f"@{ds.db_utm[i, 0]:.2f}@{ds.db_utm[i, 1]:.2f}@17@T@@@@p{n}@@@@@@@@.jpg"
        shutil.copy(ds.db_paths[i], dst)
        paths.append(dst)
    return folder, paths, ds.db_utm[picks]


def test_load_model_describes_like_the_pipeline(trained, tiny_city, tmp_path):
    model = wakd.load_model(trained)
    assert model.size == (64, 88) and model.dim == 8 * model.net.pool.dim
    assert model.info["arch"] == "mobilenetv3_small" and model.info["arch_kwargs"]["output_stride"] == 16
    ds = load_dataset("synthetic", "test", tiny_city)
    desc = wakd.describe(model, ds.db_paths[:10], batch_size=4)
    assert desc.shape == (10, model.dim) and desc.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(desc, axis=1), 1, atol=1e-5)
    # the same images through `wakd extract` with this checkpoint: the same descriptors
    out = tmp_path / "d.hdf5"
    assert main(["extract", "--arch", "mobilenetv3_small", "--output-stride", "16", "--num-clusters", "8",
                 "--dataset", "synthetic", "--root", str(tiny_city), "--workers", "0", "--size", "64x88",
                 "--precision", "fp32", "--batch-size", "4", "--dtype", "float32", "--checkpoint", str(trained),
                 "--out", str(out)]) == 0
    with h5py.File(out) as f:
        np.testing.assert_allclose(f["db/descriptors"][:10], desc, atol=1e-6)
    # PIL images work too
    pil = [Image.open(p) for p in ds.db_paths[:2]]
    np.testing.assert_allclose(wakd.describe(model, pil), desc[:2], atol=1e-6)


def test_index_then_query_finds_the_photo_itself(trained, photos, tmp_path, capsys):
    folder, paths, utm = photos
    index = tmp_path / "idx/photos.h5"
    assert main(["index", "--checkpoint", str(trained), "--images", str(folder), "--out", str(index),
                 "--workers", "0"]) == 0
    idx = Index(index)
    assert len(idx.paths) == 8 and idx.kind == "utm" and idx.descriptors.shape[1] == wakd.load_model(trained).dim
    assert all(not p.startswith("/") for p in idx.relative)  # relative to the index's folder
    order = sorted(paths)
    np.testing.assert_allclose(idx.coords, [position_from_name(p) for p in order])
    capsys.readouterr()
    # a database photo as its own query: itself first, score 1, 0 m from the best match and the query
    assert main(["query", "--index", str(index), str(paths[3]), str(paths[6]), "--top-k", "3", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert [len(r["matches"]) for r in res] == [3, 3]
    for r, p in zip(res, (paths[3], paths[6])):
        top = r["matches"][0]
        assert top["path"].endswith(p.name) and top["score"] == pytest.approx(1, abs=1e-3)
        assert top["to_best_m"] == 0 and top["to_query_m"] == 0
        assert [m["rank"] for m in r["matches"]] == [1, 2, 3]
        assert all(a["score"] >= b["score"] for a, b in zip(r["matches"], r["matches"][1:]))
        for m in r["matches"]:
            assert m["to_query_m"] == pytest.approx(np.hypot(*(np.array(m["position"]) - r["position"])), abs=0.1)
    # table form, and the figure
    fig = tmp_path / "q.png"
    assert main(["query", "--index", str(index), str(paths[0]), "--figure", str(fig)]) == 0
    table = capsys.readouterr().out
    assert "to best (m)" in table and paths[0].name in table
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the map: the index's positions, each photo's matches and (known from its name) its own place
    where = tmp_path / "map.png"
    assert main(["query", "--index", str(index), str(paths[0]), str(paths[5]), "--map", str(where)]) == 0
    assert where.stat().st_size > 5_000
    blind = tmp_path / "idx/blind.h5"  # the same index without positions: --map is refused before any work
    shutil.copy(index, blind)
    with h5py.File(blind, "r+") as f:
        f["coords"][...] = np.nan
    capsys.readouterr()
    assert main(["query", "--index", str(blind), str(paths[0]), "--map", str(tmp_path / "m2.png")]) == 2
    out = capsys.readouterr()
    assert out.out == "" and "records no positions of its images" in out.err and not (tmp_path / "m2.png").exists()


def test_index_grows_incrementally_and_skips_corrupt_images(trained, photos, tmp_path, capfd):
    folder, paths, _ = photos
    index = tmp_path / "photos.h5"
    moved = tmp_path / "later"
    moved.mkdir()
    for p in paths[5:]:
        shutil.move(p, moved / p.name)
    assert main(["index", "--checkpoint", str(trained), "--images", str(folder), "--out", str(index),
                 "--workers", "0"]) == 0
    before = Index(index)
    assert len(before.paths) == 5
    for p in moved.iterdir():  # the folder grows, and gains a corrupt file
        shutil.move(p, folder / p.name)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    from wakd.stages.index import IndexConfig, run

    stats = run(IndexConfig(checkpoint=str(trained), images=str(folder), out=str(index), workers=0))
    assert stats["described"] == 3 and stats["reused"] == 5 and stats["images"] == 8
    assert len(stats["skipped"]) == 1 and stats["skipped"][0].endswith("broken.jpg")
    assert "broken.jpg" in capfd.readouterr().err
    after = Index(index)
    old = dict(zip(before.relative, before.descriptors))
    assert all(np.array_equal(old[r], d) for r, d in zip(after.relative, after.descriptors) if r in old)
    # a photo replaced under the same name is described again, the others are not
    shutil.copy(paths[1], paths[0])
    stats = run(IndexConfig(checkpoint=str(trained), images=str(folder), out=str(index), workers=0))
    assert stats["described"] == 1 and stats["reused"] == 7
    redone = Index(index)
    rows = dict(zip(redone.relative, redone.descriptors))
    name = lambda p: next(r for r in redone.relative if r.endswith(p.name))  # noqa: E731
    np.testing.assert_allclose(rows[name(paths[0])], rows[name(paths[1])], atol=2e-3)  # same image, fp16 rows
    # the same rows as an index built in one go
    full = tmp_path / "full.h5"
    run(IndexConfig(checkpoint=str(trained), images=str(folder), out=str(full), workers=0))
    one = Index(full)
    assert sorted(one.paths) == sorted(redone.paths)
    np.testing.assert_allclose(one.descriptors[np.argsort(one.paths)], redone.descriptors[np.argsort(redone.paths)],
                               atol=1e-3)  # fp16 rows; batches of another composition


def test_positions_from_a_csv(trained, photos, tmp_path):
    folder, paths, utm = photos
    csv = tmp_path / "pos.csv"
    rows = ["image,lat,lon"] + [f"{p.name},40.44{n},-79.99{n}" for n, p in enumerate(paths)]
    csv.write_text("\n".join(rows) + "\n")
    kind, table = read_positions(csv)
    assert kind == "latlon" and table[paths[2].name] == (40.442, -79.992)
    index = tmp_path / "ll.h5"
    assert main(["index", "--checkpoint", str(trained), "--images", str(folder), "--positions", str(csv),
                 "--out", str(index), "--workers", "0"]) == 0
    assert Index(index).kind == "latlon" and np.isfinite(Index(index).coords).all()
    # haversine: 0.001 degree of latitude is about 111 m
    assert distance_m([40.0, -80.0], [40.001, -80.0], "latlon") == pytest.approx(111.2, abs=0.2)
    bad = tmp_path / "bad.csv"
    bad.write_text("image,lat,lon\nx.jpg,95,0\n")
    with pytest.raises(WakdError, match="line 2"):
        read_positions(bad)


def test_positions_that_cannot_be_meant_are_refused(tmp_path, caplog):
    folder = tmp_path / "photos"
    images = [folder / "a/x.jpg", folder / "b/x.jpg", folder / "b/y.jpg"]
    for p in images:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.touch()

    def csv(name, *rows):
        (tmp_path / name).write_text("\n".join(["image,east,north", *rows]) + "\n")
        return tmp_path / name

    kind, coords = positions_for(images, folder, csv("ok.csv", "a/x.jpg,1,2", "b/x.jpg,3,4", "y.jpg,5,6", "y.jpg,5,6"))
    np.testing.assert_array_equal(coords, [[1, 2], [3, 4], [5, 6]])  # paths, or names when unique; repeats agree
    cases = [(("a/x.jpg,1,2", "a/x.jpg,1,3"), "line 3: a/x.jpg again"),  # two positions for one image
             (("x.jpg,1,2",), "names 2 files"),  # a file name that is not unique under the folder
             (("z.jpg,1,2", "c/x.jpg,3,4"), "none of its 2 images"),  # nothing matches: wrong names
             ((",1,2",), "line 2: empty image")]
    for n, (rows, needle) in enumerate(cases):
        with pytest.raises(WakdError, match=needle):
            positions_for(images, folder, csv(f"bad{n}.csv", *rows))
    with pytest.raises(WakdError, match="expected one position per image"):  # two files that disagree
        positions_for(images, folder, [csv("one.csv", "y.jpg,5,6"), csv("two.csv", "y.jpg,7,8")])
    kind, coords = positions_for(images, folder, csv("part.csv", "b/y.jpg,5,6", "gone.jpg,1,1"))
    assert np.isfinite(coords).sum() == 2 and "1 of 2 rows name no image" in caplog.text


@pytest.mark.parametrize("fmt,suffix", [("torchscript", ".pt"), ("onnx", ".onnx")])
def test_export_round_trips(trained, tmp_path, capsys, fmt, suffix):
    pytest.importorskip("onnxruntime") if fmt == "onnx" else None
    out = tmp_path / f"student{suffix}"
    assert main(["export", "--checkpoint", str(trained), "--format", fmt, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "max abs difference to PyTorch" in printed
    note = json.loads((tmp_path / f"student{suffix}.json").read_text())
    assert note["check"]["max_abs_diff"] < 1e-4 and note["input"]["shape"] == ["batch", 3, 64, 88]
    model = wakd.load_model(trained)
    x = torch.rand(5, 3, 64, 88)  # a batch size the export never saw
    with torch.inference_mode():
        ref = model(x).numpy()
    if fmt == "torchscript":
        got = torch.jit.load(str(out))(x).detach().numpy()
    else:
        import onnxruntime as ort

        got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"images": x.numpy()})[0]
    assert got.shape == (5, model.dim) and np.abs(got - ref).max() < 1e-4


def test_bad_checkpoints_are_one_line_errors(trained, photos, tmp_path, capsys):
    folder = photos[0]

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"model": Evil()}, tmp_path / "evil.pth.tar")
    torch.save({"state_dict": {"w": torch.zeros(2)}}, tmp_path / "foreign.pth.tar")
    ck = torch.load(trained, weights_only=True)
    ck["config"] = {**ck["config"], "num_clusters": 4}
    torch.save(ck, tmp_path / "wrong.pth.tar")
    cases = [(tmp_path / "none.pth.tar", "no such file"), (tmp_path / "evil.pth.tar", "refused"),
             (tmp_path / "foreign.pth.tar", "not a wakd checkpoint"), (tmp_path / "wrong.pth.tar", "do not fit")]
    for path, needle in cases:
        for argv in (["index", "--images", str(folder), "--out", str(tmp_path / "i.h5")],
                     ["export", "--format", "torchscript", "--out", str(tmp_path / "m.pt")]):
            rc = main([*argv, "--checkpoint", str(path)])
            err = capsys.readouterr().err.strip()
            assert rc == 2 and len(err.splitlines()) == 1 and needle in err and path.name in err, err
            assert not (tmp_path / "i.h5").exists() and not (tmp_path / "m.pt").exists()
    assert main(["index", "--checkpoint", str(trained), "--images", str(tmp_path / "nowhere"), "--out",
                 str(tmp_path / "i.h5")]) == 2
    assert "nowhere" in capsys.readouterr().err


def test_a_linked_photo_keeps_its_name(trained, photos, tmp_path):
    """The index records the path in the user's folder, not where a symbolic link points."""
    _, paths, _ = photos
    folder = tmp_path / "links"
    folder.mkdir()
    (folder / "@1.0@2.0@17@T@@@@mine@@@@@@@@.jpg").symlink_to(paths[0])
    assert main(["index", "--checkpoint", str(trained), "--images", str(folder), "--out", str(tmp_path / "l.h5"),
                 "--workers", "0"]) == 0
    idx = Index(tmp_path / "l.h5")
    assert idx.relative == ["links/@1.0@2.0@17@T@@@@mine@@@@@@@@.jpg"] and idx.coords.tolist() == [[1.0, 2.0]]
