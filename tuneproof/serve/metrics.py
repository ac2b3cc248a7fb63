"""Prometheus metrics of one server (its own registry, so several apps in one process never clash).

Names follow Prometheus conventions: ``tuneproof_`` prefix, base units (seconds, bytes), ``_total``
on counters. Drift gauges come from the server's observers at scrape time, as
``tuneproof_drift_<name>``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger("tuneproof.serve")

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
TOKEN_BUCKETS = (4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
CONFIDENCE_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 21))


class Observer(Protocol):
    """What the server feeds with every answered batch (e.g. ``tuneproof.monitor.live.LiveDrift``)."""

    def observe(self, texts: list[str], predictions: list[dict[str, Any]]) -> None: ...
    def gauges(self) -> dict[str, float]: ...


_NAME = re.compile(r"[^a-zA-Z0-9_]")


class _DriftCollector(Collector):
    def __init__(self, observers: Sequence[Observer], errors: Counter) -> None:
        self.observers = observers
        self.errors = errors

    def collect(self) -> Iterable[GaugeMetricFamily]:
        values: dict[str, float] = {}
        for obs in self.observers:
            try:
                values.update(obs.gauges())
            except Exception:  # a broken observer must not take /metrics down with it
                log.exception("observer %r failed in gauges()", obs)
                self.errors.labels(stage="gauges").inc()
        for name, value in sorted(values.items()):
            clean = _NAME.sub("_", name)
            fam = GaugeMetricFamily(
                f"tuneproof_drift_{clean}", f"drift statistic {name} over recent requests"
            )
            fam.add_metric([], float(value))
            yield fam


class ServeMetrics:
    def __init__(self, observers: Sequence[Observer] = ()) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "tuneproof_http_requests_total",
            "HTTP requests by route and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "tuneproof_http_request_duration_seconds",
            "time from request to last byte of the response",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge("tuneproof_requests_in_flight", "model requests admitted now", registry=r)
        self.queue_depth = Gauge(
            "tuneproof_queue_depth", "model requests waiting for the model (not yet started)", registry=r
        )
        self.refused = Counter(
            "tuneproof_refused_requests_total", "requests refused, by reason", ["reason"], registry=r
        )
        self.cancelled = Counter(
            "tuneproof_cancelled_requests_total",
            "requests dropped before their work ran or finished (client gone, deadline)",
            ["reason"],
            registry=r,
        )
        self.batch_texts = Histogram(
            "tuneproof_batch_texts", "texts per merged model batch", buckets=SIZE_BUCKETS, registry=r
        )
        self.batch_requests = Histogram(
            "tuneproof_batch_requests",
            "requests merged into one model batch",
            buckets=SIZE_BUCKETS,
            registry=r,
        )
        self.batch_duration = Histogram(
            "tuneproof_batch_duration_seconds",
            "model time per merged batch",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.input_tokens = Histogram(
            "tuneproof_input_length_tokens",
            "tokens per input text (after truncation)",
            buckets=TOKEN_BUCKETS,
            registry=r,
        )
        self.input_chars = Histogram(
            "tuneproof_input_length_characters",
            "characters per input text",
            buckets=(16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192),
            registry=r,
        )
        self.input_image_bytes = Histogram(
            "tuneproof_input_image_bytes",
            "encoded bytes per input image",
            buckets=(1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216),
            registry=r,
        )
        self.input_image_pixels = Histogram(
            "tuneproof_input_image_pixels",
            "width x height per input image, before resizing to the model's input",
            buckets=(256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216),
            registry=r,
        )
        self.labels = Counter(
            "tuneproof_predicted_labels_total",
            "predicted labels (entity types for NER)",
            ["label"],
            registry=r,
        )
        self.confidence = Histogram(
            "tuneproof_prediction_confidence",
            "probability of the predicted label (entity score for NER)",
            buckets=CONFIDENCE_BUCKETS,
            registry=r,
        )
        self.scores = Histogram(
            "tuneproof_prediction_score",
            "regression outputs",
            buckets=(-10, -5, -2, -1, -0.5, 0, 0.5, 1, 2, 5, 10),
            registry=r,
        )
        self.generated_tokens = Counter(
            "tuneproof_generated_tokens_total", "tokens generated by chat completions", registry=r
        )
        self.capture_records = Counter(
            "tuneproof_capture_records_total", "captured records written", registry=r
        )
        self.capture_dropped = Counter(
            "tuneproof_capture_dropped_records_total",
            "captured records not written, by reason",
            ["reason"],
            registry=r,
        )
        self.observer_errors = Counter(
            "tuneproof_observer_errors_total", "observer calls that raised", ["stage"], registry=r
        )
        r.register(_DriftCollector(observers, self.observer_errors))

    def observe_inputs(self, texts: Sequence[str], token_lengths: Sequence[int]) -> None:
        for t, n in zip(texts, token_lengths, strict=True):
            self.input_chars.observe(len(t))
            self.input_tokens.observe(n)

    def observe_images(self, sizes: Sequence[int], pixels: Sequence[int]) -> None:
        for n, px in zip(sizes, pixels, strict=True):
            self.input_image_bytes.observe(n)
            self.input_image_pixels.observe(px)

    def observe_predictions(self, predictions: Sequence[dict[str, Any]]) -> None:
        for p in predictions:
            if "probabilities" in p and "label" in p:  # classification
                self.labels.labels(label=str(p["label"])).inc()
                self.confidence.observe(float(p["probabilities"].get(p["label"], 0.0)))
            elif "probabilities" in p and "labels" in p:  # multilabel: every label that is on
                for lab in p["labels"]:
                    self.labels.labels(label=str(lab)).inc()
                    self.confidence.observe(float(p["probabilities"].get(lab, 0.0)))
            elif "score" in p:
                self.scores.observe(float(p["score"]))
            elif "entities" in p:
                for ent in p["entities"]:
                    self.labels.labels(label=str(ent["type"])).inc()
                    self.confidence.observe(float(ent["score"]))

    def render(self) -> bytes:
        return generate_latest(self.registry)
