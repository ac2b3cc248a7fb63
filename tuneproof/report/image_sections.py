"""Report sections for image classification: what augmentation does to a few training images, and
the test images the model got most confidently wrong.

Both read the run folder only (``data/*.parquet`` hold each image as the model saw it, and
``predictions/test.parquet`` the test probabilities) and embed the pictures as PNG data URIs, so the
report stays one self-contained file.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
import pandas as pd

from tuneproof.report.markup import esc, join, note, para, tag
from tuneproof.report.run_data import RunData, mapping
from tuneproof.report.section import Section

# Epochs shown per training image in the augmentation grid, and test images among the errors.
GRID_EPOCHS = 5
WRONG_SHOWN = 12
THUMB = 72  # pixels a thumbnail is drawn at (nearest-neighbour, so small inputs stay sharp)


def _img(pixels: np.ndarray, caption: str) -> str:
    from PIL import Image

    img = Image.fromarray(pixels).resize((THUMB, THUMB), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    uri = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    return (
        f'<figure style="display:inline-block;margin:4px;text-align:center;font-size:11px">'
        f'<img src="{uri}" width="{THUMB}" height="{THUMB}" alt="{esc(caption)}">'
        f"<figcaption>{esc(caption)}</figcaption></figure>"
    )


def _frame(run: RunData, name: str) -> pd.DataFrame | None:
    path = run.path / name
    return pd.read_parquet(path) if path.is_file() else None


def augmentation_grid(run: RunData) -> str | None:
    from tuneproof.data.augment import augment, example_key
    from tuneproof.data.images import png_to_array
    from tuneproof.protocol.image_schema import AugmentSpec

    images = mapping(run.data_report.get("images"))
    spec = AugmentSpec.model_validate(images.get("augment") or {})
    train = _frame(run, "data/train.parquet")
    if train is None or not spec.active or spec.grid_examples == 0:
        return None
    seed = int(run.protocol.get("seed", 13))
    rows = []
    for rid, png, label in list(zip(train["row_id"], train["image"], train["label"], strict=True))[
        : spec.grid_examples
    ]:
        px = png_to_array(png)
        cells = [_img(px, f"{label} (original)")]
        for epoch in range(GRID_EPOCHS):
            # The very function training applied: the same (seed, epoch, example) gives these pixels.
            out = augment(px[None], [example_key(str(rid))], spec, seed, epoch)[0]
            shown = (out.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            cells.append(_img(shown, f"epoch {epoch}"))
        rows.append(tag("div", join(cells)))
    return join(
        [
            para(
                "A few training images and what the model saw of each in its first epochs, drawn with "
                "the run's own seed: check that no augmentation changes what an image shows (a flip "
                "that turns a '6' into a '9', a crop that cuts the object away)."
            ),
            *rows,
        ]
    )


def confident_errors(run: RunData) -> str | None:
    from tuneproof.data.images import png_to_array

    preds = _frame(run, "predictions/test.parquet")
    test = _frame(run, "data/test.parquet")
    if preds is None or test is None:
        return None
    prob_cols = [c for c in preds.columns if c.startswith("prob_")]
    joined = preds.merge(test[["row_id", "image", "text"]], on="row_id", how="inner")
    wrong = joined[joined["pred"] != joined["label"]].copy()
    if wrong.empty:
        return para("The model got every test image right.")
    wrong["confidence"] = wrong[prob_cols].max(axis=1)
    wrong = wrong.sort_values("confidence", ascending=False).head(WRONG_SHOWN)
    cells = [
        _img(png_to_array(r.image), f"true {r.label} / predicted {r.pred} ({r.confidence:.0%})")
        for r in wrong.itertuples()
    ]
    files: list[Any] = [str(t) for t in wrong["text"]]
    return join(
        [
            para(
                f"The {len(wrong)} test images the model got wrong with the highest confidence, of "
                f"{int((joined['pred'] != joined['label']).sum())} errors in {len(joined)} test images. "
                "Confident errors are often labelling mistakes or images no label fits."
            ),
            tag("div", join(cells)),
            note("Files, in the order shown: " + "; ".join(files)),
        ]
    )


SECTIONS: list[tuple[Section, str]] = [
    (Section("confident_errors", "Most confidently wrong test images", confident_errors), "per_class"),
    (Section("augmentation_grid", "Data: augmentation of training images", augmentation_grid), "splits"),
]
