"""int8 candidates for ``onnx-int8`` against the export gates on one run (how the default was chosen).

    python benchmarks/int8_candidates.py runs/<run> dyn nbits:bs=32 static dyn:keep=5.11.17.23.29.35

Each candidate quantises the run's fp32 graph, is scored on the run's test split exactly as
``tuneproof export`` scores an export (the run's temperature applied on both sides, the default
export gates: macro-F1 not worse than the original by more than 0.005 at the interval's bound,
identical predictions >= 0.99 at the exact lower bound), and is timed against the fp32 graph at
batch 32 on 256 test texts, 1 thread, interleaved over 3 repeats. One JSON line per candidate is
appended to ``--out``. Candidates (``kind:key=value:...``):

* ``dyn``: ``quantize_dynamic``, int8 per-channel weights (MatMul with constant B, Gemm);
  ``act=q`` also activation-activation MatMuls, ``head=fp32`` keeps the Gemms (pooler, classifier);
* ``static``: QDQ ``quantize_static``, per-channel int8 weights, uint8 activations calibrated by
  MinMax on ``n`` (256) rows of the run's **training** split (never test), batches of 16;
  attention's activation-activation MatMuls in fp32 unless ``act=q``;
* ``nbits``: MatMulNBits at 8 bits, block ``bs``, accuracy level 4 (activations per block too);
  ``emb=q`` also the word-embedding table in 8 bits (one scale), ``emb=q4`` in 4 bits per block of 32;
* ``keep=i.j.k``: weight MatMuls by index (6 per MiniLM layer: Q, K, V, attention output,
  feed-forward in, feed-forward out) left in fp32.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("candidates", nargs="+")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "int8_candidates.jsonl")
    args = ap.parse_args(argv)

    import onnx
    import onnxruntime as ort
    import pandas as pd
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from tuneproof.export.onnx import export_graph
    from tuneproof.export.original import Original
    from tuneproof.export.reverify import reverify
    from tuneproof.protocol.schema import ExportSpec
    from tuneproof.train.features import inference_batches, pad_collate

    run: Path = args.run_dir
    o = Original.load(run)
    work = Path(tempfile.mkdtemp(prefix="int8-candidates-"))
    fp32, prep = work / "model.onnx", work / "prepared.onnx"
    export_graph(o.fp32_model(), o.task, fp32, o.info.max_length, 18)
    quant_pre_process(fp32, prep, skip_symbolic_shape=True)
    g = onnx.load(prep).graph
    inits = {i.name for i in g.initializer}
    weight_mm = [n.name for n in g.node if n.op_type == "MatMul" and n.input[1] in inits]
    activation_mm = [n.name for n in g.node if n.op_type == "MatMul" and n.input[1] not in inits]
    gemm = [n.name for n in g.node if n.op_type == "Gemm"]
    reference = o.predictor.calibrated(o.outputs)
    collate = pad_collate(o.pad_id)

    def feeds(features: Any, bs: int) -> list[tuple[np.ndarray, dict[str, np.ndarray]]]:
        lengths = np.array([len(f["input_ids"]) for f in features])
        out = []
        for idx in inference_batches(lengths, bs):
            b = collate([{"input_ids": features[i]["input_ids"]} for i in idx])
            ids, mask = b["input_ids"].numpy(), b["attention_mask"].numpy()
            out.append((idx, {"input_ids": ids.astype(np.int64), "attention_mask": mask.astype(np.int64)}))
        return out

    class TrainRows(CalibrationDataReader):
        def __init__(self, n: int) -> None:
            rows = pd.read_parquet(run / "data" / "train.parquet").sample(n=n, random_state=0)
            feats = o.task.features(rows, o.tokenizer, None)
            self.it = iter(f for _, f in feeds(feats, 16))

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.it, None)

    def build(name: str, out: Path) -> list[str]:
        kind, *opts = name.split(":")
        p = dict(x.split("=") for x in opts)
        keep = [weight_mm[int(i)] for i in p["keep"].split(".")] if "keep" in p else []
        if p.get("head") == "fp32":
            keep += gemm
        if kind == "dyn":
            quantize_dynamic(
                prep,
                out,
                op_types_to_quantize=["MatMul", "Gemm"],
                per_channel=True,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=keep,
                extra_options={"MatMulConstBOnly": p.get("act") != "q"},
            )
        elif kind == "static":
            if p.get("act") != "q":  # attention's activation-activation MatMuls stay fp32, as in dyn
                keep += activation_mm
            quantize_static(
                prep,
                out,
                TrainRows(int(p.get("n", 256))),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=["MatMul", "Gemm"],
                per_channel=True,
                nodes_to_exclude=keep,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
            )
        elif kind == "nbits":
            q = MatMulNBitsQuantizer(
                onnx.load(prep),
                bits=8,
                block_size=int(p.get("bs", 32)),
                is_symmetric=True,
                accuracy_level=4,
                nodes_to_exclude=keep,
                op_types_to_quantize=("MatMul",),
            )
            q.process()
            target = out.with_suffix(".weights.onnx") if "emb" in p else out
            q.model.save_model_to_file(str(target), use_external_data_format=False)
            words = [n.name for n in g.node if n.op_type == "Gather" and n.input[1] == "input_ids"]
            if p.get("emb") == "q":
                quantize_dynamic(target, out, op_types_to_quantize=["Gather"], nodes_to_quantize=words)
            elif p.get("emb") == "q4":  # MatMulNBits' Gather form: 4 bits, one scale per 32 values
                others = [n.name for n in g.node if n.op_type == "Gather" and n.name not in words]
                q4 = MatMulNBitsQuantizer(
                    onnx.load(target),
                    bits=4,
                    block_size=32,
                    is_symmetric=True,
                    nodes_to_exclude=others,
                    op_types_to_quantize=("Gather",),
                )
                q4.process()
                q4.model.save_model_to_file(str(out), use_external_data_format=False)
        else:
            raise SystemExit(f"unknown candidate kind {kind!r}")
        return keep

    def session(path: Path) -> Any:
        opt = ort.SessionOptions()
        opt.intra_op_num_threads = opt.inter_op_num_threads = 1
        opt.log_severity_level = 3
        return ort.InferenceSession(str(path), opt, providers=["CPUExecutionProvider"])

    test_feeds, timing_feeds = feeds(o.features, o.batch_size), feeds(o.features[:256], 32)

    def samples_per_second(s: Any) -> float:
        t = time.perf_counter()
        for _, f in timing_feeds:
            s.run(None, f)
        return 256 / (time.perf_counter() - t)

    s_fp32 = session(fp32)
    spec = ExportSpec(formats=["onnx-int8"])
    for name in args.candidates:
        started = time.time()
        out = work / f"{len(os.listdir(work))}.onnx"
        keep = build(name, out)
        s = session(out)
        probs = np.zeros((len(o.features), len(o.task.labels)))
        for idx, f in test_feeds:
            probs[idx] = s.run(None, f)[0]
        v = reverify(o.task, o.test, reference, o.predictor.calibrated(probs), spec)
        base: list[float] = []
        quant: list[float] = []
        for r in range(3):
            for first in (s_fp32, s) if r % 2 == 0 else (s, s_fp32):
                (base if first is s_fp32 else quant).append(samples_per_second(first))
        ev = v.evaluation
        row = {
            "name": name,
            "size_mb": out.stat().st_size / 1e6,
            "size_ratio": fp32.stat().st_size / out.stat().st_size,
            "identical": ev["model"]["identical_predictions"],
            "macro_f1_diff": ev["comparisons"]["original"]["macro_f1"],
            "max_prob_diff": ev["model"]["max_probability_difference"],
            "passed": v.gates.passed,
            "kept_fp32": len(keep),
            "speed_vs_fp32_onnx_b32": statistics.median(quant) / statistics.median(base),
            "fp32_sps": statistics.median(base),
            "q_sps": statistics.median(quant),
            "load": os.getloadavg(),
            "seconds": round(time.time() - started, 1),
        }
        print(json.dumps(row), flush=True)
        with args.out.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
