import numpy as np
import pytest
from conftest import make_pitts_root, pitts_values, write_db_struct, write_image

from wakd.data import DatasetError, load_dataset
from wakd.data.images import load_image, resize_shorter_side
from wakd.data.matfile import load_db_struct


def test_counts_coordinates_and_positives(pitts_root):
    ds = load_dataset("pitts30k", "test", pitts_root)
    assert ds.num_db == 4 and ds.num_queries == 3
    np.testing.assert_allclose(ds.db_utm[2], [585100.0, 4477000.0])
    np.testing.assert_allclose(ds.q_utm[:, 1], [4477000.0, 4477020.0, 4477500.0])
    assert ds.db_paths[0].endswith("pitts/raw/Pittsburgh/images/000/000000_pitch1_yaw1.jpg")
    assert ds.q_paths[0].endswith("pitts/raw/Pittsburgh/queries/000/000000_pitch1_yaw3.jpg")
    pos = ds.positives()
    assert [p.tolist() for p in pos] == [[0, 1], [2, 3], []]
    # query 1 is 20 m from pano 1: an evaluation positive but not a training positive (10 m)
    assert [p.tolist() for p in ds.train_positives()] == [[0, 1], [], []]
    s = ds.summary()
    assert s["queries_with_positive"] == 2
    assert s["mean_positives_per_query"] == pytest.approx(4 / 3)
    assert (s["pos_dist_thr"], s["train_pos_dist_thr"]) == (25.0, 10.0)


def test_thresholds_come_from_the_file(tmp_path):
    values = pitts_values()
    values.update(posDistThr=30, posDistSqThr=900, nonTrivPosDistSqThr=64)
    ds = load_dataset("pitts250k", "test", make_pitts_root(tmp_path, "250k", values=values))
    assert (ds.pos_dist_thr, ds.train_pos_dist_thr) == (30.0, 8.0)


def test_original_distribution_layout(tmp_path):
    root = make_pitts_root(tmp_path, layout="original")
    ds = load_dataset("pitts30k", "test", root)
    assert ds.q_paths[0].endswith("Pittsburgh/queries_real/000/000000_pitch1_yaw3.jpg")
    assert ds.db_paths[0].endswith("Pittsburgh/000/000000_pitch1_yaw1.jpg")


def test_fields_read_by_position_when_renamed(tmp_path):
    root = make_pitts_root(tmp_path)
    mat = root / "pitts/raw/pitts30k_test.mat"
    renamed = [f"f{i}" for i in range(10)]
    write_db_struct(mat, pitts_values(), names=renamed)
    ds = load_dataset("pitts30k", "test", root)
    assert ds.num_db == 4 and ds.num_queries == 3


def test_missing_mat_names_the_places_searched(tmp_path):
    with pytest.raises(DatasetError, match=r"pitts30k_val\.mat not found.*pitts/raw/pitts30k_val\.mat"):
        load_dataset("pitts30k", "val", tmp_path)


def test_missing_field(tmp_path):
    order = tuple(k for k in pitts_values() if k != "utmQ")
    path = write_db_struct(tmp_path / "x.mat", pitts_values(), order=order)
    with pytest.raises(DatasetError, match=r"x\.mat: dbStruct has no field 'utmQ'"):
        load_db_struct(path)


def test_num_images_mismatch(tmp_path):
    values = pitts_values()
    values["numImages"] = 5
    root = make_pitts_root(tmp_path, values=values)
    with pytest.raises(DatasetError, match=r"pitts30k_test\.mat: field 'numImages' says 5 but 'dbImageFns' lists 4"):
        load_dataset("pitts30k", "test", root)


def test_utm_length_mismatch(tmp_path):
    values = pitts_values()
    values["utmQ"] = values["utmQ"][:2]
    root = make_pitts_root(tmp_path, values=values)
    with pytest.raises(DatasetError, match=r"'utmQ' has 2 positions but 'qImageFns' lists 3"):
        load_dataset("pitts30k", "test", root)


def test_absent_image(pitts_root):
    (pitts_root / "pitts/raw/Pittsburgh/images/000/000001_pitch1_yaw2.jpg").unlink()
    with pytest.raises(DatasetError, match=r"1 of 4 listed images are absent .*000001_pitch1_yaw2\.jpg"):
        load_dataset("pitts30k", "test", pitts_root)
    # planning without images still works
    assert load_dataset("pitts30k", "test", pitts_root, check_images=False).num_db == 4


def test_path_escaping_root(tmp_path):
    values = pitts_values()
    values["qImageFns"] = ["../../../etc/passwd", *values["qImageFns"][1:]]
    root = make_pitts_root(tmp_path, values=values)
    with pytest.raises(DatasetError, match=r"'\.\./\.\./\.\./etc/passwd' escapes the dataset root"):
        load_dataset("pitts30k", "test", root)


def test_not_a_mat_file(tmp_path):
    root = make_pitts_root(tmp_path)
    (root / "pitts/raw/pitts30k_test.mat").write_bytes(b"this is not matlab")
    with pytest.raises(DatasetError, match=r"pitts30k_test\.mat: not a readable MATLAB"):
        load_dataset("pitts30k", "test", root)


def test_unreadable_image(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(DatasetError, match=r"broken\.jpg: unreadable image"):
        load_image(bad)
    with pytest.raises(DatasetError, match=r"nothere\.jpg: image file not found"):
        load_image(tmp_path / "nothere.jpg")


def test_resize_shorter_side(tmp_path):
    write_image(tmp_path / "a.png", size=(40, 30))
    img = resize_shorter_side(load_image(tmp_path / "a.png"), 60)
    assert img.size == (80, 60)


def test_unknown_dataset_lists_choices(tmp_path):
    with pytest.raises(DatasetError, match=r"Unknown dataset 'pitts'; expected one of pitts30k, pitts250k, tokyo247"):
        load_dataset("pitts", "test", tmp_path)


@pytest.mark.parametrize("field, value, needle", [
    ("posDistThr", float("nan"), "field 'posDistThr' is nan; expected a positive distance"),
    ("posDistThr", -25.0, "field 'posDistThr' is -25; expected a positive distance"),
    ("posDistSqThr", 0.0, "field 'posDistSqThr' is 0; expected a positive distance"),
    ("nonTrivPosDistSqThr", -100.0, "field 'nonTrivPosDistSqThr' is -100"),
    ("numQueries", 2.5, "field 'numQueries' is 2.5; expected a count"),
])
def test_mat_values_that_cannot_be_meant_are_refused(tmp_path, field, value, needle):
    values = pitts_values()
    values[field] = value
    root = make_pitts_root(tmp_path, values=values)
    with pytest.raises(DatasetError, match=rf"pitts30k_test\.mat: {needle}"):
        load_dataset("pitts30k", "test", root)


@pytest.mark.parametrize("value", [float("nan"), -25.0, 0.0])
def test_descriptor_file_threshold_is_checked(tmp_path, value):
    import h5py

    from wakd.descriptors import read_ground_truth
    from wakd.utils import WakdError

    path = tmp_path / "d.hdf5"
    with h5py.File(path, "w") as f:
        f.attrs.update({"dataset": "synthetic", "split": "test", "pos_dist_thr": value})
        for g in ("db", "queries"):
            f.create_dataset(f"{g}/descriptors", data=np.eye(2, 4, dtype=np.float16))
            f.create_dataset(f"{g}/paths", data=np.array(["a.jpg", "b.jpg"], dtype=object),
                             dtype=h5py.string_dtype())
            f.create_dataset(f"{g}/utm", data=np.zeros((2, 2)))
    with pytest.raises(WakdError, match=r"d\.hdf5: pos_dist_thr \(the evaluation positive radius\) is"):
        read_ground_truth(path)
