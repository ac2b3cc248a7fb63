"""Opt-in capture of production inputs and predictions, PII-scrubbed before anything is written.

File format (read by ``tuneproof monitor --window <folder>``):

- The folder holds files named ``capture-<UTC start, %Y%m%dT%H%M%SZ>-<pid>-<seq, 4 digits>.jsonl``,
  UTF-8, one JSON object per line, each line written whole by one writer thread and flushed. A file
  is closed and a new one started when it passes ``max_file_bytes``; beyond ``max_files`` the oldest
  capture files are deleted. The file being written may end without a final newline if the process
  was killed mid-write: a reader skips a last line that does not parse.
- Every line (record) has at least:

  ``time``        ISO 8601 UTC time the prediction was made, e.g. ``"2026-12-01T21:45:52.123456+00:00"``
  ``route``       the endpoint, ``"/predict"`` or ``"/v1/chat/completions"``
  ``text``        one input text, after the PII policy (see below)
  ``prediction``  exactly what the endpoint returned for that text: ``{"label", "probabilities"}``
                  (classification), ``{"labels", "probabilities"}`` (multilabel), ``{"score"}``
                  (regression), ``{"words", "tags", "entities"}`` (token classification),
                  ``{"generation"}`` (chat: the assistant's reply; ``text`` is the last user message)

  and also ``request_id`` (the ``X-Request-ID`` of the response), ``index`` (the text's position in
  its request), ``task``, ``run`` (the run folder's name) and ``pii`` (``"scrubbed"``).
  A request of n texts gives n records.

Image models: a record's ``text`` is the image's position in its request (``images[2]`` for base64
JSON, ``files[2]`` for an upload; an uploaded file's own name is not kept: a name such as
``scan-of-jane.doe@example.com.png`` is not reliably found by the PII recognisers), and ``image``
describes it without its content:
``{"sha256", "bytes", "format", "width", "height", "mode", "brightness", "contrast"}`` (the SHA-256
of the bytes as received, their length, what the header says, and the mean and standard deviation
of luminance in [0, 1], which ``tuneproof monitor`` compares with the test split's). The pixels are
never written: an image can show a face or a document, which no scrubber here can redact. The
description is made when the batch is submitted, so the queue holds no image bytes and stays as
small as for text.

PII: the protocol's ``pii:`` policy is applied to ``text`` (and to chat messages) before a record is
queued; a run without a ``pii:`` section is captured under the default policy, which redacts every
entity type. A record whose text matches a type under a ``fail`` policy is dropped, not written
(``tuneproof_capture_dropped_records_total{reason="pii"}``). Predictions of token classification
repeat input words, so their ``words`` and entity ``text`` fields are rebuilt from the scrubbed text's
whitespace tokens only when those still line up; otherwise they are replaced by ``null``.

Writing happens on a background thread behind a bounded queue, so capture never slows a response;
when the queue is full records are dropped and counted (``reason="queue_full"``).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from tuneproof.errors import PersonalDataFound
from tuneproof.serve.metrics import ServeMetrics
from tuneproof.serve.settings import Capture

log = logging.getLogger("tuneproof.serve")
_POSITIONAL = re.compile(r"^(images|files)\[\d+\]$")


@dataclass
class _Batch:
    route: str
    request_id: str
    texts: list[str]
    predictions: list[dict[str, Any]]
    time: str
    images: list[dict[str, Any]] | None = None


class CaptureWriter:
    def __init__(
        self,
        spec: Capture,
        pii: Any,
        metrics: ServeMetrics,
        task: str,
        run: str,
        image_size: int | None = None,
    ) -> None:
        self.spec, self.pii, self.metrics, self.task, self.run = spec, pii, metrics, task, run
        self.image_size = image_size  # an image model's input side, where luminance is read
        self.spec.folder.mkdir(parents=True, exist_ok=True)
        self._queue: queue.Queue[_Batch | None] = queue.Queue(maxsize=spec.queue_records)
        self._fh: IO[str] | None = None
        self._written = 0
        self._seq = 0
        self._thread = threading.Thread(target=self._run, name="tuneproof-capture", daemon=True)
        self._thread.start()

    def submit(
        self, route: str, request_id: str, texts: list[Any], predictions: list[dict[str, Any]]
    ) -> None:
        """``texts``: the input texts, or the ``ImageInput`` items of an image model."""
        images = None
        if texts and hasattr(texts[0], "data"):  # ImageInput: keep a description, not the bytes
            images = [describe_image(x.data, self.image_size) for x in texts]
            texts = [x.name if _POSITIONAL.match(x.name) else f"files[{i}]" for i, x in enumerate(texts)]
        item = _Batch(
            route, request_id, list(texts), list(predictions), datetime.now(UTC).isoformat(), images
        )
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.metrics.capture_dropped.labels(reason="queue_full").inc(len(texts))

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued, then close the file."""
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            log.error("capture queue still full at shutdown; queued records are lost")
            return
        self._thread.join(timeout)

    # -- writer thread ---------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                break
            try:
                self._write(item)
            except Exception:  # capture must never take the server down
                log.exception("capture write failed")
                self.metrics.capture_dropped.labels(reason="error").inc(len(item.texts))
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def _scrub(self, texts: list[str]) -> list[str | None]:
        from tuneproof.data.pii_step import scrub_inputs

        try:
            return list(scrub_inputs(self.pii, texts))
        except PersonalDataFound:
            pass
        out: list[str | None] = []  # isolate the texts under a `fail` policy, keep the others
        for t in texts:
            try:
                out.append(scrub_inputs(self.pii, [t])[0])
            except PersonalDataFound:
                out.append(None)
        return out

    def _write(self, item: _Batch) -> None:
        scrubbed = self._scrub(item.texts)
        lines = []
        for i, (raw, text, pred) in enumerate(zip(item.texts, scrubbed, item.predictions, strict=True)):
            if text is None:
                self.metrics.capture_dropped.labels(reason="pii").inc()
                continue
            pred = _scrub_prediction(pred, raw, text)
            if isinstance(pred.get("generation"), str):
                # A generated reply can repeat what the user wrote, or what the model memorised:
                # it is scrubbed like the input, and the record dropped where a policy says fail.
                reply = self._scrub([pred["generation"]])[0]
                if reply is None:
                    self.metrics.capture_dropped.labels(reason="pii").inc()
                    continue
                pred = {**pred, "generation": reply}
            record = {
                "time": item.time,
                "route": item.route,
                "text": text,
                "prediction": pred,
                "request_id": item.request_id,
                "index": i,
                "task": self.task,
                "run": self.run,
                "pii": "scrubbed",
            }
            if item.images is not None:
                record["image"] = item.images[i]
            lines.append(json.dumps(record, ensure_ascii=False) + "\n")
        for line in lines:
            fh = self._file()
            fh.write(line)
            self._written += len(line.encode("utf-8"))
        if self._fh is not None:
            self._fh.flush()
        self.metrics.capture_records.inc(len(lines))

    def _file(self) -> IO[str]:
        if self._fh is not None and self._written < self.spec.max_file_bytes:
            return self._fh
        if self._fh is not None:
            self._fh.close()
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        self._seq += 1
        path = self.spec.folder / f"capture-{stamp}-{os.getpid()}-{self._seq:04d}.jsonl"
        self._fh = path.open("a", encoding="utf-8")
        self._written = 0
        self._prune(keep=path)
        return self._fh

    def _prune(self, keep: Path) -> None:
        files = sorted(self.spec.folder.glob("capture-*.jsonl"), key=lambda p: (p.stat().st_mtime, p.name))
        excess = len(files) - self.spec.max_files
        for old in [f for f in files if f != keep][: max(0, excess)]:
            old.unlink(missing_ok=True)


def describe_image(data: bytes, size: int | None = None) -> dict[str, Any]:
    """What a capture record says about an image: a hash, its header and two luminance figures
    (``data.images.luminance_stats``, read after resizing to the model's input ``size`` as the data
    stage does, since contrast depends on resolution), never its pixels. The server checked the
    image before the model saw it; this decodes it once more, on the request thread."""
    import hashlib
    import io

    from PIL import Image

    from tuneproof.data.images import luminance_stats

    out: dict[str, Any] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    out.update(format=None, width=None, height=None, mode=None, brightness=None, contrast=None)
    try:
        with Image.open(io.BytesIO(data)) as img:
            out.update(format=img.format, width=img.width, height=img.height, mode=img.mode)
            out["brightness"], out["contrast"] = luminance_stats(img, size)
    except Exception:  # a record is still written for an image the reader rejects, with what was read
        pass
    return out


def _scrub_prediction(pred: dict[str, Any], raw: str, text: str) -> dict[str, Any]:
    """A prediction with no copy of unscrubbed input text in it."""
    if "generation" in pred or ("words" not in pred and "entities" not in pred):
        return pred  # labels, probabilities and scores hold no input text; a generation is scrubbed apart
    if raw == text:
        return pred
    words = text.split()
    same_shape = len(words) == len(pred.get("words") or [])
    out = dict(pred)
    out["words"] = words if same_shape else None
    out["entities"] = [
        {
            **{k: v for k, v in e.items() if k not in ("text", "start", "end")},
            "text": " ".join(words[e["words"][0] : e["words"][1]]) if same_shape else None,
        }
        for e in pred.get("entities", [])
    ]
    return out
