"""A monitoring reference folder, written whole or not at all (text and image references alike)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tuneproof.fsutil import replace_dir


def write_reference_dir(
    out: Path, frame: pd.DataFrame, tensors: dict[str, np.ndarray] | None, info: dict[str, Any]
) -> Path:
    """``out`` as reference.parquet, tensors.safetensors (when there are tensors) and reference.json,
    written beside it and swapped in whole, so a failed write leaves the previous folder."""
    from safetensors.numpy import save_file

    tmp = out.with_name(f".tmp-{out.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        frame.to_parquet(tmp / "reference.parquet", index=False)
        if tensors is not None:
            save_file(tensors, str(tmp / "tensors.safetensors"))
        (tmp / "reference.json").write_text(json.dumps(info, indent=1))
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
