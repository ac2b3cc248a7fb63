"""Read image data in one pass and check every file: ImageFolder layouts, tables of paths or bytes,
a saved `datasets` folder with an image feature, and idx file pairs (MNIST, Fashion-MNIST).

Each image is decoded here exactly once: its header is checked before any pixel is decoded (a
pixel-count limit stops decompression bombs), then it is decoded fully (a truncated file fails
here, not in the middle of training), turned upright by its EXIF orientation, converted to RGB,
hashed (the exact hash is over the decoded pixels, so re-encoding a file does not hide it) and
resized to the model's input. Every problem is a :class:`Problem` naming the file.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from tuneproof.data.readers import detect_format, read_file
from tuneproof.errors import Problem
from tuneproof.protocol.image_schema import ImageSpec

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
# Resampling used to bring every image to the model's square input (what ViTImageProcessor does).
RESAMPLE = Image.Resampling.BICUBIC


class BadImage(Exception):
    """One image that cannot be used; the message says why (the caller adds where)."""


Opener = Callable[[], Image.Image]


@dataclass
class ImageCandidate:
    row_id: str
    where: str  # what a person reads: the file, or table:line / idx file:index
    split: str | None
    label: Any
    open: Opener
    # Metadata columns of a table source (slices, data.metadata_columns), by name.
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class DecodedImage:
    png: bytes  # the RGB image at the model's size, losslessly encoded
    pixel_sha256: str  # over the decoded, upright RGB pixels at their original size
    near_hash: np.ndarray  # the perceptual hash's bits, packed (uint8)
    width: int
    height: int
    mode: str


def _check_header(img: Image.Image, spec: ImageSpec) -> None:
    w, h = img.size
    if w * h > spec.max_pixels:
        raise BadImage(
            f"{w}x{h} = {w * h} pixels, over images.max_pixels {spec.max_pixels} (a decompression bomb?)"
        )
    if img.mode not in spec.modes:
        raise BadImage(f"unsupported mode {img.mode!r} (images.modes allows {', '.join(spec.modes)})")
    if min(w, h) < spec.min_side:
        raise BadImage(f"{w}x{h} is too small: the shorter side is under images.min_side {spec.min_side}")


# Brightness and contrast are read from a small greyscale thumbnail, the same way for the monitoring
# reference (the test split at the model's size) and for a served image (as uploaded): the mean and
# the spread of luminance hardly depend on the resolution they are read at.
LUMINANCE_SIDE = 32


def luminance_stats(img: Image.Image, size: int | None = None) -> tuple[float, float]:
    """(brightness, contrast): the mean and standard deviation of luminance, in [0, 1]. Two numbers
    per image, which show a camera or lighting change and nothing of what the image shows.

    ``size``: first bring the image to the model's square input as ``decode`` does (a served image,
    so that it is read like the test split's images, which are stored at that size)."""
    upright = ImageOps.exif_transpose(img).convert("RGB")
    if size is not None and upright.size != (size, size):
        upright = upright.resize((size, size), RESAMPLE)
    grey = upright.convert("L").resize((LUMINANCE_SIDE, LUMINANCE_SIDE), RESAMPLE)
    a = np.asarray(grey, dtype=np.float64) / 255.0
    return float(a.mean()), float(a.std())


def near_hash_bits(img: Image.Image, spec: ImageSpec) -> np.ndarray:
    import imagehash

    fn = getattr(imagehash, spec.near_duplicates.hash)
    bits = np.asarray(fn(img, hash_size=spec.near_duplicates.hash_size).hash, dtype=bool).ravel()
    return np.packbits(bits)


def decode(opener: Opener, spec: ImageSpec, size: int) -> DecodedImage:
    """Open, check, decode, orient, convert and resize one image; BadImage says what is wrong."""
    with warnings.catch_warnings():
        # PIL only warns between its own limit and twice it; any bomb warning is a refusal here.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = opener()
            _check_header(img, spec)  # before decoding: the header alone gives size and mode
            img.load()
        except BadImage:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise BadImage(f"refused as a decompression bomb: {exc}") from None
        except UnidentifiedImageError:
            raise BadImage("not a readable image (unknown or corrupt format)") from None
        except (OSError, SyntaxError, ValueError) as exc:  # PIL's truncated and corrupt files
            raise BadImage(f"unreadable or truncated: {exc}") from None
    mode = img.mode
    upright = ImageOps.exif_transpose(img)
    rgb = upright.convert("RGB")
    h = hashlib.sha256(f"{rgb.width}x{rgb.height}:".encode())
    h.update(rgb.tobytes())
    resized = rgb.resize((size, size), RESAMPLE) if rgb.size != (size, size) else rgb
    buf = io.BytesIO()
    resized.save(buf, format="PNG")
    return DecodedImage(buf.getvalue(), h.hexdigest(), near_hash_bits(rgb, spec), rgb.width, rgb.height, mode)


def png_to_array(png: bytes) -> np.ndarray:
    """The stored RGB image as uint8 [H, W, 3]."""
    with Image.open(io.BytesIO(png)) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)


# -- sources ---------------------------------------------------------------------------------------
def _file_opener(path: Path) -> Opener:
    return lambda: Image.open(path)


def _bytes_opener(data: bytes) -> Opener:
    return lambda: Image.open(io.BytesIO(data))


def _inside(path: Path, root: Path) -> bool:
    return path.resolve().is_relative_to(root.resolve())


def _folder_candidates(
    root: Path, split: str | None, problems: list[Problem], ignored: list[str]
) -> list[ImageCandidate]:
    """ImageFolder: ``root/<class>/<image>``; the class is the sub-folder's name."""
    out: list[ImageCandidate] = []
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        problems.append(Problem(str(root), "an image folder needs one sub-folder per class; found none"))
    prefix = f"{split}/" if split else ""
    for cls_dir in classes:
        for path in sorted(cls_dir.rglob("*")):
            rel = path.relative_to(root).as_posix()
            if path.name.startswith(".") or path.is_dir():
                if path.is_file():
                    ignored.append(str(path))
                continue
            if not _inside(path, root):
                out.append(
                    _bad(
                        f"{prefix}{rel}", str(path), split, cls_dir.name, "a link that leaves the data folder"
                    )
                )
                continue
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                out.append(
                    _bad(f"{prefix}{rel}", str(path), split, cls_dir.name, "not an image file (suffix)")
                )
                continue
            out.append(ImageCandidate(f"{prefix}{rel}", str(path), split, cls_dir.name, _file_opener(path)))
    return out


def _bad(
    row_id: str, where: str, split: str | None, label: Any, why: str, meta: dict[str, Any] | None = None
) -> ImageCandidate:
    def fail() -> Image.Image:
        raise BadImage(why)

    return ImageCandidate(row_id, where, split, label, fail, meta or {})


def _value_opener(value: Any, base: Path) -> Opener | str:
    """An opener for a table cell (relative path, bytes, a `datasets` image dict, a PIL image),
    or the reason there is none."""
    if isinstance(value, Image.Image):
        return lambda: value
    if isinstance(value, dict):
        if value.get("bytes"):
            return _bytes_opener(bytes(value["bytes"]))
        value = value.get("path")
    if isinstance(value, bytes | bytearray | memoryview):
        return _bytes_opener(bytes(value))
    if not isinstance(value, str) or not value.strip():
        return "no image: the cell is empty or not a path or bytes"
    rel = Path(value)
    if rel.is_absolute():
        return f"absolute path {value!r}: image paths are relative to the table's folder"
    path = base / rel
    if not _inside(path, base):
        return f"path {value!r} leaves the data folder {base}"
    if not path.is_file():
        return f"file {path} does not exist"
    return _file_opener(path)


def _table_candidates(
    path: Path,
    split: str | None,
    column: str,
    label_column: str | None,
    encoding: str,
    problems: list[Problem],
    extra: Sequence[str] = (),
) -> list[ImageCandidate]:
    result = read_file(path, "auto", encoding)
    problems += result.problems
    if not result.rows:
        if not result.problems:
            problems.append(Problem(str(path), "no rows"))
        return []
    missing = [c for c in (column, label_column, *extra) if c is not None and c not in result.columns]
    if missing:
        problems += [
            Problem(str(path), f"column {c!r} not found; columns are: {', '.join(result.columns)}")
            for c in missing
        ]
        return []
    base = path.parent if path.is_file() else path
    prefix = f"{split}/" if split else ""
    out = []
    for raw in result.rows:
        rid, where = f"{prefix}{path.name}:{raw['_line']}", f"{path}:{raw['_line']}"
        label = raw.get(label_column) if label_column else None
        opener = _value_opener(raw.get(column), base)
        meta = {c: raw.get(c) for c in extra}
        if isinstance(opener, str):
            out.append(_bad(rid, where, split, label, opener, meta))
        else:
            out.append(ImageCandidate(rid, where, split, label, opener, meta))
    return out


@lru_cache(maxsize=4)
def read_idx(path: Path, magic: int) -> np.ndarray:
    """An idx file (gzip or not) as an array: images [n, rows, cols] (magic 2051) or labels [n] (2049).

    Written by hand because the format is 16 (images) or 8 (labels) big-endian header bytes before
    raw uint8 values; no installable library reads it without torchvision.
    """
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise ValueError(f"{path}: idx magic number {found}, expected {magic}")
    n = int.from_bytes(raw[4:8], "big")
    if magic == 2051:
        rows, cols = int.from_bytes(raw[8:12], "big"), int.from_bytes(raw[12:16], "big")
        data = np.frombuffer(raw, dtype=np.uint8, offset=16)
        if data.size != n * rows * cols:
            raise ValueError(f"{path}: {data.size} pixel bytes, the header promises {n}x{rows}x{cols}")
        return data.reshape(n, rows, cols)
    data = np.frombuffer(raw, dtype=np.uint8, offset=8)
    if data.size != n:
        raise ValueError(f"{path}: {data.size} labels, the header promises {n}")
    return data


def idx_labels_path(images: Path) -> Path:
    return images.with_name(images.name.replace("images-idx3", "labels-idx1"))


def _idx_candidates(
    path: Path, split: str | None, spec: ImageSpec, problems: list[Problem]
) -> list[ImageCandidate]:
    labels_path = idx_labels_path(path)
    if not labels_path.is_file():
        problems.append(Problem(str(path), f"the idx labels file {labels_path.name} is not beside it"))
        return []
    try:
        images, labels = read_idx(path, 2051), read_idx(labels_path, 2049)
    except (OSError, ValueError, EOFError) as exc:
        problems.append(Problem(str(path), f"not a readable idx pair: {exc}"))
        return []
    if len(images) != len(labels):
        problems.append(
            Problem(str(path), f"{len(images)} images but {len(labels)} labels in {labels_path.name}")
        )
        return []
    names = spec.class_names
    n = min(len(images), spec.limit) if spec.limit else len(images)
    prefix = f"{split}/" if split else ""
    out = []
    for i in range(n):
        lab = int(labels[i])
        label: Any = names[lab] if names is not None and lab < len(names) else str(lab)
        if names is not None and lab >= len(names):
            problems.append(Problem(f"{path}:{i + 1}", f"label id {lab} has no name in images.class_names"))
            continue
        pixels = images[i]
        out.append(
            ImageCandidate(
                f"{prefix}{path.name}:{i + 1}", f"{path}:{i + 1}", split, label, _array_opener(pixels)
            )
        )
    return out


def _array_opener(pixels: np.ndarray) -> Opener:
    return lambda: Image.fromarray(pixels, mode="L")


def is_idx(path: Path) -> bool:
    return "idx3-ubyte" in path.name


def candidates(
    path: Path,
    split: str | None,
    spec: ImageSpec,
    label_column: str | None,
    encoding: str,
    extra: Sequence[str] = (),
) -> tuple[list[ImageCandidate], list[Problem], list[str]]:
    """Every image a source holds (not yet decoded), the source's own problems, and ignored files.

    ``extra``: metadata columns (slices, data.metadata_columns) each row must carry; only a table
    or a saved `datasets` folder has columns, so a folder or idx source with them is a problem."""
    problems: list[Problem] = []
    ignored: list[str] = []
    is_table = not is_idx(path) and (
        (path.is_dir() and ((path / "dataset_info.json").is_file() or (path / "state.json").is_file()))
        or (path.is_file() and detect_format(path) in ("csv", "tsv", "jsonl", "parquet"))
    )
    if extra and not is_table:
        problems.append(
            Problem(
                str(path),
                f"metadata column(s) {', '.join(map(repr, extra))} need a table source "
                "(CSV/JSONL/Parquet or a saved `datasets` folder): a class-per-folder directory or an "
                "idx file has no columns",
            )
        )
        return [], problems, ignored
    if is_idx(path):
        out = _idx_candidates(path, split, spec, problems)
    elif path.is_dir() and not (path / "dataset_info.json").is_file() and not (path / "state.json").is_file():
        out = _folder_candidates(path, split, problems, ignored)
    elif path.is_dir() or detect_format(path) in ("csv", "tsv", "jsonl", "parquet"):
        out = _table_candidates(path, split, spec.column, label_column, encoding, problems, extra)
    else:
        problems.append(
            Problem(
                str(path),
                "not an image source: give a class-per-folder directory, a CSV/JSONL/Parquet "
                "table, a saved `datasets` folder or an idx images file",
            )
        )
        out = []
    if spec.limit and not is_idx(path):
        out = out[: spec.limit]
    return out, problems, ignored


def iter_decoded(
    items: list[ImageCandidate], spec: ImageSpec, size: int
) -> Iterator[tuple[ImageCandidate, DecodedImage | None, str | None]]:
    for c in items:
        try:
            yield c, decode(c.open, spec, size), None
        except BadImage as exc:
            yield c, None, str(exc)


__all__ = [
    "BadImage",
    "DecodedImage",
    "ImageCandidate",
    "candidates",
    "decode",
    "iter_decoded",
    "png_to_array",
]
