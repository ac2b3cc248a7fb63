"""The protocol's `images:` section: how image files are read, checked, de-duplicated and augmented.

Only the image classification task accepts it (``TaskSpec.options``). Every model forbids unknown
keys, like the rest of the schema.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_P = Annotated[float, Field(ge=0.0, le=1.0)]


class RotationSpec(_Strict):
    degrees: Annotated[float, Field(gt=0.0, le=180.0)] = Field(
        15.0, description="angle drawn uniformly in [-degrees, degrees]"
    )
    p: _P = 0.5


class ScaleCropSpec(_Strict):
    """A random crop covering ``scale`` of the image's area, resized back to the model's size."""

    scale: tuple[Annotated[float, Field(gt=0.0, le=1.0)], Annotated[float, Field(gt=0.0, le=1.0)]] = (
        0.8,
        1.0,
    )
    p: _P = 0.5

    @model_validator(mode="after")
    def _ordered(self) -> ScaleCropSpec:
        if self.scale[0] > self.scale[1]:
            raise ValueError("scale must be [low, high] with low <= high")
        return self


class ColorJitterSpec(_Strict):
    """Factors drawn uniformly: brightness +-b (additive), contrast and saturation 1+-c, hue +-h turns."""

    brightness: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    contrast: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    saturation: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    hue: Annotated[float, Field(ge=0.0, le=0.5)] = 0.0
    p: _P = 0.5


class AugmentSpec(_Strict):
    """Augmentation of the training split only, seeded by (protocol seed, epoch, example)."""

    rotation: RotationSpec | None = None
    hflip: _P = Field(0.0, description="probability of a horizontal flip")
    vflip: _P = Field(0.0, description="probability of a vertical flip")
    scale_crop: ScaleCropSpec | None = None
    color_jitter: ColorJitterSpec | None = None
    grid_examples: Annotated[int, Field(ge=0, le=32)] = Field(
        6, description="training images shown in the report's augmentation grid"
    )

    @property
    def active(self) -> bool:
        return bool(self.rotation or self.hflip or self.vflip or self.scale_crop or self.color_jitter)


class ImageNearDuplicateSpec(_Strict):
    """Near duplicates: perceptual hashes (imagehash) within ``max_distance`` bits of each other."""

    enabled: bool = True
    hash: Literal["phash", "dhash", "average_hash", "whash"] = "phash"
    hash_size: Annotated[int, Field(ge=4, le=32)] = 8
    max_distance: Annotated[int, Field(ge=0, le=64)] = Field(
        2, description="Hamming distance (bits) at or below which two images are near duplicates"
    )


class ImageSpec(_Strict):
    column: str = Field("image", description="tables: the column holding a relative path or image bytes")
    size: Annotated[int, Field(ge=8, le=2048)] | None = Field(
        None, description="side of the square model input; default: the model's image processor, else 224"
    )
    min_side: Annotated[int, Field(ge=1, le=4096)] = Field(
        8, description="an image with a shorter side is refused as too small"
    )
    max_pixels: Annotated[int, Field(ge=1)] = Field(
        40_000_000, description="an image with more pixels is refused before decoding (decompression bomb)"
    )
    modes: list[str] = Field(
        default_factory=lambda: ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "YCbCr"],
        description="PIL modes accepted (converted to RGB); others, e.g. 16-bit 'I;16' or float 'F', "
        "are refused",
    )
    bad_files: Literal["fail", "drop"] = Field(
        "fail", description="fail: any bad file stops the run; drop: bad files are counted and dropped"
    )
    limit: Annotated[int, Field(ge=1)] | None = Field(
        None, description="read only the first N images of each source (a subset of a large set)"
    )
    class_names: list[str] | None = Field(
        None, description="idx files: the names of label ids 0..k-1 (default: the ids as text)"
    )
    near_duplicates: ImageNearDuplicateSpec = ImageNearDuplicateSpec()
    augment: AugmentSpec = AugmentSpec()
