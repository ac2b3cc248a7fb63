"""Augmentation speed on CPU: kornia on a batch against PIL image by image, side by side in one run.

The same per-example parameters (``tuneproof.data.augment.draw_params``) for flips, rotation and
scale-crop are applied both ways to the same images; colour jitter is left out of both (PIL's
enhancers use other formulas, so the two would not do the same work). Rounds alternate between the
two, and the medians and their ratio are printed.

    python -m benchmarks.augment_speed --images 512 --size 64 --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch
    from PIL import Image

    from tuneproof.data.augment import apply_params, augment_pil, draw_params
    from tuneproof.protocol.image_schema import AugmentSpec

    torch.set_num_threads(args.threads)
    spec = AugmentSpec.model_validate(
        {"hflip": 0.5, "rotation": {"degrees": 15, "p": 1.0}, "scale_crop": {"scale": [0.7, 1.0], "p": 1.0}}
    )
    rng = np.random.default_rng(0)
    pixels = (rng.random((args.images, args.size, args.size, 3)) * 255).astype(np.uint8)
    pil = [Image.fromarray(p) for p in pixels]
    params = [draw_params(spec, 0, 0, k) for k in range(args.images)]
    kornia_s, pil_s = [], []
    for _ in range(args.rounds):
        t = time.perf_counter()
        x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255.0
        apply_params(x, params)
        kornia_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        for img, p in zip(pil, params, strict=True):
            np.asarray(augment_pil(img, p))
        pil_s.append(time.perf_counter() - t)
    k, p = statistics.median(kornia_s), statistics.median(pil_s)
    print(
        f"{args.images} images of {args.size}px, {args.threads} thread(s), median of {args.rounds} rounds: "
        f"kornia batch {args.images / k:.0f} images/s, PIL per image {args.images / p:.0f} images/s, "
        f"kornia/PIL speed ratio {p / k:.2f}"
    )


if __name__ == "__main__":
    main()
