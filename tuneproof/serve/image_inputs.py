"""Image inputs of the HTTP server: base64 JSON or multipart uploads, checked before the model sees them.

Each image is checked in the request handler, from its header only (Pillow reads the header
lazily): its encoded size (``max_image_bytes``), its format (``image_formats``; Pillow is told to
try no other decoder), its pixel count (``max_image_pixels`` and the protocol's
``images.max_pixels``: a decompression bomb is refused before a pixel is decoded), its mode and
its shorter side (the protocol's ``images.modes`` and ``images.min_side``). What passes goes, as
bytes, to the same decoding and preprocessing ``tuneproof predict`` uses
(``Predictor.predict_images``), so served predictions are the CLI's on the same files; a file that
is corrupt past its header fails there and is answered 422 for its own request only.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from tuneproof.protocol.image_schema import ImageSpec
from tuneproof.serve.settings import Limits

_DATA_URI = re.compile(r"^data:image/[A-Za-z0-9.+-]+;base64,")


@dataclass(frozen=True)
class ImageInput:
    name: str  # what an error names: "images[2]" or the uploaded file's name
    data: bytes


class ImageRefused(Exception):
    """One image the server will not pass to the model; ``status`` and ``kind`` are the response's."""

    def __init__(
        self, status: int, kind: str, message: str, limit: str | None = None, max: int | None = None
    ):
        super().__init__(message)
        self.status, self.kind, self.message, self.limit, self.max = status, kind, message, limit, max


def from_base64(index: int, value: str) -> ImageInput:
    name = f"images[{index}]"
    raw = _DATA_URI.sub("", value, count=1)
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise ImageRefused(422, "invalid_image", f"{name}: not valid base64") from None
    return ImageInput(name, data)


def check(item: ImageInput, limits: Limits, spec: ImageSpec) -> tuple[int, int]:
    """(width, height) of an image that may go to the model; ImageRefused says why one may not."""
    if len(item.data) > limits.max_image_bytes:
        raise ImageRefused(
            422,
            "limit_exceeded",
            f"{item.name}: {len(item.data)} bytes, over the limit max_image_bytes={limits.max_image_bytes}",
            "max_image_bytes",
            limits.max_image_bytes,
        )
    max_pixels = min(limits.max_image_pixels, spec.max_pixels)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(item.data), formats=list(limits.image_formats))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageRefused(
                422,
                "limit_exceeded",
                f"{item.name}: refused as a decompression bomb: {exc}",
                "max_image_pixels",
                max_pixels,
            ) from None
        except UnidentifiedImageError:
            raise ImageRefused(
                415,
                "unsupported_image",
                f"{item.name}: not a readable image in an allowed format ({', '.join(limits.image_formats)})",
            ) from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageRefused(422, "invalid_image", f"{item.name}: unreadable image header: {exc}") from None
    with img:
        w, h = img.size
        if w * h > max_pixels:
            raise ImageRefused(
                422,
                "limit_exceeded",
                f"{item.name}: {w}x{h} = {w * h} pixels, over the limit max_image_pixels={max_pixels}",
                "max_image_pixels",
                max_pixels,
            )
        if img.mode not in spec.modes:
            raise ImageRefused(
                422,
                "invalid_image",
                f"{item.name}: unsupported mode {img.mode!r} (the model takes {', '.join(spec.modes)})",
            )
        if min(w, h) < spec.min_side:
            raise ImageRefused(
                422,
                "invalid_image",
                f"{item.name}: {w}x{h} is too small: the shorter side is under {spec.min_side}",
            )
    return w, h


def warmup_image(size: int) -> ImageInput:
    """A mid-grey PNG at the model's input size: the first forward pass, before /ready says 200."""
    buf = io.BytesIO()
    Image.new("RGB", (size, size), (128, 128, 128)).save(buf, format="PNG")
    return ImageInput("warm-up", buf.getvalue())


__all__ = ["ImageInput", "ImageRefused", "check", "from_base64", "warmup_image"]
