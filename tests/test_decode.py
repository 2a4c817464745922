"""`wakd extract --decode torchvision`: JPEG bytes decoded and resized on the run's device (nvjpeg on a
GPU) give the descriptors of the PIL path, up to the resize; bad inputs are named."""

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from wakd.data.base import DatasetError
from wakd.data.loader import ImageList, decode_batch, encoded_loader
from wakd.stages.extract import ExtractConfig
from wakd.stages.extract import run as run_extract
from wakd.utils import WakdError


def test_decoded_batch_is_close_to_pil(tiny_city):
    paths = sorted(str(p) for p in (tiny_city / "raw/images").rglob("*.jpg"))[:6]
    data, idx = next(iter(encoded_loader(paths, 6, 0)))
    x = decode_batch(data, paths, (64, 88), torch.device("cpu"))
    ref = torch.stack([ImageList(paths, (64, 88))[i][0] for i in range(6)])
    assert x.shape == ref.shape == (6, 3, 64, 88) and idx.tolist() == list(range(6))
    # the same pixels up to the resize filter and JPEG decoders (0.05 of a unit-variance channel)
    assert (x - ref).abs().mean() < 0.05


def test_extract_with_torchvision_decoding(tiny_city, tmp_path):
    common = dict(arch="resnet18", num_clusters=4, dataset="synthetic", root=str(tiny_city), split="test",
                  size=(64, 88), workers=0, precision="fp32", device="cpu", precise_bn=0)
    run_extract(ExtractConfig(out=str(tmp_path / "pil.h5"), **common))
    run_extract(ExtractConfig(out=str(tmp_path / "tv.h5"), decode="torchvision", **common))
    with h5py.File(tmp_path / "pil.h5") as a, h5py.File(tmp_path / "tv.h5") as b:
        for g in ("db", "queries"):
            x, y = a[f"{g}/descriptors"][:].astype(np.float32), b[f"{g}/descriptors"][:].astype(np.float32)
            assert x.shape == y.shape and (a[f"{g}/paths"][:] == b[f"{g}/paths"][:]).all()
            assert (x * y).sum(1).min() > 0.98  # unit vectors: cosine of each image's two descriptors
    with pytest.raises(WakdError, match="needs --size"):
        run_extract(ExtractConfig(out=str(tmp_path / "x.h5"), decode="torchvision", **{**common, "size": None}))


def test_torchvision_decoding_names_bad_files(tmp_path):
    png = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(png)
    with pytest.raises(DatasetError, match="a.png: --decode torchvision reads JPEG files only"):
        encoded_loader([str(png)], 1, 0)
    bad = tmp_path / "b.jpg"
    bad.write_bytes(b"\xff\xd8 not a jpeg")
    good = tmp_path / "c.jpg"
    Image.new("RGB", (16, 16), "red").save(good)
    data, _ = next(iter(encoded_loader([str(good), str(bad)], 2, 0)))
    with pytest.raises(DatasetError, match="b.jpg: unreadable image"):
        decode_batch(data, [str(good), str(bad)], (8, 8), torch.device("cpu"))


def test_empty_file_is_named(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(DatasetError, match="empty.jpg: unreadable image file"):
        next(iter(encoded_loader([str(empty)], 1, 0)))
