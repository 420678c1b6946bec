"""edgecls.data.datasets: the three layouts as downloaded, what is skipped and why, groups."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import shared_dataset
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from edgecls.data import dataset_files as files
from edgecls.data.datasets import load_dataset, merge_duplicate_groups
from edgecls.edge_runtime.preprocess import is_image_file, load_image, prepare_image
from edgecls.errors import EdgeclsError

# --- builders ------------------------------------------------------------------------------


def write_jpeg(path: Path, seed: int, size: tuple[int, int] = (48, 40)) -> Path:
    """A noise JPEG: distinct bytes for every seed, big enough that truncation hits pixel data."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="JPEG", quality=90)
    return path


def truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def make_ham10000(root: Path) -> dict:
    """HAM10000 as downloaded: metadata CSV plus images split over two part folders.

    Returns what the loader should make of it, derived from the spec below.
    """
    lesions = {  # lesion_id -> (dx, number of images)
        "HAM_0000001": ("nv", 3),
        "HAM_0000002": ("nv", 1),
        "HAM_0000003": ("nv", 2),
        "HAM_0000004": ("mel", 2),
        "HAM_0000005": ("mel", 1),
        "HAM_0000006": ("bkl", 1),
        "HAM_0000007": ("bkl", 2),
    }
    rows, seed = [], 0
    for lesion, (dx, n) in lesions.items():
        for _ in range(n):
            image_id = f"ISIC_{seed:07d}"
            part = 1 + seed % 2
            write_jpeg(root / f"HAM10000_images_part_{part}" / f"{image_id}.jpg", seed)
            rows.append({"lesion_id": lesion, "image_id": image_id, "dx": dx, "dx_type": "histo", "age": 50.0})
            seed += 1
    # A byte-identical copy under another lesion: the two lesions must become one group.
    shutil.copy(root / "HAM10000_images_part_1/ISIC_0000000.jpg", root / "HAM10000_images_part_2/ISIC_0000100.jpg")
    rows.append({"lesion_id": "HAM_0000002", "image_id": "ISIC_0000100", "dx": "nv", "dx_type": "histo"})
    # A row whose image was never downloaded, and one whose image is cut short.
    rows.append({"lesion_id": "HAM_0000008", "image_id": "ISIC_0000200", "dx": "mel", "dx_type": "histo"})
    truncate(write_jpeg(root / "HAM10000_images_part_2/ISIC_0000201.jpg", 201))
    rows.append({"lesion_id": "HAM_0000009", "image_id": "ISIC_0000201", "dx": "bkl", "dx_type": "histo"})
    pd.DataFrame(rows).to_csv(root / "HAM10000_metadata.csv", index=False)
    return {
        "rows": len(rows),
        "usable": len(rows) - 2,
        "labels": sorted({dx for dx, _ in lesions.values()}),
        "merged": ("HAM_0000001", "HAM_0000002"),  # ISIC_0000000 belongs to HAM_0000001
        "skipped": {files.MISSING_FILE: 1, files.CORRUPT_IMAGE: 1},
    }


BLOOD_CLASSES = {"Benign": 5, "[Malignant] early Pre-B": 0, "[Malignant] Pre-B": 4, "[Malignant] Pro-B": 6}


def make_class_folders(root: Path) -> dict:
    """The ALL layout (brackets and spaces), one empty class, duplicates, litter and a symlink loop."""
    seed = 0
    for name, n in BLOOD_CLASSES.items():
        (root / name).mkdir(parents=True)
        for i in range(n):
            sub = "batch 2/" if (name.endswith("Pro-B") and i == n - 1) else ""  # nested images count too
            write_jpeg(root / name / f"{sub}WBC {name[-5:]}-{i:03d}.jpg", seed)
            seed += 1
    pro_b = root / "[Malignant] Pro-B"
    shutil.copy(pro_b / "WBC Pro-B-000.jpg", pro_b / "WBC Pro-B-100.jpg")
    shutil.copy(pro_b / "WBC Pro-B-000.jpg", pro_b / "batch 2" / "WBC Pro-B-101.jpg")
    (root / "Benign" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "Benign" / "notes.txt").write_text("scanned 2021\n")
    (root / "[Malignant] Pre-B" / "broken.jpg").write_bytes(b"this is not a JPEG")
    (root / "[Malignant] Pre-B" / "empty.png").write_bytes(b"")
    write_jpeg(root / "__MACOSX" / "Benign" / "._WBC.jpg", 999)
    write_jpeg(root / "stray.jpg", 998)
    os.symlink(root, pro_b / "loop", target_is_directory=True)  # would recurse forever if followed
    os.symlink(root / "Benign", root / "alias", target_is_directory=True)
    return {
        "counts": {"Benign": 5, "[Malignant] Pre-B": 4, "[Malignant] Pro-B": 6 + 2},
        "duplicates": ["[Malignant] Pro-B/WBC Pro-B-000.jpg", "[Malignant] Pro-B/WBC Pro-B-100.jpg",
                       "[Malignant] Pro-B/batch 2/WBC Pro-B-101.jpg"],
        "skipped": {files.NOT_IMAGE_SUFFIX: 1, files.NOT_AN_IMAGE: 1, files.EMPTY_FILE: 1, files.OUTSIDE_CLASS: 1},
    }


# Kaggle's HMNIST label order (checked against public code using these files, and the class
# counts: 6705 rows of label 4 = nv).
HMNIST_NAMES = {0: "akiec", 1: "bcc", 2: "bkl", 3: "df", 4: "nv", 5: "vasc", 6: "mel"}
HMNIST_VARIANTS = [("hmnist_28_28_RGB.csv", (28, 28, 3)), ("hmnist_28_28_L.csv", (28, 28, 1)),
                   ("hmnist_8_8_RGB.csv", (8, 8, 3)), ("hmnist_8_8_L.csv", (8, 8, 1))]


def make_hmnist(path: Path, shape: tuple[int, int, int], seed: int = 0) -> dict:
    """Rows of pixels then label, like Kaggle's; row 9 repeats row 0, row 11 has a missing pixel."""
    rng = np.random.default_rng(seed)
    labels = np.arange(21) % 7
    images = rng.integers(0, 256, (len(labels), *shape), dtype=np.uint8)
    images[9], labels[9] = images[0], labels[0]
    columns = [f"pixel{i:04d}" for i in range(int(np.prod(shape)))]
    table = pd.DataFrame(images.reshape(len(labels), -1), columns=columns)
    table["label"] = labels
    table = table.astype(object)
    table.iloc[11, 3] = None
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)
    return {"images": images, "labels": labels, "duplicate": (0, 9), "invalid": 11}


def one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and message
    return message


# --- HAM10000 ------------------------------------------------------------------------------


def test_ham10000_layout(tmp_path):
    expected = make_ham10000(tmp_path)
    ds = load_dataset(tmp_path)
    assert ds.format == "ham10000" and ds.labels == expected["labels"]
    assert len(ds) == expected["usable"] and ds.skipped == expected["skipped"]
    assert ds.skipped_examples[files.MISSING_FILE] == ["ISIC_0000200.jpg"]
    items = ds.items.set_index("image_id")
    assert ds.labels[items.loc["ISIC_0000003", "label_index"]] == items.loc["ISIC_0000003", "label"]
    # Images are found in whichever part folder holds them.
    assert items.loc["ISIC_0000000", "key"] == "HAM10000_images_part_1/ISIC_0000000.jpg"
    assert items.loc["ISIC_0000001", "key"] == "HAM10000_images_part_2/ISIC_0000001.jpg"
    # A lesion is one group; a byte-identical copy joins two lesions into one group.
    assert items.groupby("lesion_id")["group"].nunique().max() == 1
    merged = items[items["lesion_id"].isin(expected["merged"])]["group"]
    assert merged.nunique() == 1 and ds.duplicate_sets == 1
    others = items[~items["lesion_id"].isin(expected["merged"])]
    assert others["group"].nunique() == others["lesion_id"].nunique()
    # The CSV itself names the same dataset.
    via_csv = load_dataset(tmp_path / "HAM10000_metadata.csv")
    pd.testing.assert_frame_equal(via_csv.items, ds.items)
    assert load_dataset(tmp_path, fmt="ham10000").items.equals(ds.items)


def test_ham10000_is_preferred_over_hmnist_and_duplicate_folders_resolve(tmp_path):
    make_ham10000(tmp_path)
    make_hmnist(tmp_path / "hmnist_8_8_L.csv", (8, 8, 1))
    shutil.copytree(tmp_path / "HAM10000_images_part_1", tmp_path / "ham10000_images_part_1")  # as on Kaggle
    ds = load_dataset(tmp_path)
    assert ds.format == "ham10000"
    assert not ds.items["key"].str.startswith("ham10000_").any()
    assert load_dataset(tmp_path, fmt="hmnist").format == "hmnist"


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t.drop(columns="dx"), "no dx column"),
        (lambda t: t.assign(dx=t["dx"].where(t.index != 2, "")), "1 rows have an empty dx"),
        (lambda t: t.assign(dx=t["dx"].where(t.index > 1, "melanoma")), r"unknown dx label\(s\) 'melanoma' \(2 rows\)"),
    ],
)
def test_ham10000_csv_errors(tmp_path, edit, message):
    make_ham10000(tmp_path)
    csv = tmp_path / "HAM10000_metadata.csv"
    edit(pd.read_csv(csv)).to_csv(csv, index=False)
    with pytest.raises(EdgeclsError, match=message) as excinfo:
        load_dataset(tmp_path)
    one_line_error(excinfo)


def test_ham10000_without_lesion_ids_groups_by_image_and_duplicates(tmp_path):
    expected = make_ham10000(tmp_path)
    csv = tmp_path / "HAM10000_metadata.csv"
    pd.read_csv(csv).drop(columns="lesion_id").to_csv(csv, index=False)
    ds = load_dataset(csv)
    assert len(ds) == expected["usable"] and ds.duplicate_sets == 1
    assert ds.items["group"].nunique() == len(ds) - 1  # only the byte-identical pair is joined


def test_ham10000_repeated_and_blank_rows_are_skipped(tmp_path):
    expected = make_ham10000(tmp_path)
    csv = tmp_path / "HAM10000_metadata.csv"
    table = pd.read_csv(csv)
    blank = table.iloc[[0]].assign(image_id="")
    pd.concat([table, table.iloc[[3]], blank]).to_csv(csv, index=False)
    ds = load_dataset(tmp_path)
    assert len(ds) == expected["usable"]
    assert ds.skipped[files.DUPLICATE_ROW] == 1 and ds.skipped[files.NO_IMAGE_ID] == 1


# --- one folder per class ------------------------------------------------------------------


def test_class_folders_layout(tmp_path):
    expected = make_class_folders(tmp_path)
    with pytest.warns(UserWarning, match=r"'\[Malignant\] early Pre-B' left out: it has no images"):
        ds = load_dataset(tmp_path)
    assert ds.format == "folders" and ds.name == tmp_path.name
    assert ds.labels == sorted(expected["counts"])
    assert ds.class_counts().to_dict() == expected["counts"]
    assert ds.skipped == expected["skipped"]
    assert ds.skipped_examples[files.NOT_AN_IMAGE] == ["[Malignant] Pre-B/broken.jpg"]
    assert not ds.items["key"].str.contains("loop|alias|__MACOSX|DS_Store").any()
    assert any("alias" in note for note in ds.notes)
    # Byte-identical copies (one in a nested folder) share a group; everything else is alone.
    items = ds.items.set_index("key")
    assert items.loc[expected["duplicates"], "group"].nunique() == 1 and ds.duplicate_sets == 1
    assert ds.items["group"].nunique() == len(ds) - (len(expected["duplicates"]) - 1)
    assert (ds.items["label"] == np.asarray(ds.labels)[ds.items["label_index"]]).all()


def test_class_folder_images_load_through_the_shared_preprocessing(tmp_path):
    make_class_folders(tmp_path)
    with pytest.warns(UserWarning):
        ds = load_dataset(tmp_path)
    keys = ds.items["key"].iloc[[0, 5, 9]].tolist()
    batch = ds.load_images(keys, (20, 30))
    assert batch.shape == (3, 20, 30, 3) and batch.dtype == np.uint8
    for image, key in zip(batch, keys):
        source = ds.image_source(key)
        assert isinstance(source, str) and Path(source).is_file()
        np.testing.assert_array_equal(image, load_image(source, (20, 30)))
    np.testing.assert_array_equal(ds.load_images([0, 5, 9], (20, 30)), batch)
    np.testing.assert_array_equal(ds.load_images(ds.items.iloc[[0, 5, 9]], (20, 30)), batch)
    with pytest.raises(EdgeclsError, match="1 keys not in the dataset"):
        ds.load_images(["Benign/nope.jpg"], (8, 8))


def test_summary_lists_classes_duplicates_and_skips(tmp_path):
    make_class_folders(tmp_path)
    with pytest.warns(UserWarning):
        ds = load_dataset(tmp_path)
    text = ds.summary()
    for label, n in ds.class_counts().items():
        assert any(label in line and str(n) in line for line in text.splitlines())
    assert f"skipped {sum(ds.skipped.values())} images" in text
    assert all(reason in text for reason in ds.skipped) and "duplicates: 1 sets" in text


def test_a_class_whose_images_are_all_unreadable_is_left_out(tmp_path):
    for i in range(3):
        write_jpeg(tmp_path / "a" / f"{i}.jpg", i)
        write_jpeg(tmp_path / "b" / f"{i}.jpg", 10 + i)
        (tmp_path / "c" / f"{i}.jpg").parent.mkdir(exist_ok=True)
        truncate(write_jpeg(tmp_path / "c" / f"{i}.jpg", 20 + i))
    with pytest.warns(UserWarning, match="'c' left out: all 3 of its images were skipped"):
        ds = load_dataset(tmp_path)
    assert ds.labels == ["a", "b"] and ds.skipped == {files.CORRUPT_IMAGE: 3}


def test_a_download_wrapper_folder_is_looked_through(tmp_path):
    make_class_folders(tmp_path / "Blood cell Cancer [ALL]")
    with pytest.warns(UserWarning):
        ds = load_dataset(tmp_path)
    assert ds.root == tmp_path / "Blood cell Cancer [ALL]" and len(ds.labels) == 3
    assert any("only folder" in note for note in ds.notes)


@pytest.mark.parametrize(
    "layout, message",
    [
        ({"a/1.jpg": 1, "a/2.jpg": 2}, "need at least 2 classes, found only 'a'"),
        ({"a/1.jpg": 1, "a/2.jpg": 2, "b/1.jpg": 3}, r"at least 2 usable images each; 'b': 1"),
        ({"1.jpg": 1, "2.jpg": 2}, "no class folders"),
        ({"train/a/1.jpg": 1, "test/a/1.jpg": 2}, "existing train/test split"),
        ({"a/1.txt": None, "b/1.txt": None}, "no usable images"),
    ],
)
@pytest.mark.filterwarnings("ignore:.*left out")
def test_folder_errors(tmp_path, layout, message):
    for name, seed in layout.items():
        if seed is None:
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_text("x")
        else:
            write_jpeg(tmp_path / name, seed)
    with pytest.raises(EdgeclsError, match=message) as excinfo:
        load_dataset(tmp_path)
    one_line_error(excinfo)


def test_path_errors(tmp_path):
    with pytest.raises(EdgeclsError, match="dataset not found"):
        load_dataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EdgeclsError, match="is empty"):
        load_dataset(tmp_path / "empty")
    with pytest.raises(EdgeclsError, match="unknown dataset format 'coco'"):
        load_dataset(tmp_path, fmt="coco")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(EdgeclsError, match="not a dataset"):
        load_dataset(tmp_path / "notes.txt")
    pd.DataFrame({"a": [1], "b": [2]}).to_csv(tmp_path / "other.csv", index=False)
    with pytest.raises(EdgeclsError, match="neither a HAM10000 metadata CSV"):
        load_dataset(tmp_path / "other.csv")
    with pytest.raises(EdgeclsError, match="is a file"):
        load_dataset(tmp_path / "other.csv", fmt="folders")


def test_image_checks_report_each_kind_of_damage(tmp_path):
    good = write_jpeg(tmp_path / "good.jpg", 1)
    Image.new("RGB", (9, 7), "red").save(tmp_path / "good.png")
    png = (tmp_path / "good.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(png[:-20])
    checks = files.check_image_files([good, tmp_path / "good.png", truncate(write_jpeg(tmp_path / "cut.jpg", 2)),
                                      tmp_path / "cut.png", tmp_path / "gone.jpg"])
    assert [c.problem for c in checks] == [None, None, files.CORRUPT_IMAGE, files.CORRUPT_IMAGE, files.MISSING_FILE]
    assert checks[0].digest == files.check_image_file(good).digest and checks[0].digest != checks[1].digest


# --- HMNIST --------------------------------------------------------------------------------


@pytest.mark.parametrize("name, shape", HMNIST_VARIANTS)
def test_hmnist_variants(tmp_path, name, shape):
    spec = make_hmnist(tmp_path / name, shape)
    ds = load_dataset(tmp_path / name)
    kept = [i for i in range(len(spec["labels"])) if i != spec["invalid"]]
    assert ds.format == "hmnist" and ds.name == name[:-4]
    assert ds.items["key"].tolist() == [f"row:{i}" for i in kept]
    assert ds.items["label"].tolist() == [HMNIST_NAMES[spec["labels"][i]] for i in kept]
    assert ds.labels == sorted(HMNIST_NAMES.values())
    assert ds.skipped == {"row with missing or out-of-range pixel values": 1}
    assert ds.pixels.dtype == np.uint8 and ds.pixels.shape == (len(kept), *shape)
    a, b = spec["duplicate"]
    groups = ds.items.set_index("key")["group"]
    assert groups[f"row:{a}"] == groups[f"row:{b}"] and ds.duplicate_sets == 1
    np.testing.assert_array_equal(ds.image_source("row:3"), spec["images"][3])
    batch = ds.load_images(["row:3", "row:12"], (16, 16))
    assert batch.shape == (2, 16, 16, 3) and batch.dtype == np.uint8
    np.testing.assert_array_equal(batch[1], prepare_image(spec["images"][12], (16, 16), 3))
    if shape[2] == 1:  # gray is repeated into three equal channels
        assert (batch[..., 0] == batch[..., 2]).all()


def test_hmnist_folder_picks_28x28_rgb_and_says_so(tmp_path):
    for name, shape in HMNIST_VARIANTS:
        make_hmnist(tmp_path / name, shape)
    ds = load_dataset(tmp_path)
    assert ds.source.name == "hmnist_28_28_RGB.csv" and ds.pixels.shape[1:] == (28, 28, 3)
    assert any("hmnist_8_8_L.csv" in note for note in ds.notes)


def test_hmnist_shape_from_columns_when_renamed(tmp_path):
    make_hmnist(tmp_path / "skin_pixels.csv", (8, 8, 3))
    ds = load_dataset(tmp_path / "skin_pixels.csv", fmt="hmnist")
    assert ds.pixels.shape[1:] == (8, 8, 3)
    assert set(ds.labels) <= {str(i) for i in range(7)}  # no known label names without the HMNIST name


def test_hmnist_errors(tmp_path):
    csv = tmp_path / "hmnist_8_8_L.csv"
    make_hmnist(csv, (8, 8, 3))
    with pytest.raises(EdgeclsError, match="192 pixel columns, but the name says 8x8x1"):
        load_dataset(csv)
    make_hmnist(csv, (8, 8, 1))
    pd.read_csv(csv).assign(label=9).to_csv(csv, index=False)
    with pytest.raises(EdgeclsError, match=r"unknown label values \[9\]"):
        load_dataset(csv)
    pd.read_csv(csv).drop(columns="label").to_csv(csv, index=False)
    with pytest.raises(EdgeclsError, match="no label column"):
        load_dataset(csv, fmt="hmnist")


# --- groups ---------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 8), st.integers(0, 8)), min_size=1, max_size=30))
def test_merged_groups_are_the_connected_components(pairs):
    groups = pd.Series([f"g{g}" for g, _ in pairs])
    digests = pd.Series([f"d{d}" for _, d in pairs])
    merged = merge_duplicate_groups(groups, digests)
    # Reference: naive fixed point — keep relabelling with the smallest name reachable.
    label = {f"g{g}": f"g{g}" for g, _ in pairs}
    changed = True
    while changed:
        changed = False
        for key in (groups, digests):
            smallest = pd.Series([label[g] for g in groups]).groupby(key.to_numpy()).transform("min")
            for g, s in zip(groups, smallest):
                if s < label[g]:
                    label[g], changed = s, True
    assert merged.tolist() == [label[g] for g in groups]


# --- the real datasets in ../shared/data -----------------------------------------------------


def _timed_load(name: str):
    start = time.perf_counter()
    ds = load_dataset(shared_dataset(name))
    print(f"\n{ds.summary()}\nloaded {name} in {time.perf_counter() - start:.1f} s")
    return ds


@pytest.fixture(scope="module")
def real_ham10000():
    return _timed_load("ham10000")


@pytest.fixture(scope="module")
def real_blood():
    return _timed_load("blood")


@pytest.mark.shared_data
def test_real_ham10000(real_ham10000):
    ds = real_ham10000
    table = pd.read_csv(ds.source)
    assert ds.format == "ham10000" and ds.labels == sorted(set(table["dx"]))
    assert set(ds.labels) <= set(files.HAM10000_DX)
    assert len(ds) + sum(ds.skipped.values()) == len(table)
    assert ds.items.groupby("lesion_id")["group"].nunique().max() == 1
    # Byte-identical pairs named by the dataset's README share a group when both are present.
    items = ds.items.set_index("image_id")
    for a, b in (("ISIC_0024366", "ISIC_0029861"), ("ISIC_0024777", "ISIC_0029938")):
        if a in items.index and b in items.index:
            assert items.loc[a, "digest"] == items.loc[b, "digest"]
            assert items.loc[a, "group"] == items.loc[b, "group"]


@pytest.mark.shared_data
def test_real_blood(real_blood):
    ds = real_blood
    folders = [p for p in ds.root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert ds.format == "folders" and ds.labels == sorted(p.name for p in folders)
    on_disk = sum(1 for p in ds.root.rglob("*") if p.is_file() and not p.name.startswith(".") and is_image_file(p))
    assert len(ds) + sum(ds.skipped.values()) == on_disk
    copies = ds.items[ds.items["digest"].duplicated(keep=False)]
    assert len(copies) > 0 and ds.duplicate_sets == copies["digest"].nunique()
    assert (copies.groupby("digest")["group"].nunique() == 1).all()
    assert set(copies["label"]) == {"[Malignant] Pro-B"}  # as the data's README says
    batch = ds.load_images(ds.items["key"].head(4), (94, 94))
    assert batch.shape == (4, 94, 94, 3)
