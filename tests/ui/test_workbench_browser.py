"""The workbench as a person uses it, in a real headless Chromium against `tuneproof ui` on loopback.

One project, in order: pick the data file and columns, build the protocol in the form (a validation
error appears at its field and goes when fixed), save it, run it and watch it reach done, open the
report; then start a second run, close the browser and stop the UI mid-run and check that the run
still finishes; then compare the two runs and try the model. Screenshots of each screen go to
$TUNEPROOF_UI_SCREENSHOTS when set (scripts/ui_screenshots.sh writes docs/ui/ with it).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers_ui import TINY_SETTINGS, make_project

from tuneproof.protocol import load_protocol
from tuneproof.ui import jobs

pytestmark = pytest.mark.integration
RUN_TIMEOUT_MS = 150_000
ROOT = Path(__file__).parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class UiServer:
    def __init__(self, project: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tuneproof", "ui", "--project", str(project), "--port", str(self.port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(self.url + "/static/ui.css", timeout=2).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"tuneproof ui did not start: {self.proc.stderr.read()!r}") from None
                time.sleep(0.3)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # Ctrl-C, as a person stops it
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_project(tmp_path_factory.mktemp("workbench"))


@pytest.fixture
def ui(project: Path) -> Iterator[UiServer]:
    server = UiServer(project)
    yield server
    server.stop()


def _shot(page: Any, name: str, full_page: bool = True) -> None:
    folder = os.environ.get("TUNEPROOF_UI_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=full_page)


def _field(page: Any, path: str) -> Any:
    """The form's input for a protocol key, its collapsed sections opened as a person would."""
    field = page.locator(f'[data-path="{path}"]')
    field.evaluate(
        "e => { for (let d = e.closest('details'); d; d = d.parentElement.closest('details')) "
        "d.open = true; }"
    )
    return field


def _problem(page: Any, path: str) -> Any:
    return page.locator(f'.field [data-problem-for="{path}"]')


def _wait_finished(page: Any) -> None:
    page.wait_for_function(
        "['passed', 'rejected'].includes(document.querySelector('#status').textContent)",
        timeout=RUN_TIMEOUT_MS,
    )


def test_build_a_protocol_run_it_and_read_the_report(browser: Any, ui: UiServer, project: Path) -> None:
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    context.set_default_timeout(30_000)
    page = context.new_page()
    try:
        # Data: the file, its real columns, the label distribution, what validate says.
        page.goto(ui.url + "/data")
        page.select_option("#data-file", "reviews.csv")
        page.wait_for_selector("#label-table")
        assert page.locator("#text-column option").all_inner_texts() == ["text", "label", "genre"]
        assert page.input_value("#text-column") == "text" and page.input_value("#label-column") == "label"
        labels = page.inner_text("#label-table")
        assert "pos" in labels and "neg" in labels and "%)" in labels
        page.click("#data-check")
        page.wait_for_selector("#data-problems .problems.none >> text=data: no problems", timeout=60_000)
        _shot(page, "data")

        # Protocol: the template from those columns, a live error at its field, fixed, saved.
        page.click("#to-protocol")
        page.wait_for_url("**/protocol?from=data")
        page.wait_for_function("document.querySelector('#yaml').textContent.includes('reviews.csv')")
        page.select_option('[data-variant-for="model.source"]', label="text")  # a folder, not {package, path}
        _field(page, "model.source").fill("tiny-bert")
        for path, value in TINY_SETTINGS.items():
            _field(page, path).fill(value)
        _field(page, "train.precision").select_option('"fp32"')
        _field(page, "train.scheduler").select_option('"constant"')
        _field(page, "train.learning_rate").fill("-1")
        problem = _problem(page, "train.learning_rate")
        problem.wait_for(state="visible")
        assert "greater than 0" in problem.inner_text()
        assert "invalid" in (_field(page, "train.learning_rate").get_attribute("class") or "")
        _field(page, "train.learning_rate").scroll_into_view_if_needed()
        _shot(page, "protocol-error", full_page=False)
        _field(page, "train.learning_rate").fill("0.003")
        problem.wait_for(state="hidden")
        page.wait_for_selector("#problem-count .problems.none")
        assert "learning_rate: 0.003" in page.inner_text("#yaml")
        page.fill("#save-name", "ui-a.yaml")
        page.click("#save")
        page.wait_for_selector("#saved", timeout=60_000)
        assert "validate: no problems" in page.inner_text("#save-status")
        _shot(page, "protocol", full_page=False)
        saved = yaml.safe_load((project / "ui-a.yaml").read_text())
        assert saved["model"]["source"] == "tiny-bert" and saved["train"]["learning_rate"] == 0.003
        assert load_protocol(project / "ui-a.yaml").protocol.data.text_column == "text"

        # Run: start it, watch stage/step/loss to done, open its report inside the workbench.
        page.goto(ui.url + "/run")
        page.select_option("#protocol-file", "ui-a.yaml")
        page.click("#start")
        page.wait_for_selector("#job:not([hidden])")
        _wait_finished(page)
        assert page.inner_text("#stage") == "done"
        assert page.inner_text("#step").endswith(page.inner_text("#step").split("/")[-1])
        assert page.locator("#curves svg polyline").count() == 1
        _shot(page, "run")
        page.click("#open-report")
        page.wait_for_url("**/view/runs/**")
        frame = page.frame_locator("#report-frame")
        frame.locator("#gates").wait_for()
        assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")
        _shot(page, "report")
    finally:
        context.close()


def test_a_run_outlives_the_browser_and_the_ui_then_compare_and_try(
    browser: Any, project: Path, tmp_path: Path
) -> None:
    proto = yaml.safe_load((project / "ui-a.yaml").read_text())
    proto["train"]["epochs"] = 2  # B: less training on the same data and split
    (project / "ui-b.yaml").write_text(yaml.safe_dump(proto, sort_keys=False))

    first = UiServer(project)
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    context.set_default_timeout(30_000)
    try:
        page = context.new_page()
        page.goto(first.url + "/run")
        page.select_option("#protocol-file", "ui-b.yaml")
        page.click("#start")
        page.wait_for_selector("#job:not([hidden])", timeout=90_000)  # a fresh UI under load
        job_id = page.inner_text("#job-id")
        context.close()  # the tab goes away mid-run ...
    finally:
        first.stop()  # ... and so does the workbench (Ctrl-C)
    job = jobs.find_job(project, job_id)
    assert job is not None
    assert jobs.progress(project, job)["status"] in ("running", "starting")  # still going without either
    done = jobs.wait_for(project, job, {"passed", "rejected", "failed"}, timeout_s=RUN_TIMEOUT_MS / 1000)
    assert done["status"] in ("passed", "rejected"), done["log_tail"]
    manifest = json.loads((Path(done["run_dir"]) / "manifest.json").read_text())
    assert manifest["status"] == done["status"] and (Path(done["run_dir"]) / "model").is_dir()

    second = UiServer(project)
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    context.set_default_timeout(60_000)
    try:
        page = context.new_page()
        page.goto(second.url + "/runs")
        page.wait_for_selector("#runs-table input.pick")
        picks = page.locator("#runs-table input.pick")
        assert picks.count() == 2
        picks.nth(0).check()
        picks.nth(1).check()
        page.click("#compare")
        page.wait_for_selector("#compare-paired")
        paired = page.inner_text("#compare-paired")
        assert "accuracy" in paired and "macro_f1" in paired
        # A trained 8 epochs and learned; B stopped after 2, still on the plateau (fixed seeds, same rows).
        assert "A is better" in page.inner_text("#compare-paired tr:has-text('accuracy')")
        _shot(page, "runs")

        page.goto(second.url + "/try")
        passed = page.locator("#try-run option", has_text="(passed)").get_attribute("value")
        page.select_option("#try-run", passed)
        page.fill("#try-text", "a great and funny film, warm and moving")
        page.click("#try-go")
        page.wait_for_selector("#try-label")
        assert page.inner_text("#try-label") == "label: pos"
        _shot(page, "try")
    finally:
        context.close()
        second.stop()


def test_sft_protocol_from_list_and_union_widgets_run_compare_and_chat(
    browser: Any, ui: UiServer, project: Path
) -> None:
    from helpers_ui import SFT_SELECTS, SFT_SETTINGS, add_chat_files

    from tuneproof.ui.try_model import try_chat

    add_chat_files(project)
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    context.set_default_timeout(30_000)
    page = context.new_page()
    try:
        # Protocol: the sft template, edited through the list and union widgets, no JSON typed.
        page.goto(ui.url + "/protocol")
        page.wait_for_function("document.querySelector('#yaml').textContent.includes('task: classification')")
        page.select_option("#task", "sft")
        page.wait_for_function("document.querySelector('#yaml').textContent.includes('task: sft')")
        assert page.locator('[data-variant-for="model.source"] option:checked').inner_text() == "PackageFile"
        page.select_option('[data-variant-for="model.source"]', label="text")
        _field(page, "model.source").fill("llama")
        _field(page, "data.files[0]").fill("chat.jsonl")
        for path, value in SFT_SETTINGS.items():
            _field(page, path).fill(value)
        for path, value in SFT_SELECTS.items():
            _field(page, path).select_option(value)
        # A union: the removal limit as one number instead of per-stage limits.
        page.select_option('[data-variant-for="cleaning.max_removed_fraction"]', label="number")
        _field(page, "cleaning.max_removed_fraction").fill("0.5")
        # A list: drop the template's ROUGE-L gate, add a perplexity ceiling.
        page.click('[data-remove-for="gates[1]"]')
        page.click('[data-add-for="gates"]')
        problem = _problem(page, "gates[1].metric")
        problem.wait_for(state="visible")  # a new gate has no metric yet: the problem sits at its field
        assert "Field required" in problem.inner_text()
        _field(page, "gates[1].metric").fill("perplexity")
        _field(page, "gates[1].max").fill("1000000")
        problem.wait_for(state="hidden")
        page.wait_for_selector("#problem-count .problems.none")
        _shot(page, "protocol-sft", full_page=False)
        page.fill("#save-name", "sft-ui-a.yaml")
        page.click("#save")
        page.wait_for_selector("#saved", timeout=60_000)
        saved = yaml.safe_load((project / "sft-ui-a.yaml").read_text())
        assert saved["model"] == {"source": "llama", "max_length": 40}
        assert saved["cleaning"]["max_removed_fraction"] == 0.5
        assert saved["gates"] == [
            {"metric": "perplexity", "beats": "base_model"},
            {"metric": "perplexity", "max": 1000000},
        ]
        assert load_protocol(project / "sft-ui-a.yaml").protocol.train.max_steps is None

        # B: the same data and split, trained far less.
        weaker = {
            **saved,
            "name": "sft-ui-b",
            "train": {**saved["train"], "epochs": 1, "learning_rate": 0.0005},
        }
        (project / "sft-ui-b.yaml").write_text(yaml.safe_dump(weaker, sort_keys=False))

        # Run both (two detached processes), then compare them and chat with A.
        page.goto(ui.url + "/run")
        started = []
        for name in ("sft-ui-a.yaml", "sft-ui-b.yaml"):
            page.select_option("#protocol-file", name)
            page.click("#start")
            job_in_url = "new URLSearchParams(location.search).get('job')"
            previous = started[-1] if started else None
            page.wait_for_function(f"prev => {job_in_url} && {job_in_url} !== prev", arg=previous)
            started.append(page.evaluate(job_in_url))
        runs = {}
        for job_id in started:
            job = jobs.find_job(project, job_id)
            assert job is not None
            done = jobs.wait_for(
                project, job, {"passed", "rejected", "failed"}, timeout_s=RUN_TIMEOUT_MS / 1000
            )
            assert done["status"] in ("passed", "rejected"), done["log_tail"]
            runs[job_id] = Path(done["run_dir"])
        run_a = runs[started[0]].relative_to(project).as_posix()
        run_b = runs[started[1]].relative_to(project).as_posix()

        page.goto(ui.url + "/runs")
        page.check(f'#runs-table input.pick[value="{run_a}"]')
        page.check(f'#runs-table input.pick[value="{run_b}"]')
        page.click("#compare")
        page.wait_for_selector("#compare-paired")
        assert "sft runs" in page.inner_text("#compare-result")
        row = page.inner_text("#compare-paired tr:has-text('perplexity (lower is better)')")
        assert "A is better" in row  # 4 epochs at 0.01 against 1 epoch at 0.0005, fixed seeds, same rows
        assert "rouge_l" in page.inner_text("#compare-paired")
        _shot(page, "compare-sft")

        page.goto(ui.url + "/try")
        page.select_option("#try-run", run_a)
        page.wait_for_selector("#chat:not([hidden])", state="attached")  # an sft run is a chat
        assert page.inner_text("#try-go") == "Send"
        turns = ["what is the colour of the sky", "what is the colour of the grass"]
        for i, text in enumerate(turns):
            page.fill("#try-text", text)
            page.click("#try-go")
            page.locator("#chat-log .turn").nth(i).wait_for(timeout=90_000)
        model = page.locator("#chat-model-generation").all_inner_texts()
        base = page.locator("#chat-base-generation").all_inner_texts()
        _shot(page, "try-sft")
    finally:
        context.close()
    # The page shows what the try code answers for the same conversation (the model's first answer
    # carried into the second turn), and the base model answers differently from the fine-tuned one.
    first = try_chat(runs[started[0]], [{"role": "user", "content": turns[0]}])
    assert (model[0], base[0]) == (first["model"]["generation"], first["base"]["generation"])
    history = [
        {"role": "user", "content": turns[0]},
        {"role": "assistant", "content": model[0]},
        {"role": "user", "content": turns[1]},
    ]
    second = try_chat(runs[started[0]], history)
    assert (model[1], base[1]) == (second["model"]["generation"], second["base"]["generation"])
    assert model != base
