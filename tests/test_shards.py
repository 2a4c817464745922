"""Sharded extraction: ``wakd extract --shard I/N`` + ``wakd gather`` = one ``wakd extract``, bit for bit."""

import json

import h5py
import numpy as np
import pytest

from wakd.cli import main
from wakd.descriptors import parse_shard, shard_rows
from wakd.utils import WakdError

NET = ["--arch", "mobilenetv3_small", "--num-clusters", "8", "--dataset", "synthetic", "--workers", "0",
       "--batch-size", "4", "--precision", "fp32"]


@pytest.mark.parametrize("num_db,num_q,db_batch,q_batch", [(136, 150, 4, 4), (10, 3, 4, 1), (5, 7, 16, 16)])
def test_shards_cover_every_row_once_on_the_batch_grid(num_db, num_q, db_batch, q_batch):
    batches = -(-num_db // db_batch) + -(-num_q // q_batch)
    for count in range(1, batches + 1):
        parts = [shard_rows(num_db, num_q, db_batch, q_batch, i, count) for i in range(1, count + 1)]
        for group, (n, batch) in enumerate(((num_db, db_batch), (num_q, q_batch))):
            spans = [p[group] for p in parts]
            assert spans[0][0] == 0 and spans[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))  # contiguous, in order, no overlap
            assert all(lo % batch == 0 or lo == n for lo, _hi in spans)  # each starts a batch of the whole run
        sizes = [sum(hi - lo for lo, hi in p) for p in parts]
        assert all(s > 0 for s in sizes)  # no shard is empty
    with pytest.raises(WakdError, match=f"only {batches} batches"):
        shard_rows(num_db, num_q, db_batch, q_batch, 1, batches + 1)


@pytest.mark.parametrize("text", ["3", "a/b", "0/2", "3/2", "-1/2"])
def test_shard_text_is_checked(text):
    with pytest.raises(WakdError, match="--shard"):
        parse_shard(text)
    assert parse_shard("2/4") == (2, 4)


def _datasets(path):
    out = {}
    with h5py.File(path) as f:
        f.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
        attrs = {k: str(v) for k, v in f.attrs.items()}
    return out, attrs


@pytest.fixture(scope="module")
def sharded(tiny_city, tmp_path_factory):
    d = tmp_path_factory.mktemp("shards")
    common = [*NET, "--root", str(tiny_city)]
    assert main(["extract", *common, "--out", str(d / "whole.hdf5")]) == 0
    for i in (3, 1, 2):
        assert main(["extract", *common, "--shard", f"{i}/3", "--out", str(d / f"part{i}.hdf5")]) == 0
    return d


def test_gathered_shards_equal_one_extraction_bit_for_bit(sharded):
    d = sharded
    out = d / "gathered.hdf5"
    # given in any order
    assert main(["gather", "--shards", *(str(d / f"part{i}.hdf5") for i in (2, 3, 1)), "--out", str(out)]) == 0
    whole, whole_attrs = _datasets(d / "whole.hdf5")
    gathered, attrs = _datasets(out)
    assert sorted(gathered) == sorted(whole)
    assert {"db/descriptors", "queries/descriptors", "queries/conditions", "db/yaw"} <= set(whole)
    for name, value in whole.items():
        assert gathered[name].dtype == value.dtype and np.array_equal(gathered[name], value), name
    assert {k: v for k, v in attrs.items() if k != "provenance"} == {
        **{k: v for k, v in whole_attrs.items() if k != "provenance"},
        "extract_provenance": attrs["extract_provenance"], "shards": attrs["shards"]}
    assert [r["config"]["shard"] for r in json.loads(attrs["extract_provenance"])] == [[1, 3], [2, 3], [3, 3]]
    assert len(json.loads(attrs["shards"])) == 3
    # every shard holds a part: the shards' rows add up, each a different part
    rows = []
    for i in (1, 2, 3):
        parts, part_attrs = _datasets(d / f"part{i}.hdf5")
        assert part_attrs["shard"] == f"{i}/3"
        rows.append(len(parts["db/descriptors"]) + len(parts["queries/descriptors"]))
    assert sum(rows) == len(whole["db/descriptors"]) + len(whole["queries/descriptors"]) and min(rows) > 0


def test_gather_refuses_shards_that_do_not_fit(sharded, tmp_path, capsys):
    d = sharded
    out = tmp_path / "out.hdf5"
    cases = [
        ([d / "part1.hdf5", d / "part2.hdf5"], "part1.hdf5: shard 1/3 of 3, but 2 files given"),
        ([d / "part1.hdf5", d / "part1.hdf5", d / "part3.hdf5"], "given twice"),
        ([d / "part1.hdf5", d / "part2.hdf5", d / "whole.hdf5"], "whole.hdf5: not a shard"),
    ]
    other = tmp_path / "other.hdf5"  # a shard of another model
    with h5py.File(d / "part3.hdf5") as src, h5py.File(other, "w") as dst:
        for key in src:
            src.copy(src[key], dst, key)
        dst.attrs.update({**src.attrs, "model": json.dumps({"arch": "resnet18"})})
    cases.append(([d / "part1.hdf5", d / "part2.hdf5", other], "other.hdf5: attribute 'model'"))
    short = tmp_path / "short.hdf5"  # a shard that lost its query yaws
    with h5py.File(d / "part3.hdf5") as src, h5py.File(short, "w") as dst:
        for key in src:
            src.copy(src[key], dst, key)
        dst.attrs.update(src.attrs)
        del dst["queries/yaw"]
    cases.append(([d / "part1.hdf5", d / "part2.hdf5", short], "short.hdf5: /queries holds conditions, paths, utm"))
    # shards of the same network extracted with other options: another image size, another seed of the
    # initialised network (same attributes, other descriptors)
    with h5py.File(d / "part1.hdf5") as f:
        tiny_root = json.loads(f.attrs["provenance"])["config"]["root"]
    common = [*NET, "--root", tiny_root]
    for name, extra, needle in (("size.hdf5", ["--size", "64x80"], "size.hdf5: extracted with --size [64, 80]"),
                                ("seed.hdf5", ["--seed", "1"], "seed.hdf5: extracted with --seed 1, but")):
        assert main(["extract", *common, *extra, "--shard", "3/3", "--out", str(tmp_path / name)]) == 0
        cases.append(([d / "part1.hdf5", d / "part2.hdf5", tmp_path / name], needle))
    for shards, needle in cases:
        rc = main(["gather", "--shards", *map(str, shards), "--out", str(out)])
        err = capsys.readouterr().err
        assert rc == 2 and needle in err, err
        assert not out.exists() and not list(tmp_path.glob(".out*"))
