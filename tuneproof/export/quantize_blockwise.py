"""Blockwise int8: ONNX Runtime's MatMulNBits at 8 bits, the default ``onnx-int8`` quantisation.

Each weight matrix is stored as int8 with one scale per block of ``block_size`` input values, and
with ``accuracy_level`` 4 the kernel quantises the activations per block too before its int8
dot products. Dynamic quantisation gives each activation tensor one scale per batch, so MiniLM's
few large hidden dimensions crush the rest; on the main job that changed 1.7% of predictions where
blockwise changes 0.2% (docs/exports.md#int8). The quantiser is ONNX Runtime's own: what is written
here is only which nodes it may touch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import onnx

# MatMulNBits' accuracy levels: 4 = int8 activations per block with int32 accumulation (the
# VNNI/AMX kernels); lower levels dequantise the weights to fp32 per call.
ACCURACY_LEVEL = 4
_QUANTIZER_LOG = "onnxruntime.quantization.matmul_nbits_quantizer"


def quantize_blockwise(source: Path, target: Path, block_size: int, keep_fp32: Sequence[str]) -> None:
    """Write ``source`` with every constant-weight MatMul not in ``keep_fp32`` as int8 MatMulNBits.

    Gemm nodes (a BERT pooler and classifier) have no MatMulNBits form and stay fp32; MatMuls of two
    activations (attention scores) have no weight to quantise and stay fp32 too.
    """
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    model = onnx.load(source)
    log = logging.getLogger(_QUANTIZER_LOG)
    level = log.level
    log.setLevel(logging.WARNING)  # it logs every node it visits at INFO
    try:
        quantizer = MatMulNBitsQuantizer(
            model,
            bits=8,
            block_size=block_size,
            is_symmetric=True,
            accuracy_level=ACCURACY_LEVEL,
            nodes_to_exclude=list(keep_fp32),
            op_types_to_quantize=("MatMul",),
        )
        quantizer.process()
    finally:
        log.setLevel(level)
    quantizer.model.save_model_to_file(str(target), use_external_data_format=False)


__all__ = ["ACCURACY_LEVEL", "quantize_blockwise"]
