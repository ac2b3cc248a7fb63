"""The server against a real uvicorn on 127.0.0.1: release discipline, auth, limits, back-pressure,
cancellation, dynamic batching, metrics with observer gauges, capture."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from serve_helpers import GatedPredictor, running, wait_ready

from tuneproof.serve.app import create_app
from tuneproof.serve.auth import ApiKeys
from tuneproof.serve.predict import Predictor
from tuneproof.serve.server import check_binding
from tuneproof.serve.settings import Capture, Limits, ServeConfigError, ServeSettings

pytestmark = pytest.mark.integration

KEY = "tp-Secret-key-0123456789"


def _settings(**limits: Any) -> ServeSettings:
    return ServeSettings(limits=Limits(**limits), warmup=False)


def test_a_rejected_run_is_refused_unless_allowed(rejected_run: Path) -> None:
    with pytest.raises(ServeConfigError, match="--allow-rejected"):
        create_app(rejected_run)
    app = create_app(rejected_run, ServeSettings(allow_rejected=True))
    with running(app) as base:
        wait_ready(base)
        for r in (httpx.get(f"{base}/health"), httpx.post(f"{base}/predict", json={"texts": ["good film"]})):
            assert r.status_code == 200
            assert r.headers["x-tuneproof-deployable"] == "false"
            assert "not deployable" in r.headers["x-tuneproof-warning"]
        assert httpx.get(f"{base}/health").json()["deployable"] is False


def test_keys_are_required_beyond_loopback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for host in ("0.0.0.0", "192.168.1.5", "example.org", "::"):
        with pytest.raises(ServeConfigError, match="API keys"):
            check_binding(host, None)
    for host in ("127.0.0.1", "localhost", "::1"):
        check_binding(host, None)
    monkeypatch.setenv("TP_KEYS", KEY)
    check_binding("0.0.0.0", ApiKeys.load("TP_KEYS"))
    (tmp_path / "bad").write_text("not-a-digest\n")
    with pytest.raises(ServeConfigError, match=r"bad:1"):
        ApiKeys.load(key_file=tmp_path / "bad")
    monkeypatch.setenv("EMPTY", " , ")
    with pytest.raises(ServeConfigError, match="EMPTY"):
        ApiKeys.load("EMPTY")


def test_auth_refuses_every_wrong_credential_and_health_stays_open(cls_run: Path, tmp_path: Path) -> None:
    key_file = tmp_path / "keys.sha256"
    key_file.write_text(f"# one key\n{hashlib.sha256(KEY.encode()).hexdigest()}\n")
    app = create_app(cls_run, _settings(), ApiKeys.load(key_file=key_file))
    body = {"texts": ["good film"]}
    wrong = [
        {},
        {"Authorization": "Bearer wrong-key"},
        {"Authorization": f"Bearer {KEY.upper()}"},
        {"Authorization": f"Bearer {KEY.swapcase()}"},
        {"Authorization": f"Bearer {KEY[:-1]}"},
        {"Authorization": f"Bearer {KEY}x"},
        {"Authorization": "Bearer"},
        {"Authorization": KEY},
        {"Authorization": f"Basic {KEY}"},
        {"Authorization": f"Token {KEY}"},
        {"X-API-Key": KEY},
    ]
    with running(app) as base:
        for headers in wrong:
            r = httpx.post(f"{base}/predict", json=body, headers=headers)
            assert r.status_code == 401, headers
            assert r.json()["error"]["type"] == "unauthorized"
            assert r.headers["www-authenticate"].startswith("Bearer")
        assert httpx.get(f"{base}/health").status_code == 200
        assert httpx.get(f"{base}/ready").status_code == 200
        ok = httpx.post(f"{base}/predict", json=body, headers={"Authorization": f"Bearer {KEY}"})
        assert ok.status_code == 200
        pred = ok.json()["predictions"][0]
        assert pred["label"] in ("neg", "pos") and abs(sum(pred["probabilities"].values()) - 1) < 1e-4
        # the scheme is case-insensitive (RFC 7235), the key is not
        assert (
            httpx.post(f"{base}/predict", json=body, headers={"Authorization": f"bearer {KEY}"}).status_code
            == 200
        )


def test_limits_answer_with_the_limit_named(cls_run: Path) -> None:
    app = create_app(cls_run, _settings(max_body_bytes=2000, max_texts=3, max_chars_per_text=50))
    with running(app) as base:
        big = httpx.post(f"{base}/predict", json={"texts": ["a" * 3000]})
        assert big.status_code == 413 and big.json()["error"]["limit"] == "max_body_bytes"

        def chunks() -> Any:  # no Content-Length: the guard must stop reading at the limit
            yield b'{"texts": ["'
            for _ in range(100):
                yield b"a" * 100
            yield b'"]}'

        chunked = httpx.post(
            f"{base}/predict", content=chunks(), headers={"content-type": "application/json"}
        )
        assert chunked.status_code == 413
        many = httpx.post(f"{base}/predict", json={"texts": ["good"] * 4})
        assert many.status_code == 422 and many.json()["error"]["limit"] == "max_texts"
        assert "max_texts=3" in many.json()["error"]["message"]
        long = httpx.post(f"{base}/predict", json={"texts": ["good", "a" * 51]})
        assert long.status_code == 422 and long.json()["error"]["limit"] == "max_chars_per_text"
        assert "texts.1" in long.json()["error"]["message"]
        for bad in ({"texts": []}, {"texts": ["  "]}, {"texts": "good"}, {"text": ["good"]}, {}):
            assert httpx.post(f"{base}/predict", json=bad).status_code == 422, bad
        assert (
            httpx.post(
                f"{base}/predict", content=b"{not json", headers={"content-type": "application/json"}
            ).status_code
            == 422
        )
        assert httpx.post(f"{base}/predict", json={"texts": ["good"] * 3}).status_code == 200
        refused = httpx.get(f"{base}/metrics").text
        assert 'tuneproof_refused_requests_total{reason="max_texts"} 1.0' in refused


def _post_async(
    base: str, body: dict[str, Any], out: list[httpx.Response], headers: dict[str, str] | None = None
) -> threading.Thread:
    def go() -> None:
        out.append(httpx.post(f"{base}/predict", json=body, headers=headers, timeout=60))

    t = threading.Thread(target=go)
    t.start()
    return t


def test_back_pressure_429_at_max_concurrent_and_503_past_the_queue_deadline(cls_run: Path) -> None:
    gated = GatedPredictor(Predictor.load(cls_run))
    app = create_app(
        cls_run,
        ServeSettings(limits=Limits(max_concurrent=2, queue_deadline_s=0.5), warmup=False),
        predictor=gated,
    )
    with running(app) as base:
        first: list[httpx.Response] = []
        second: list[httpx.Response] = []
        t1 = _post_async(base, {"texts": ["good film"]}, first)
        assert gated.entered.wait(30)  # the model is busy on request 1 (started: no deadline applies)
        t2 = _post_async(base, {"texts": ["bad film"]}, second)  # admitted, queued behind it
        deadline = time.monotonic() + 30
        while app.state.guard.admitted < 2:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        third = httpx.post(f"{base}/predict", json={"texts": ["dull"]})
        assert third.status_code == 429 and third.json()["error"]["limit"] == "max_concurrent"
        assert third.headers["retry-after"] == "1"
        t2.join(30)  # request 2 never started within 0.5 s
        assert second[0].status_code == 503 and second[0].json()["error"]["type"] == "queue_deadline"
        gated.gate.set()
        t1.join(30)
        assert first[0].status_code == 200
        assert gated.calls == [["good film"]]  # request 2's work never ran
        metrics = httpx.get(f"{base}/metrics").text
        assert 'tuneproof_http_requests_total{method="POST",route="/predict",status="429"} 1.0' in metrics
        assert 'tuneproof_cancelled_requests_total{reason="queue_deadline"} 1.0' in metrics


def test_request_timeout_gives_504(cls_run: Path) -> None:
    gated = GatedPredictor(Predictor.load(cls_run))
    app = create_app(
        cls_run,
        ServeSettings(limits=Limits(queue_deadline_s=0.2, request_timeout_s=0.6), warmup=False),
        predictor=gated,
    )
    with running(app) as base:
        r = httpx.post(f"{base}/predict", json={"texts": ["good"]}, timeout=30)
        assert r.status_code == 504 and r.json()["error"]["type"] == "request_timeout"
        gated.gate.set()


def test_a_client_that_disconnects_leaves_no_work_running(cls_run: Path) -> None:
    gated = GatedPredictor(Predictor.load(cls_run))
    app = create_app(
        cls_run, ServeSettings(limits=Limits(queue_deadline_s=20), warmup=False), predictor=gated
    )
    with running(app) as base:
        port = int(base.rsplit(":", 1)[1])
        first: list[httpx.Response] = []
        t1 = _post_async(base, {"texts": ["good film"]}, first)
        assert gated.entered.wait(30)
        body = json.dumps({"texts": ["abandoned text"]}).encode()
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        deadline = time.monotonic() + 30
        while app.state.guard.admitted < 2:  # the abandoned request is queued
            assert time.monotonic() < deadline
            time.sleep(0.01)
        sock.close()
        while app.state.guard.admitted > 1:  # the server noticed the client left
            assert time.monotonic() < deadline
            time.sleep(0.01)
        gated.gate.set()
        t1.join(30)
        assert first[0].status_code == 200
        time.sleep(0.2)  # let the batcher take another turn
        assert all("abandoned text" not in call for call in gated.calls)
        assert (
            'tuneproof_cancelled_requests_total{reason="client_gone"} 1.0'
            in httpx.get(f"{base}/metrics").text
        )


def test_concurrent_requests_are_merged_and_split_back_exactly(cls_run: Path) -> None:
    plain = Predictor.load(cls_run)
    gated = GatedPredictor(Predictor.load(cls_run))
    app = create_app(
        cls_run, ServeSettings(limits=Limits(queue_deadline_s=20), warmup=False), predictor=gated
    )
    bodies = [{"texts": [f"good film {i}", "bad plot"][: 1 + i % 2]} for i in range(6)]
    with running(app) as base:
        out: list[list[httpx.Response]] = [[] for _ in bodies]
        t0 = _post_async(base, bodies[0], out[0])
        assert gated.entered.wait(30)
        threads = [_post_async(base, b, o) for b, o in zip(bodies[1:], out[1:], strict=True)]
        deadline = time.monotonic() + 30
        while app.state.guard.admitted < len(bodies):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        gated.gate.set()
        for t in [t0, *threads]:
            t.join(30)
    assert len(gated.calls) == 2  # the five queued requests ran as one merged batch
    assert sorted(gated.calls[1]) == sorted(t for b in bodies[1:] for t in b["texts"])
    for body, res in zip(bodies, out, strict=True):
        assert res[0].status_code == 200
        assert res[0].json()["predictions"] == plain.predict(body["texts"])


class FakeDrift:
    def __init__(self) -> None:
        self.seen: list[tuple[list[str], list[dict[str, Any]]]] = []
        self.lock = threading.Lock()

    def observe(self, texts: list[str], predictions: list[dict[str, Any]]) -> None:
        with self.lock:
            self.seen.append((texts, predictions))

    def gauges(self) -> dict[str, float]:
        with self.lock:
            n = sum(len(t) for t, _ in self.seen)
            pos = sum(p["label"] == "pos" for _, ps in self.seen for p in ps)
        return {"texts_seen": float(n), "label_psi.pos": pos / n if n else 0.0}


def test_metrics_observer_gauges_and_capture(cls_run: Path, tmp_path: Path) -> None:
    drift = FakeDrift()
    settings = ServeSettings(
        capture=Capture(folder=tmp_path / "cap", max_file_bytes=1024, max_files=3), warmup=False
    )
    app = create_app(cls_run, settings, observers=[drift])
    texts = ["good film, mail me at jane.doe@example.com", "bad plot", "a warm and funny story"]
    with running(app) as base:
        answers = []
        for i in range(12):
            r = httpx.post(f"{base}/predict", json={"texts": texts}, headers={"X-Request-ID": f"req-{i}"})
            assert r.status_code == 200 and r.headers["x-request-id"] == f"req-{i}"
            answers.append(r.json()["predictions"])
        deadline = time.monotonic() + 30
        while sum(len(t) for t, _ in drift.seen) < 36:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        metrics = httpx.get(f"{base}/metrics").text
    lines = {
        ln.split(" ")[0]: float(ln.split(" ")[1])
        for ln in metrics.splitlines()
        if ln and not ln.startswith("#")
    }
    assert lines["tuneproof_drift_texts_seen"] == 36.0
    assert 0.0 <= lines["tuneproof_drift_label_psi_pos"] <= 1.0
    labels = [p["label"] for a in answers for p in a]
    for lab in set(labels):
        assert lines[f'tuneproof_predicted_labels_total{{label="{lab}"}}'] == labels.count(lab)
    assert lines["tuneproof_prediction_confidence_count"] == 36
    assert lines["tuneproof_input_length_tokens_count"] == 36
    assert lines['tuneproof_http_requests_total{method="POST",route="/predict",status="200"}'] == 12
    assert lines["tuneproof_batch_texts_count"] >= 1
    # capture: closed on shutdown; rotated at ~1 KiB, at most 3 files kept, PII scrubbed
    files = sorted((tmp_path / "cap").glob("capture-*.jsonl"))
    assert 1 <= len(files) <= 3
    records = [json.loads(ln) for f in files for ln in f.read_text().splitlines()]
    assert records and all({"time", "route", "text", "prediction", "request_id"} <= set(r) for r in records)
    assert all("jane.doe@example.com" not in f.read_text() for f in files)
    by_id = {(r["request_id"], r["index"]): r for r in records}
    last = by_id[("req-11", 1)]
    assert last["text"] == "bad plot" and last["prediction"] == answers[11][1] and last["route"] == "/predict"
    assert "example.com" not in by_id[("req-11", 0)]["text"] and "good film" in by_id[("req-11", 0)]["text"]
