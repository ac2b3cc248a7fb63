"""The image data stage: every bad file named and counted, EXIF orientation, exact and near
duplicates within the data and across splits, and the readers (folders, tables, idx pairs)."""

from __future__ import annotations

import gzip
import io
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from image_helpers import near_copy, tinted_noise, write_image_folder
from PIL import Image

from tuneproof.data.images import decode, read_idx
from tuneproof.errors import DataValidationError, ProtocolError
from tuneproof.protocol import parse_protocol
from tuneproof.protocol.image_schema import ImageSpec
from tuneproof.tasks.image_classification import ImageClassificationTask


def _task(tmp: Path, data: str, extra: str = "") -> ImageClassificationTask:
    text = (
        "name: t\ntask: image_classification\nseed: 3\nmodel: {source: m}\n"
        f"data: {data}\nimages: {{size: 16{extra}}}\n"
        "split: {train: 0.6, validation: 0.2, test: 0.2, enforce_minimums: false}\n"
    )
    return ImageClassificationTask(parse_protocol(text))


def _bad_files(root: Path, outside: Path) -> dict[str, str]:
    """Plant one file of each kind of problem in ``root/red``; returns file name -> expected reason."""
    red = root / "red"
    good = red / "red-0-0.png"
    data = good.read_bytes()
    (red / "truncated.png").write_bytes(data[: len(data) // 2])
    (red / "garbage.png").write_bytes(b"this is not an image at all")
    Image.new("RGB", (4, 4)).save(red / "tiny.png")
    Image.new("RGB", (120, 120)).save(red / "huge.png")  # over the pixel limit set below
    Image.fromarray(np.zeros((20, 20), dtype=np.float32), mode="F").save(red / "float.tiff")
    Image.new("RGB", (20, 20)).save(outside)
    os.symlink(outside, red / "escape.png")
    (red / "notes.txt").write_text("not an image")
    return {
        "truncated.png": "truncated",
        "garbage.png": "not a readable image",
        "tiny.png": "too small",
        "huge.png": "decompression bomb",
        "float.tiff": "unsupported mode 'F'",
        "escape.png": "leaves the data folder",
        "notes.txt": "not an image file",
    }


def test_every_bad_file_is_named_in_one_pass(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "data", 10)
    expected = _bad_files(root, tmp_path / "outside.png")
    task = _task(tmp_path, f"{{files: [{root}]}}", ", max_pixels: 10000")
    with pytest.raises(DataValidationError) as info:
        task.prepare_data(tmp_path)
    messages = [str(p) for p in info.value.problems]
    for name, reason in expected.items():
        assert any(name in m and reason in m for m in messages), (name, messages)
    assert any("images.bad_files" in m for m in messages)


def test_dropped_bad_files_are_counted_not_silent(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "data", 30)
    expected = _bad_files(root, tmp_path / "outside.png")
    task = _task(tmp_path, f"{{files: [{root}]}}", ", max_pixels: 10000, bad_files: drop")
    prepared = task.prepare_data(tmp_path)
    stage = next(s for s in prepared.report["stages"] if s["stage"] == "bad_images")
    assert stage["removed"] == len(expected) and stage["rows"] == 90
    listed = {Path(b["text"]).name for b in prepared.report["images"]["bad_file_list"]}
    assert listed == set(expected)
    assert sum(len(p) for p in prepared.splits.values()) == 90


def test_too_many_bad_files_stop_the_run_under_the_removal_limit(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "data", 3)
    _bad_files(root, tmp_path / "outside.png")  # 7 bad of 16
    task = _task(tmp_path, f"{{files: [{root}]}}", ", max_pixels: 10000, bad_files: drop")
    with pytest.raises(DataValidationError) as info:
        task.prepare_data(tmp_path)
    assert any("stage 'bad_images' would remove 7 of 16" in str(p) for p in info.value.problems)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    wide = Image.new("RGB", (40, 20), (200, 10, 10))
    wide.paste((10, 10, 200), (0, 0, 10, 20))  # a blue band on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    buf = io.BytesIO()
    wide.save(buf, format="PNG", exif=exif)
    img = decode(lambda: Image.open(io.BytesIO(buf.getvalue())), ImageSpec(), 16)
    assert (img.width, img.height) == (20, 40)
    upright = np.asarray(Image.open(io.BytesIO(img.png)))
    # Rotated clockwise, the left band is now at the top.
    assert upright[0, 8, 2] > 150 and upright[-1, 8, 0] > 150


def test_exact_and_near_duplicates_within_the_data_are_removed(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "data", 20)
    src = root / "red" / "red-0-0.png"
    with Image.open(src) as im:
        im.save(root / "red" / "same-pixels.bmp")  # another format, the same decoded pixels
    near_copy(root / "red" / "red-0-1.png", root / "red" / "near.png")
    prepared = _task(tmp_path, f"{{files: [{root}]}}").prepare_data(tmp_path)
    stages = {s["stage"]: s for s in prepared.report["stages"]}
    assert stages["exact_duplicates"]["removed"] == 1
    assert stages["near_duplicates"]["removed"] == 1
    exact = stages["exact_duplicates"]["examples"][0]
    near = stages["near_duplicates"]["examples"][0]
    assert {Path(exact["text"]).name, Path(exact["kept_text"]).name} == {"red-0-0.png", "same-pixels.bmp"}
    assert {Path(near["text"]).name, Path(near["kept_text"]).name} == {"red-0-1.png", "near.png"}
    assert near["distance"] <= 2
    assert sum(len(p) for p in prepared.splits.values()) == 60


def test_near_duplicates_respect_the_stated_distance(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "data", 20)
    near_copy(root / "red" / "red-0-1.png", root / "red" / "near.png")
    off = _task(tmp_path, f"{{files: [{root}]}}", ", near_duplicates: {enabled: false}").prepare_data(
        tmp_path
    )
    stages = {s["stage"]: s for s in off.report["stages"]}
    assert "near_duplicates" not in stages
    assert sum(len(p) for p in off.splits.values()) == 61


def _given_splits(tmp: Path, plant: int) -> tuple[Path, Path, Path]:
    train = write_image_folder(tmp / "train", 20, seed=1)
    val = write_image_folder(tmp / "val", 6, seed=2)
    test = write_image_folder(tmp / "test", 10, seed=3)
    for i in range(plant):
        near_copy(train / "blue" / f"blue-1-{i}.png", test / "blue" / f"planted-{i}.png")
    return train, val, test


def test_near_duplicates_planted_across_splits_are_found_and_removed(tmp_path: Path) -> None:
    train, val, test = _given_splits(tmp_path, 3)
    data = f"{{splits: {{train: [{train}], validation: [{val}], test: [{test}]}}}}"
    prepared = _task(tmp_path, data).prepare_data(tmp_path)
    leak = prepared.report["leakage"]
    assert (leak["exact"], leak["near"], leak["removed"]) == (0, 3, {"test": 3})
    assert {str(e["b"]).split("/")[-1] for e in leak["examples"]} == {f"planted-{i}.png" for i in range(3)}
    assert len(prepared.splits["test"]) == 30
    assert not any("planted" in Path(t).name for t in prepared.splits["test"]["text"])


def test_leakage_fail_stops_the_run_naming_each_leak(tmp_path: Path) -> None:
    train, val, test = _given_splits(tmp_path, 2)
    text = (
        "name: t\ntask: image_classification\nmodel: {source: m}\n"
        f"data: {{splits: {{train: [{train}], validation: [{val}], test: [{test}]}}}}\n"
        "images: {size: 16}\nleakage: {action: fail}\nsplit: {enforce_minimums: false}\n"
    )
    with pytest.raises(DataValidationError) as info:
        ImageClassificationTask(parse_protocol(text)).prepare_data(tmp_path)
    assert sum("planted" in str(p) and "leak across splits" in str(p) for p in info.value.problems) == 2


def test_a_table_of_paths_and_a_parquet_of_bytes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    (tmp_path / "img").mkdir()
    rows, blobs = [], []
    for i in range(30):
        colour = ["red", "blue"][i % 2]
        img = tinted_noise(rng, colour)
        img.save(tmp_path / "img" / f"{i}.png")
        rows.append({"image": f"img/{i}.png", "label": colour})
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        blobs.append({"image": {"bytes": buf.getvalue(), "path": None}, "label": colour})
    rows.append({"image": "../outside.png", "label": "red"})
    pd.DataFrame(rows).to_csv(tmp_path / "table.csv", index=False)
    with pytest.raises(DataValidationError) as info:
        _task(tmp_path, "{files: [table.csv]}").prepare_data(tmp_path)
    assert [str(p) for p in info.value.problems if "table.csv:32" in str(p)] != []
    assert any("leaves the data folder" in str(p) for p in info.value.problems)
    pd.DataFrame(blobs).to_parquet(tmp_path / "table.parquet")
    prepared = _task(tmp_path, "{files: [table.parquet]}").prepare_data(tmp_path)
    assert sum(len(p) for p in prepared.splits.values()) == 30


def _write_idx(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    n, rows, cols = images.shape
    head = (
        (2051).to_bytes(4, "big") + n.to_bytes(4, "big") + rows.to_bytes(4, "big") + cols.to_bytes(4, "big")
    )
    path.write_bytes(gzip.compress(head + images.astype(np.uint8).tobytes()))
    lab_path = path.with_name(path.name.replace("images-idx3", "labels-idx1"))
    lab_path.write_bytes(
        gzip.compress((2049).to_bytes(4, "big") + n.to_bytes(4, "big") + labels.astype(np.uint8).tobytes())
    )


def test_idx_pairs_are_read_with_their_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    labels = np.arange(40) % 2
    images = (rng.random((40, 12, 12)) * 255 * (0.5 + labels[:, None, None] / 2)).astype(np.uint8)
    path = tmp_path / "x-images-idx3-ubyte.gz"
    _write_idx(path, images, labels)
    assert np.array_equal(read_idx(path, 2051), images)
    with pytest.raises(ValueError, match="magic"):
        read_idx(path, 2049)
    task = _task(tmp_path, f"{{files: [{path}]}}", ", class_names: [dark, light], limit: 30")
    prepared = task.prepare_data(tmp_path)
    frames = pd.concat(prepared.splits.values())
    assert len(frames) == 30 and set(frames["label"]) == {"dark", "light"}
    first = frames[frames["row_id"] == "x-images-idx3-ubyte.gz:1"].iloc[0]
    assert first["label"] == "dark"


def _sited_table(tmp: Path, n: int = 60) -> Path:
    """A table of image paths, labels and a metadata column (the scanner site), as a slice source."""
    rng = np.random.default_rng(1)
    (tmp / "img").mkdir(parents=True)
    rows = []
    for i in range(n):
        colour = ["red", "blue"][i % 2]
        tinted_noise(rng, colour).save(tmp / "img" / f"{i}.png")
        rows.append({"image": f"img/{i}.png", "label": colour, "site": ["north", "south", None][i % 3]})
    # JSONL, so a missing site is null (a CSV reads it as "", as it does for text tasks).
    pd.DataFrame(rows).to_json(tmp / "table.jsonl", orient="records", lines=True)
    return tmp / "table.jsonl"


def test_slices_by_a_metadata_column_of_an_image_table(tmp_path: Path) -> None:
    _sited_table(tmp_path)
    task = ImageClassificationTask(
        parse_protocol(
            "name: t\ntask: image_classification\nseed: 3\nmodel: {source: m}\n"
            "data: {files: [table.jsonl]}\nimages: {size: 16}\n"
            "split: {train: 0.5, validation: 0.1, test: 0.4, enforce_minimums: false}\n"
            "evaluate: {slices: [{by: column, column: site}], slice_min_rows: 5, baselines: [majority]}\n"
        )
    )
    prepared = task.prepare_data(tmp_path)
    task.set_labels(prepared)
    test = prepared.splits["test"]
    # Each image's site is the one its line gave it (line k+1 holds image k).
    for rid, site in zip(test["row_id"], test["site"], strict=True):
        k = int(rid.split(":")[1]) - 1
        expected = ["north", "south", None][k % 3]
        assert site == expected or (expected is None and pd.isna(site))
    # Right on every "north" image, wrong on every other: the slices must say exactly that.
    y = np.array([task.labels.index(x) for x in test["label"]])
    north = (test["site"] == "north").to_numpy()
    pred = np.where(north, y, 1 - y)
    probs = np.eye(2)[pred] * 0.8 + 0.1
    slices = {s["name"]: s for s in task.evaluate(test, probs, {}, None)["slices"]}
    assert set(slices) == {"site = north", "site = south", "site = (missing)"}
    assert slices["site = north"]["metrics"]["accuracy"] == 1.0
    assert slices["site = south"]["metrics"]["accuracy"] == 0.0
    assert sum(s["n"] for s in slices.values()) == len(test)


def test_image_slices_need_a_table_and_a_column_not_length(tmp_path: Path) -> None:
    with pytest.raises(ProtocolError, match="by: length"):
        ImageClassificationTask(
            parse_protocol(
                "name: t\ntask: image_classification\nmodel: {source: m}\ndata: {files: [x.csv]}\n"
                "evaluate: {slices: [{by: length, edges: [3]}]}\n"
            )
        )
    write_image_folder(tmp_path / "folder", per_class=10)
    task = _task(tmp_path, "{files: [folder], metadata_columns: [site]}")
    with pytest.raises(DataValidationError, match="need a table source"):
        task.prepare_data(tmp_path)
    _sited_table(tmp_path / "t")
    task = _task(tmp_path / "t", "{files: [table.jsonl], metadata_columns: [scanner]}")
    with pytest.raises(DataValidationError, match="column 'scanner' not found"):
        task.prepare_data(tmp_path / "t")
