"""Tiny image models and image sets built in code, for the image task's tests (seconds each)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = {"red": (1.0, 0.35, 0.35), "green": (0.35, 1.0, 0.35), "blue": (0.35, 0.35, 1.0)}


def write_tiny_vit(path: Path, image_size: int = 16, seed: int = 0) -> Path:
    """A bare ViT encoder (no head), as a pretrained checkpoint is shipped; the task adds the head."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification

    from tuneproof.data.image_processor import ImagePreprocessor

    path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    cfg = ViTConfig(
        image_size=image_size,
        patch_size=4,
        num_channels=3,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
    )
    ViTForImageClassification(cfg).vit.save_pretrained(path)
    ImagePreprocessor(image_size, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)).save_pretrained(path)
    return path


def tinted_noise(rng: np.random.Generator, colour: str, size: int = 20) -> Image.Image:
    """Random grey noise tinted by the class colour: easy to learn, and no two alike to a perceptual hash."""
    noise = rng.random((size, size, 1))
    tint = np.array(COLOURS[colour]).reshape(1, 1, 3)
    return Image.fromarray((noise * tint * 255).astype(np.uint8), mode="RGB")


def write_image_folder(root: Path, per_class: int, seed: int = 0, size: int = 20) -> Path:
    """``root/<colour>/<i>.png``: the ImageFolder layout."""
    rng = np.random.default_rng(seed)
    for colour in COLOURS:
        (root / colour).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            tinted_noise(rng, colour, size).save(root / colour / f"{colour}-{seed}-{i}.png")
    return root


def near_copy(src: Path, dst: Path) -> None:
    """The same image one grey level brighter: different pixels (not an exact duplicate), same picture."""
    with Image.open(src) as img:
        a = np.asarray(img.convert("RGB")).astype(np.int16)
    Image.fromarray(np.clip(a + 1, 0, 255).astype(np.uint8), mode="RGB").save(dst)
