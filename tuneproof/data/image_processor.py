"""The image counterpart of a tokenizer: the model's input size and normalisation.

Read from the model's own image processor config (``preprocessor_config.json``: ``size``,
``image_mean``, ``image_std``) or its ``config.json`` (``image_size``), and saved beside the
packaged model in the same Hugging Face format, so ``predict`` and ``serve`` prepare inputs exactly
as training did and the folder also loads with transformers' ``AutoImageProcessor``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_SIZE = 224
FILE = "preprocessor_config.json"


@dataclass(frozen=True)
class ImagePreprocessor:
    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    pad_token_id: None = None  # the stages ask a tokenizer for its pad id; images have no padding

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """float [B, 3, H, W] in [0, 1] -> the model's input."""
        mean = torch.tensor(self.mean, dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype).view(1, 3, 1, 1)
        return (x - mean) / std

    def pixel_values(self, pixels: np.ndarray) -> torch.Tensor:
        """uint8 [B, H, W, 3] -> normalised float [B, 3, H, W]."""
        x = torch.from_numpy(np.array(pixels, dtype=np.uint8)).permute(0, 3, 1, 2).float() / 255.0
        return self.normalize(x)

    def save_pretrained(self, folder: Path | str) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        config = {
            "image_processor_type": "ViTImageProcessor",
            "do_resize": True,
            "size": {"height": self.size, "width": self.size},
            "resample": 3,  # bicubic, as tuneproof resizes
            "do_rescale": True,
            "rescale_factor": 1 / 255,
            "do_normalize": True,
            "image_mean": list(self.mean),
            "image_std": list(self.std),
        }
        (Path(folder) / FILE).write_text(json.dumps(config, indent=2) + "\n")

    @classmethod
    def from_folder(
        cls,
        folder: Path,
        size: int | None = None,
        mean: tuple[float, float, float] | None = None,
        std: tuple[float, float, float] | None = None,
    ) -> ImagePreprocessor:
        """The folder's image processor settings; ``size`` (the protocol's) wins over the folder's."""
        proc = _json(folder / FILE)
        cfg = _json(folder / "config.json")
        found = proc.get("size")
        folder_size = None
        if isinstance(found, dict):
            folder_size = found.get("height") or found.get("shortest_edge")
        elif isinstance(found, int):
            folder_size = found
        folder_size = folder_size or cfg.get("image_size")
        return cls(
            int(size or folder_size or DEFAULT_SIZE),
            _triple(proc.get("image_mean")) or mean or IMAGENET_MEAN,
            _triple(proc.get("image_std")) or std or IMAGENET_STD,
        )


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _triple(v: Any) -> tuple[float, float, float] | None:
    if isinstance(v, list) and len(v) == 3:
        return (float(v[0]), float(v[1]), float(v[2]))
    return None
