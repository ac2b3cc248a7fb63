"""The serving benchmark's own logic on tiny inputs: bounded loads against an in-process transport,
percentiles, batch counters from a Prometheus text, the summary's ratios and verdict, the arms'
command lines, and the plain pipeline server on a tiny model. Nothing here is timed."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # plain `pytest` puts tests/, not the repository root, on the path
    sys.path.insert(0, str(ROOT))

from benchmarks import serve_bench as sb  # noqa: E402


def _fake_server(refuse_every: int = 0) -> tuple[httpx.AsyncClient, dict[str, Any]]:
    seen: dict[str, Any] = {"requests": 0, "in_flight": 0, "peak": 0, "texts": []}

    async def handler(request: httpx.Request) -> httpx.Response:
        seen["requests"] += 1
        seen["in_flight"] += 1
        seen["peak"] = max(seen["peak"], seen["in_flight"])
        await asyncio.sleep(0)  # let the other clients in, so concurrency is real
        seen["in_flight"] -= 1
        texts = httpx.Response(200, content=request.content).json()["texts"]
        seen["texts"].append(texts)
        if refuse_every and seen["requests"] % refuse_every == 0:
            return httpx.Response(429, json={"error": {"type": "too_many_requests"}})
        return httpx.Response(200, json={"predictions": [{"label": "fresh"} for _ in texts]})

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://bench.invalid")
    return client, seen


def test_load_stops_at_its_request_count_and_counts_every_status() -> None:
    payloads = sb.make_payloads([f"text {i}" for i in range(10)], per_request=3, n=5)
    client, seen = _fake_server(refuse_every=4)

    async def go() -> dict[str, Any]:
        async with client:
            return await sb.run_load(client, payloads, concurrency=4, max_requests=21, max_seconds=600)

    out = asyncio.run(go())
    assert out["issued"] == seen["requests"] == 21
    assert out["statuses"] == {"200": 16, "429": 5}
    assert out["ok"] == 16 and out["errors"] == 0
    assert 1 < seen["peak"] <= 4
    # bodies cycle through the payloads in order
    assert seen["texts"][:6] == [p["texts"] for p in payloads] + [payloads[0]["texts"]]
    assert out["rps"] is not None and out["rps"] > 0 and out["p50_ms"] <= out["p99_ms"]


def test_load_issues_nothing_once_its_time_is_up() -> None:
    payloads = sb.make_payloads(["a"], 1, 1)
    client, seen = _fake_server()
    ticks = iter([0.0, 0.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0])  # t0, then one request, then past the end

    async def go() -> dict[str, Any]:
        async with client:
            return await sb.run_load(client, payloads, 1, 100, max_seconds=1.0, clock=lambda: next(ticks))

    out = asyncio.run(go())
    assert out["issued"] == seen["requests"] == 1 and out["ok"] == 1


def test_load_counts_a_failed_connection_as_an_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async def go() -> dict[str, Any]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://x") as c:
            return await sb.run_load(c, sb.make_payloads(["a"], 1, 1), 2, 6, 600)

    out = asyncio.run(go())
    assert out["errors"] == 6 and out["ok"] == 0 and out["rps"] is None and out["p99_ms"] is None


def test_payloads_and_percentiles() -> None:
    assert sb.make_payloads(["a", "b", "c"], 2, 3) == [
        {"texts": ["a", "b"]},
        {"texts": ["c", "a"]},
        {"texts": ["b", "c"]},
    ]
    with pytest.raises(ValueError):
        sb.make_payloads([], 2, 3)
    assert sb.percentile([], 50) is None
    assert sb.percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert sb.percentile([1.0, 2.0], 50) == pytest.approx(1.5)
    assert sb.percentile(list(range(101)), 99) == pytest.approx(99.0)


def test_batch_stats_from_two_scrapes_of_real_serve_metrics() -> None:
    from tuneproof.serve.metrics import ServeMetrics

    m = ServeMetrics([])
    m.batch_texts.observe(4)
    before = sb.batch_counters(m.render().decode())
    for texts, requests, seconds in ((32, 8, 0.2), (16, 4, 0.1)):
        m.batch_texts.observe(texts)
        m.batch_requests.observe(requests)
        m.batch_duration.observe(seconds)
    after = sb.batch_counters(m.render().decode())
    stats = sb.batch_stats(before, after)
    assert stats["batches"] == 2
    assert stats["texts_per_batch"] == pytest.approx(24.0)
    assert stats["requests_per_batch"] == pytest.approx(6.0)
    assert stats["batch_ms"] == pytest.approx(150.0)
    assert sb.batch_stats(after, after)["texts_per_batch"] is None


def _load(arm: str, c: int, rps: float, p99: float, rep: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "arm": arm,
        "concurrency": c,
        "rep": rep,
        "ok": 10,
        "statuses": {"200": 10, **extra.pop("statuses", {})},
        "errors": 0,
        "rps": rps,
        "texts_per_s": 4 * rps,
        "p50_ms": p99 / 2,
        "p99_ms": p99,
        "loadavg_1m": 1.0,
        **extra,
    }


def test_summary_takes_medians_over_repeats_and_decides_the_target() -> None:
    batching = {"requests_per_batch": 8.0, "texts_per_batch": 32.0, "batch_ms": 50.0}
    loads = [
        _load("tuneproof", 32, 300.0, 100.0, 0, batching=batching),
        _load("tuneproof", 32, 340.0, 120.0, 1, batching=batching),
        _load("tuneproof", 32, 320.0, 110.0, 2, batching=batching),
        _load("one-by-one", 32, 100.0, 400.0, server_cpu_ms_per_request=40.0),
        _load("plain", 32, 100.0, 900.0, statuses={"500": 2}),
    ]
    s = sb.summarize(loads, [32])
    assert s["table"]["tuneproof"]["32"]["rps"] == 320.0
    assert s["table"]["tuneproof"]["32"]["requests_per_batch"] == 8.0
    assert s["table"]["plain"]["32"]["non_200"] == {"500": 2}
    assert s["table"]["one-by-one"]["32"]["server_cpu_ms_per_request"] == 40.0
    assert s["table"]["plain"]["32"]["server_cpu_ms_per_request"] is None
    assert s["ratios"]["32"]["rps_vs_plain"] == pytest.approx(3.2)
    assert s["ratios"]["32"]["p99_vs_plain"] == pytest.approx(110 / 900)
    assert s["target"]["met"] is True
    # 2.9x is a miss, and so is 3x with a worse p99
    assert sb.summarize([*loads[:3], _load("plain", 32, 320 / 2.9, 900.0)], [32])["target"]["met"] is False
    assert sb.summarize([*loads[:3], _load("plain", 32, 100.0, 100.0)], [32])["target"]["met"] is False
    results = {
        "meta": {
            "mode": "quick",
            "started": "x",
            "run": "r",
            "model_precision": "bf16",
            "cpu": "cpu",
            "cpu_count": 2,
            "loadavg_start": 1.0,
            "loadavg_end": 2.0,
            "loadavg_during_max": 3.0,
            "label_agreement": {"tuneproof": 1.0, "plain": 0.98},
            "agreement_texts": 64,
        },
        "plan": {"texts_per_request": 4, "requests": 10, "seconds": 1.0, "repeats": 3, "threads": 2},
        "summary": s,
    }
    md = sb.render_markdown(results)
    assert "**met**" in md and "| 32 | 3.20 |" in md and "plain 0.980" in md and "500: 2" in md


def test_arms_interleave_and_bind_loopback(tmp_path: Path) -> None:
    firsts = {sb.order_for(rep, li)[0] for rep in range(2) for li in range(3)}
    assert firsts == set(sb.ARMS)
    assert all(sorted(sb.order_for(r, i)) == sorted(sb.ARMS) for r in range(3) for i in range(3))
    one = sb.server_command("one-by-one", tmp_path, 9, deployable=True)
    assert one[one.index("--host") + 1] == "127.0.0.1"
    assert one[one.index("--batch-max-texts") + 1] == "1" and "--allow-rejected" not in one
    assert "--batch-max-texts" not in sb.server_command("tuneproof", tmp_path, 9, deployable=False)
    assert "--allow-rejected" in sb.server_command("tuneproof", tmp_path, 9, deployable=False)
    with pytest.raises(ValueError):
        sb.server_command("nope", tmp_path, 9, True)


def test_plain_server_answers_one_prediction_per_text(tmp_path: Path, tiny_bert: Path) -> None:
    from fastapi.testclient import TestClient
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from benchmarks.serve_plain import create_plain_app

    model_dir = tmp_path / "model"
    AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2).save_pretrained(model_dir)
    AutoTokenizer.from_pretrained(tiny_bert).save_pretrained(model_dir)
    with TestClient(create_plain_app(model_dir)) as client:
        r = client.post("/predict", json={"texts": ["good film", "bad plot", "the story"]})
    assert r.status_code == 200
    preds = r.json()["predictions"]
    assert len(preds) == 3 and all(set(p) == {"label", "score"} for p in preds)
