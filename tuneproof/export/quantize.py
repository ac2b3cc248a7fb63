"""int8 weights for an exported ONNX graph: ONNX Runtime's dynamic quantisation.

Weights of MatMul/Gemm are stored as signed int8 (per output channel), activations are quantised on
the fly per batch; no calibration data is needed, which keeps the test split for verification alone.
"""

from __future__ import annotations

from pathlib import Path

from tuneproof.errors import ExportError

INT8_FILE = "model.int8.onnx"
QUANTIZATION = "onnxruntime dynamic: int8 weights per channel (MatMul, Gemm), activations per batch"


def quantize_int8(source: Path, target: Path) -> Path:
    """Write the int8 version of the fp32 graph ``source`` to ``target``."""
    import tempfile

    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        with tempfile.TemporaryDirectory(prefix="tuneproof-int8-") as scratch:
            prepared = Path(scratch) / "prepared.onnx"
            # ONNX Runtime's recommended pre-pass (graph optimisation, shape inference); its symbolic
            # shape inference cannot follow the exporter's dynamic axes, and the ONNX one suffices.
            quant_pre_process(source, prepared, skip_symbolic_shape=True)
            quantize_dynamic(
                prepared,
                target,
                op_types_to_quantize=["MatMul", "Gemm"],
                per_channel=True,
                weight_type=QuantType.QInt8,
            )
    except Exception as exc:  # onnxruntime raises plain Exceptions with the op that failed
        raise ExportError(f"ONNX Runtime could not quantise {source.name}: {exc}") from exc
    return target


__all__ = ["INT8_FILE", "QUANTIZATION", "quantize_int8"]
