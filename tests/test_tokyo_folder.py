import numpy as np
import pytest
from conftest import TOKYOTM_ORDER, pitts_values, write_db_struct, write_image

from wakd.data import DatasetError, load_dataset
from wakd.data.folder import parse_utm_from_name


def make_tokyo247(root, names=("q_day_0001.jpg", "q_sunset_0001.jpg", "q_night_0001.jpg"), side=None):
    base = root / "tokyo/raw"
    values = pitts_values("test")
    values["dbImageFns"] = [p.replace("pitch1_", "") for p in values["dbImageFns"]]
    values["qImageFns"] = list(names)
    write_db_struct(base / "tokyo247.mat", values)
    for p in values["dbImageFns"]:  # the .mat says .jpg, the files are .png
        write_image(base / "tokyo247/images" / p.replace(".jpg", ".png"))
    for p in names:
        write_image(base / "tokyo247/query" / p)
    if side is not None:
        (base / "tokyo247_conditions.csv").write_text(side)
    return root


def test_tokyo247_png_files_and_conditions_from_names(tmp_path):
    ds = load_dataset("tokyo247", "test", make_tokyo247(tmp_path))
    assert ds.db_paths[0].endswith("tokyo247/images/000/000000_yaw1.png")
    assert ds.q_conditions == ["day", "sunset", "night"]
    assert ds.query_resize_shorter == 640
    assert ds.summary()["query_conditions"] == {"day": 1, "night": 1, "sunset": 1}


def test_tokyo247_conditions_from_side_table(tmp_path):
    root = make_tokyo247(tmp_path, names=("00001.jpg", "00002.jpg", "00003.jpg"),
                         side="image,condition\n00001.jpg,night\n00002.jpg,day\n00003.jpg,Sunset\n")
    assert load_dataset("tokyo247", "test", root).q_conditions == ["night", "day", "sunset"]


def test_tokyo247_bad_side_table(tmp_path):
    root = make_tokyo247(tmp_path, names=("00001.jpg", "00002.jpg", "00003.jpg"),
                         side="image,condition\n00001.jpg,night\n00002.jpg,dusk\n00003.jpg,day\n")
    with pytest.raises(DatasetError, match=r"tokyo247_conditions\.csv: condition 'dusk' of '00002\.jpg'"):
        load_dataset("tokyo247", "test", root)


def test_tokyo247_unknown_conditions_are_none(tmp_path):
    root = make_tokyo247(tmp_path, names=("00001.jpg", "00002.jpg", "00003.jpg"))
    assert load_dataset("tokyo247", "test", root).q_conditions is None


def test_tokyo247_has_only_test(tmp_path):
    with pytest.raises(DatasetError, match="only the 'test' split"):
        load_dataset("tokyo247", "train", tmp_path)


def test_tokyotm_time_stamps_and_other_time_positives(tmp_path):
    base = tmp_path / "tokyo/raw"
    v = pitts_values("train")
    v["dbTimeStamp"] = [200907, 201004, 200907, 201004]
    v["qTimeStamp"] = [200907, 201004, 200907]
    write_db_struct(base / "tokyoTM_train.mat", v, order=TOKYOTM_ORDER)
    for p in v["dbImageFns"] + v["qImageFns"]:
        write_image(base / "tokyoTM/images" / p)
    ds = load_dataset("tokyoTM", "train", tmp_path)
    np.testing.assert_array_equal(ds.db_time, [200907, 201004, 200907, 201004])
    # query 0 (taken 2009-07) is 8 m from pano 0: only its 2010-04 image is a training positive
    assert [p.tolist() for p in ds.train_positives()] == [[1], [], []]
    assert [p.tolist() for p in ds.positives()] == [[0, 1], [2, 3], []]


def test_tokyotm_time_stamp_length_mismatch(tmp_path):
    v = pitts_values("val")
    v["dbTimeStamp"], v["qTimeStamp"] = [1, 2, 3], [1, 2, 3]
    write_db_struct(tmp_path / "tokyo/raw/tokyoTM_val.mat", v, order=TOKYOTM_ORDER)
    with pytest.raises(DatasetError, match=r"'dbTimeStamp' has 3 entries for 4 images"):
        load_dataset("tokyoTM", "val", tmp_path)


def folder_name(e, n):
    return f"@{e:.2f}@{n:.2f}@17@T@35.0@139.0@pano@@@@@@@.jpg"


def test_folder_format(tmp_path):
    root = tmp_path / "mydata"
    for e in (0.0, 5.0, 200.0):
        write_image(root / "images/test/database/sub" / folder_name(300000 + e, 4000000))
    write_image(root / "images/test/queries" / folder_name(300002, 4000003))
    ds = load_dataset("folder", "test", root)
    assert ds.name == "mydata" and ds.num_db == 3 and ds.num_queries == 1
    np.testing.assert_allclose(ds.q_utm, [[300002.0, 4000003.0]])
    assert sorted(ds.db_utm[ds.positives()[0], 0].tolist()) == [300000.0, 300005.0]


def test_folder_format_errors(tmp_path):
    with pytest.raises(DatasetError, match=r"images/val: split folder not found"):
        load_dataset("folder", "val", tmp_path)
    with pytest.raises(DatasetError, match=r"bad_name\.jpg: file name does not follow"):
        parse_utm_from_name("bad_name.jpg")
