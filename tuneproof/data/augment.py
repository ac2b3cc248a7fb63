"""Augmentation of training images, as a pure function of (seed, epoch, example).

Each example's parameters (flips, angle, crop, colour factors) are drawn from a NumPy generator
seeded by ``[seed, epoch, example key]``, never from a global random state, so a resumed run sees
exactly the augmented images an uninterrupted one saw, and the order of a batch does not matter.
The images are then transformed as a batch with kornia (which needs only torch): one affine warp
for rotation, scale and crop, and kornia's colour adjustments for the jitter.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import torch

from tuneproof.protocol.image_schema import AugmentSpec


def example_key(row_id: str) -> int:
    """A stable 63-bit integer for an example, from its row id (not from its position in a list)."""
    return int.from_bytes(hashlib.sha256(row_id.encode()).digest()[:8], "big") >> 1


@dataclass(frozen=True)
class AugmentParams:
    hflip: bool
    vflip: bool
    angle: float  # degrees
    area: float  # fraction of the image the crop covers
    dx: float  # crop centre offset, as a fraction of the width
    dy: float
    brightness: float  # additive
    contrast: float  # multiplicative
    saturation: float
    hue: float  # turns


def draw_params(spec: AugmentSpec, seed: int, epoch: int, key: int) -> AugmentParams:
    rng = np.random.default_rng([seed, epoch, key])
    # Every number is drawn in a fixed order whatever is enabled, so enabling one augmentation
    # never changes the draws of another.
    u = rng.random(14)
    hflip = bool(u[0] < spec.hflip)
    vflip = bool(u[1] < spec.vflip)
    angle = 0.0
    if spec.rotation is not None and u[2] < spec.rotation.p:
        angle = float((2 * u[3] - 1) * spec.rotation.degrees)
    area, dx, dy = 1.0, 0.0, 0.0
    if spec.scale_crop is not None and u[4] < spec.scale_crop.p:
        lo, hi = spec.scale_crop.scale
        area = float(lo + (hi - lo) * u[5])
        slack = (1 - math.sqrt(area)) / 2  # how far the crop's centre may move from the image's
        dx, dy = float((2 * u[6] - 1) * slack), float((2 * u[7] - 1) * slack)
    b, c, s, h = 0.0, 1.0, 1.0, 0.0
    cj = spec.color_jitter
    if cj is not None and u[8] < cj.p:
        b = float((2 * u[9] - 1) * cj.brightness)
        c = float(1 + (2 * u[10] - 1) * cj.contrast)
        s = float(1 + (2 * u[11] - 1) * cj.saturation)
        h = float((2 * u[12] - 1) * cj.hue)
    return AugmentParams(hflip, vflip, angle, area, dx, dy, b, c, s, h)


def apply_params(x: torch.Tensor, params: list[AugmentParams]) -> torch.Tensor:
    """``x``: float [B, 3, H, W] in [0, 1]; returns the augmented batch, same shape, in [0, 1]."""
    import kornia

    n, _, height, width = x.shape
    if n == 0:
        return x
    hflip = torch.tensor([p.hflip for p in params])
    vflip = torch.tensor([p.vflip for p in params])
    x = torch.where(hflip.view(-1, 1, 1, 1), x.flip(-1), x)
    x = torch.where(vflip.view(-1, 1, 1, 1), x.flip(-2), x)
    angle = torch.tensor([p.angle for p in params], dtype=x.dtype)
    zoom = torch.tensor([1.0 / math.sqrt(p.area) for p in params], dtype=x.dtype)
    if bool((angle != 0).any() or (zoom != 1).any()):
        center = torch.tensor([[(width - 1) / 2, (height - 1) / 2]], dtype=x.dtype).expand(n, 2)
        matrix = kornia.geometry.transform.get_rotation_matrix2d(center, angle, zoom.view(-1, 1).expand(n, 2))
        # Crop off-centre: move the crop's centre d to the image centre before rotating and zooming
        # (dst = A (src - d - c) + c), i.e. subtract A d from the translation.
        shift = torch.tensor([[p.dx * width, p.dy * height] for p in params], dtype=x.dtype)
        matrix = matrix.clone()
        matrix[:, :, 2] -= torch.einsum("bij,bj->bi", matrix[:, :, :2], shift)
        x = kornia.geometry.transform.warp_affine(
            x, matrix, dsize=(height, width), mode="bilinear", padding_mode="zeros", align_corners=True
        )
    brightness = torch.tensor([p.brightness for p in params], dtype=x.dtype)
    contrast = torch.tensor([p.contrast for p in params], dtype=x.dtype)
    saturation = torch.tensor([p.saturation for p in params], dtype=x.dtype)
    hue = torch.tensor([p.hue * 2 * math.pi for p in params], dtype=x.dtype)
    if bool((brightness != 0).any()):
        x = kornia.enhance.adjust_brightness(x, brightness, clip_output=True)
    if bool((contrast != 1).any()):
        x = kornia.enhance.adjust_contrast(x, contrast, clip_output=True)
    if bool((saturation != 1).any()):
        x = kornia.enhance.adjust_saturation(x, saturation)
    if bool((hue != 0).any()):
        x = kornia.enhance.adjust_hue(x, hue)
    return x.clamp(0.0, 1.0)


def augment(pixels: np.ndarray, keys: list[int], spec: AugmentSpec, seed: int, epoch: int) -> torch.Tensor:
    """uint8 [B, H, W, 3] images -> augmented float [B, 3, H, W] in [0, 1]."""
    x = torch.from_numpy(np.array(pixels, dtype=np.uint8)).permute(0, 3, 1, 2).float() / 255.0
    return apply_params(x, [draw_params(spec, seed, epoch, k) for k in keys])


def augment_pil(image: object, params: AugmentParams) -> object:
    """The same transformation with PIL on one image (the benchmark compares the two; the loop
    uses kornia). Colour jitter is left out here: PIL's enhancers use different formulas."""
    from PIL import Image

    assert isinstance(image, Image.Image)
    img = image
    if params.hflip:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if params.vflip:
        img = img.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    w, h = img.size
    if params.area != 1.0:
        side = math.sqrt(params.area)
        cx, cy = w / 2 + params.dx * w, h / 2 + params.dy * h
        box = (cx - side * w / 2, cy - side * h / 2, cx + side * w / 2, cy + side * h / 2)
        img = img.resize((w, h), Image.Resampling.BILINEAR, box=box)
    if params.angle:
        img = img.rotate(params.angle, Image.Resampling.BILINEAR)
    return img
