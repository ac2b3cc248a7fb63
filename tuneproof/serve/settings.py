"""What `tuneproof serve` may accept, with safe defaults: limits, batching, capture, release policy.

Every limit has a default, so a server started with no options already refuses a 10 MB body, a
thousand texts or an unbounded queue; each refusal names the limit it hit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tuneproof.errors import ServeConfigError

__all__ = ["Batching", "Capture", "Limits", "ServeConfigError", "ServeSettings"]


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_body_bytes: int = Field(default=1_048_576, ge=64, description="larger bodies get 413 unread")
    max_texts: int = Field(default=64, ge=1, description="texts (or chat messages) per request")
    max_chars_per_text: int = Field(default=4000, ge=1, description="characters per text or message")
    max_concurrent: int = Field(default=64, ge=1, description="requests admitted at once; the rest get 429")
    queue_deadline_s: float = Field(default=2.0, gt=0, description="a request not started by then gets 503")
    request_timeout_s: float = Field(
        default=30.0, gt=0, description="a request not answered by then gets 504"
    )
    max_new_tokens: int = Field(default=256, ge=1, description="sft: the most tokens one completion may ask")
    max_images: int = Field(default=16, ge=1, description="images per request (image models)")
    max_image_bytes: int = Field(
        default=1_048_576, ge=64, description="encoded bytes per image (after base64 decoding)"
    )
    max_image_pixels: int = Field(
        default=16_777_216,
        ge=64,
        description="width x height per image, read from its header before any pixel is decoded "
        "(decompression bombs); the protocol's images.max_pixels applies too",
    )
    image_formats: tuple[str, ...] = Field(
        default=("PNG", "JPEG", "WEBP", "BMP", "GIF"),
        min_length=1,
        description="Pillow formats an uploaded image may be in; no other decoder is tried",
    )


class Batching(BaseModel):
    """Dynamic batching: requests arriving within ``window_ms`` of the first are run as one batch."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    window_ms: float = Field(default=4.0, ge=0)
    max_texts: int = Field(default=256, ge=1, description="texts in one merged batch")
    max_padded_tokens: int = Field(
        default=16384,
        ge=1,
        description="padded tokens of one merged batch, as the length-sorted batcher pads",
    )
    model_batch_size: int = Field(default=64, ge=1, description="rows per forward pass")


class Capture(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    folder: Path
    max_file_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    max_files: int = Field(default=50, ge=1, description="oldest files are deleted beyond this")
    queue_records: int = Field(default=10_000, ge=1, description="records waiting to be written; more drop")


class ServeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    limits: Limits = Field(default_factory=Limits)
    batching: Batching = Field(default_factory=Batching)
    capture: Capture | None = None
    allow_rejected: bool = False
    warmup: bool = True
    backend: Literal["torch", "onnx", "onnx-int8"] = "torch"  # onnx*: the run's export of that format

    @model_validator(mode="after")
    def _window_inside_deadline(self) -> ServeSettings:
        if self.batching.window_ms / 1000 >= self.limits.queue_deadline_s:
            raise ValueError("batching.window_ms must be shorter than limits.queue_deadline_s")
        return self
