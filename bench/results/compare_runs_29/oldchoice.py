"""Patch a checkout of 1b1144e back to the old precise-BN image choice of cluster and extract (refactor check).

    python oldchoice.py CHECKOUT
"""

import pathlib
import sys

CLUSTER_NEW = """        calibrate_bn(prepare(backbone, dev), ds, cfg.precise_bn, cfg.seed, dev, """ \
              """batch_size=max(cfg.batch_size, 16),
                     **look)"""
CLUSTER_OLD = """        from wakd.data.loader import image_loader
        from wakd.models.bn import recalibrate_bn
        loader = image_loader(paths[:cfg.precise_bn], max(2, max(cfg.batch_size, 16)), cfg.workers, size=cfg.size,
                              pin_memory=dev.type == "cuda")
        recalibrate_bn(prepare(backbone, dev), (x for x, _ in loader), dev, precision=cfg.precision, size=cfg.size)"""
EXTRACT_NEW = """    return calibrate_bn(model, load_dataset(dataset, "train", root), num_images, seed, device, **kw)"""
EXTRACT_OLD = """    from wakd.data.loader import image_loader
    from wakd.features import sample_paths
    from wakd.models.bn import recalibrate_bn
    train = load_dataset(dataset, "train", root)
    loader = image_loader(sample_paths(train.db_paths, num_images, seed), max(2, kw["batch_size"]), kw["workers"],
                          size=kw["size"], pin_memory=device.type == "cuda")
    return recalibrate_bn(model, (x for x, _ in loader), device, precision=kw["precision"], size=kw["size"])"""


def patch(path: pathlib.Path, new: str, old: str) -> None:
    text = path.read_text()
    assert new in text, path
    path.write_text(text.replace(new, old))


if __name__ == "__main__":
    root = pathlib.Path(sys.argv[1])
    patch(root / "wakd/stages/cluster.py", CLUSTER_NEW, CLUSTER_OLD)
    patch(root / "wakd/stages/extract.py", EXTRACT_NEW, EXTRACT_OLD)
