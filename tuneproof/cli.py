"""The command line: a thin table of commands, each a call into one stage. Nothing runs at import."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from tuneproof.errors import GateFailed, RunFolderChanged, TuneproofError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Run fine-tuning protocols with evidence.")

EXIT_OK = 0


def _fail(exc: TuneproofError) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(exc.exit_code)


@app.command()
def validate(
    protocols: Annotated[list[Path], typer.Argument(help="one or more protocol files")],
    no_data: Annotated[
        bool, typer.Option("--no-data", help="check the schema only, do not read the data")
    ] = False,
) -> None:
    """Check protocols (schema, model, gates and every data row) and report every problem at once.

    With several files, each is checked and reported; the exit code is 2 if any protocol is invalid,
    else 3 if any file's data is, else 0."""
    from tuneproof.errors import DataValidationError, ProtocolError
    from tuneproof.protocol.check import check_protocol_power

    worst: TuneproofError | None = None
    for protocol in protocols:
        _, problems, data_problems, power = check_protocol_power(protocol, read_data=not no_data)
        error: TuneproofError | None = None
        if problems:
            error = ProtocolError(problems + data_problems, str(protocol))
        elif data_problems:
            error = DataValidationError(data_problems, f"data of {protocol}")
        if error is not None:
            typer.echo(f"error: {error}", err=True)
            if worst is None or (isinstance(error, ProtocolError) and not isinstance(worst, ProtocolError)):
                worst = error
            continue
        if power is not None:
            for row in power["gates"]:
                line = row["warning"] and f"warning: {row['warning']}"
                typer.echo(
                    line
                    or f"power: {row['gate']}: minimum detectable effect {row['mde']:.3g} "
                    f"({power['confidence']:.0%}, {power['power']:.0%} power, "
                    f"{power['test_units']} test {power['unit']})"
                )
        typer.echo(f"{protocol}: valid")
    if worst is not None:
        raise typer.Exit(worst.exit_code)


@app.command("prepare-cluster")
def prepare_cluster(
    protocol: Annotated[Path, typer.Argument(help="the protocol file")],
    out: Annotated[Path, typer.Option(help="folder for <split>/*.parquet and data_report.json")],
    scheduler: Annotated[
        str | None,
        typer.Option(help="a running Dask scheduler (tcp://host:8786); default data.engine.scheduler"),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="workers of the local cluster started when no scheduler is given")
    ] = None,
) -> None:
    """Run the data stage alone on a Dask cluster (docs/performance.md, "On a cluster")."""
    from tuneproof.data.cluster.engine import dask_client
    from tuneproof.data.cluster.stage import prepare_on_cluster
    from tuneproof.protocol.loader import load_protocol
    from tuneproof.tasks.registry import task_spec

    try:
        loaded = load_protocol(protocol)
        spec = loaded.protocol.data.engine
        update = {"kind": "dask"} | ({"scheduler": scheduler} if scheduler else {})
        spec = spec.model_copy(update=update | ({"workers": workers} if workers else {}))
        with dask_client(spec) as client:
            stratify = task_spec(loaded.protocol.task).stratify
            report = prepare_on_cluster(loaded.protocol, loaded.base_dir, out, client, stratify)
    except TuneproofError as exc:
        _fail(exc)
        return
    rows = ", ".join(f"{s} {v['rows']}" for s, v in report["splits"].items())
    typer.echo(
        f"prepared on {report['engine']['workers']} workers: {rows}; report {out / 'data_report.json'}"
    )


@app.command()
def schema() -> None:
    """Print the protocol's JSON Schema (for editors: `# yaml-language-server: $schema=<file>`)."""
    from tuneproof.protocol.jsonschema import protocol_json_schema

    typer.echo(json.dumps(protocol_json_schema(), indent=2, ensure_ascii=False))


@app.command()
def init(
    data_file: Annotated[
        Path, typer.Argument(help="CSV, TSV, JSONL or Parquet file with a text and a label column")
    ],
    task: Annotated[
        str, typer.Option(help="the task (init writes classification protocols)")
    ] = "classification",
    output: Annotated[Path, typer.Option("--output", "-o", help="protocol file to write")] = Path(
        "protocol.yaml"
    ),
    text_column: Annotated[str | None, typer.Option(help="default: the longest text column")] = None,
    label_column: Annotated[
        str | None, typer.Option(help="default: the column with few distinct values")
    ] = None,
    labels: Annotated[
        str | None, typer.Option(help="comma-separated labels to keep (rows with others are left out)")
    ] = None,
    schema_ref: Annotated[
        str | None, typer.Option("--schema", help="file or URL for the yaml-language-server $schema line")
    ] = None,
    force: Annotated[bool, typer.Option(help="overwrite an existing file")] = False,
) -> None:
    """Write a starting protocol from a data file: its columns, labels, a split that fits its rows, and
    commented defaults. The protocol is validated (with its data) before it is written."""
    from tuneproof.errors import ProtocolError
    from tuneproof.fsutil import atomic_write_text
    from tuneproof.protocol.check import check_protocol
    from tuneproof.protocol.starter import starting_protocol

    if output.exists() and not force:
        typer.echo(f"error: {output} exists (--force overwrites it)", err=True)
        raise typer.Exit(1)
    keep = [x.strip() for x in labels.split(",") if x.strip()] if labels else None
    try:
        text = starting_protocol(
            data_file, output.parent, task, text_column, label_column, keep, schema=schema_ref
        )
        # Checked from a draft next to the target, so relative paths resolve as they will.
        draft = output.parent / f".{output.name}.draft"
        atomic_write_text(draft, text)
        try:
            _, problems = check_protocol(draft)
        finally:
            draft.unlink(missing_ok=True)
        if problems:
            raise ProtocolError(problems, f"written by init for {data_file}")
    except TuneproofError as exc:
        _fail(exc)
        return
    atomic_write_text(output, text)
    typer.echo(f"{output}: written and valid")


@app.command("prepare")
def prepare_cmd(
    protocol: Annotated[Path, typer.Argument(help="protocol file")],
    output_dir: Annotated[Path | None, typer.Option(help="parent folder of the prepared folder")] = None,
) -> None:
    """Run the data stage alone: write the data report and the prepared splits. Exit 3 on bad data."""
    from tuneproof.prepare_stage import prepare

    try:
        outcome = prepare(protocol, output_dir=output_dir)
    except TuneproofError as exc:
        _fail(exc)
        return
    rows = " ".join(f"{k}={v['rows']}" for k, v in outcome.prepared.report["splits"].items())
    typer.echo(f"{outcome.folder}\n{rows} ({outcome.seconds:.1f} s)")


@app.command("run")
def run_cmd(
    protocol: Annotated[Path | None, typer.Argument(help="protocol file")] = None,
    resume: Annotated[Path | None, typer.Option(help="resume the unfinished run in this folder")] = None,
    output_dir: Annotated[Path | None, typer.Option(help="parent folder of the run folder")] = None,
    fresh: Annotated[bool, typer.Option(help="start a new run even if an unfinished one exists")] = False,
    processes: Annotated[
        int,
        typer.Option(
            min=1,
            help="data-parallel processes on this machine (DDP, or FSDP with --fsdp); with a search section: "
            "trial workers",
        ),
    ] = 1,
    fsdp: Annotated[
        bool,
        typer.Option(
            "--fsdp",
            help="shard parameters, gradients and optimizer state over the processes (accelerate's FSDP2)",
        ),
    ] = False,
) -> None:
    """Run a protocol: prepare -> train -> evaluate -> gates -> package. Exit 4 when a gate fails."""
    from tuneproof.runner import run
    from tuneproof.train import distributed

    if (protocol is None) == (resume is None):
        typer.echo("error: give a protocol file or --resume RUN_DIR", err=True)
        raise typer.Exit(2)
    source = protocol if protocol is not None else resume / "protocol.source.yaml"  # type: ignore[operator]
    has_search = _has_search(source)
    if fsdp and has_search:
        typer.echo("error: --fsdp trains one model; a search runs its trials as separate processes", err=True)
        raise typer.Exit(2)
    if fsdp:  # the variables `accelerate launch --use_fsdp` exports; ranks launched below inherit them
        os.environ.update(distributed.fsdp_launch_env())
    if processes > 1 and not has_search and distributed.world_size() == 1:
        # Re-run this same command as N ranks; each rank sees WORLD_SIZE/RANK and trains its share.
        argv = ["run", *([str(protocol)] if protocol else []), *_run_options(resume, output_dir, fresh)]
        raise typer.Exit(distributed.launch_local(argv, processes))
    try:
        outcome = run(
            protocol,
            output_dir=output_dir,
            resume_dir=resume,
            fresh=fresh,
            search_workers=processes if has_search else 1,
        )
    except TuneproofError as exc:
        _fail(exc)
        return
    if not distributed.is_main():
        return
    typer.echo(str(outcome.run_dir))
    if outcome.status != "passed":
        failed = outcome.gates.failed if outcome.gates is not None else []
        # A gate the test split is too small to decide is not a model that lost: say which it is.
        undecidable = outcome.gates.undecidable if outcome.gates is not None else []
        parts = [f"gates failed: {'; '.join(failed)}"] if failed else []
        if undecidable:
            parts.append(f"gates undecidable on this test split (too few rows): {'; '.join(undecidable)}")
        _fail(GateFailed(f"run rejected, {', '.join(parts)} (model kept, not deployable)"))


def _has_search(path: Path) -> bool:
    from tuneproof.protocol import load_protocol

    try:
        return load_protocol(path).protocol.search is not None
    except TuneproofError:
        return False  # the run itself reports the problem


def _run_options(resume: Path | None, output_dir: Path | None, fresh: bool) -> list[str]:
    out = ["--resume", str(resume)] if resume is not None else []
    out += ["--output-dir", str(output_dir)] if output_dir is not None else []
    return out + (["--fresh"] if fresh else [])


@app.command("search-worker")
def search_worker(
    protocol: Annotated[Path, typer.Argument(help="the same protocol file the leading `tuneproof run` runs")],
    storage: Annotated[str | None, typer.Option(help="Optuna RDB storage URL of the study")] = None,
    study_name: Annotated[str | None, typer.Option(help="default: derived from the protocol")] = None,
    seed: Annotated[int | None, typer.Option(help="sampler seed of this worker")] = None,
    base_dir: Annotated[
        Path | None, typer.Option(help="folder the protocol's relative paths start from; default its own")
    ] = None,
) -> None:
    """Join a protocol's search and run trials until its budget is spent (no run folder; test never read)."""
    from tuneproof.search.entry import run_worker

    try:
        run_worker(protocol, storage=storage, study_name=study_name, seed=seed, base_dir=base_dir)
    except TuneproofError as exc:
        _fail(exc)


@app.command()
def predict(
    run_dir: Path,
    input: Annotated[
        Path,
        typer.Option(
            "--input", "-i", help="JSONL with a 'text' field, plain text lines, or an image file or folder"
        ),
    ],
    text_field: str = "text",
    batch_size: int = 64,
    backend: Annotated[
        str, typer.Option(help="torch (the packaged model), or onnx / onnx-int8 (the run's export)")
    ] = "torch",
) -> None:
    """Predict with a run's model: one JSON line per input, in input order."""
    from tuneproof.serve.predict import Predictor, read_inputs

    if _is_image_input(input):
        _predict_images(run_dir, input, batch_size)
        return
    try:
        if backend not in ("torch", "onnx", "onnx-int8"):
            raise TuneproofError(f"--backend {backend!r}: use torch, onnx or onnx-int8")
        texts = read_inputs(input, text_field)
        predictor = Predictor.load(run_dir, batch_size=batch_size, backend=backend)
    except TuneproofError as exc:
        _fail(exc)
        return
    for start in range(0, len(texts), 1024):  # bounded memory on large inputs
        for rec in predictor.predict(texts[start : start + 1024]):
            sys.stdout.write(json.dumps(rec, ensure_ascii=False) + "\n")


def _is_image_input(path: Path) -> bool:
    from tuneproof.data.images import IMAGE_SUFFIXES

    return path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES


def _predict_images(run_dir: Path, input: Path, batch_size: int) -> None:
    """An image file or a folder of them: one JSON line per image, with its file, sorted by path."""
    from tuneproof.serve.predict import Predictor, predict_images, read_image_inputs

    try:
        files = read_image_inputs(input)
        predictor = Predictor.load(run_dir, batch_size=batch_size)
        for start in range(0, len(files), 256):  # bounded memory on large folders
            chunk = files[start : start + 256]
            recs = predict_images(predictor, [str(f) for f in chunk], [f.read_bytes() for f in chunk])
            for f, rec in zip(chunk, recs, strict=True):
                sys.stdout.write(json.dumps({"file": str(f), **rec}, ensure_ascii=False) + "\n")
    except TuneproofError as exc:
        _fail(exc)


@app.command()
def suggest(
    run_dir: Path,
    pool: Annotated[
        Path, typer.Option("--pool", help="unlabelled texts: JSONL with a 'text' field, or lines")
    ],
    n: Annotated[int, typer.Option("--n", min=1, help="how many texts to suggest")] = 100,
    out: Annotated[Path, typer.Option("--out", help="the file to label (JSONL, 'label' left empty)")] = Path(
        "to-label.jsonl"
    ),
    method: Annotated[str, typer.Option(help="margin or entropy (uncertainty sampling)")] = "margin",
    text_field: str = "text",
) -> None:
    """Rank unlabelled texts for annotation by the run's model: the least certain first."""
    from tuneproof.suggest import METHODS
    from tuneproof.suggest import suggest as run_suggest

    if method not in METHODS:
        typer.echo(f"error: --method must be one of {', '.join(METHODS)}", err=True)
        raise typer.Exit(2)
    try:
        summary = run_suggest(run_dir, pool, n, out, method, text_field)  # type: ignore[arg-type]
    except TuneproofError as exc:
        _fail(exc)
        return
    typer.echo(
        f"wrote {summary['written']} of {summary['ranked']} candidate texts to {summary['out']} "
        f"({summary['method']}; {summary['duplicates_or_seen']} duplicates or texts the run already used "
        "left out)"
    )


@app.command()
def export(
    run_dir: Path,
    format: Annotated[
        list[str] | None,
        typer.Option(
            "--format", "-f", help="onnx, onnx-int8 or merged (repeat for several); default: the protocol's"
        ),
    ] = None,
) -> None:
    """Export a finished run's model, re-evaluate each export on the test split and gate it.
    Exit 4 when an export gate failed (the export is kept, marked not released)."""
    from tuneproof.export.stage import export_run

    try:
        outcomes = export_run(run_dir, format)
    except TuneproofError as exc:
        _fail(exc)
        return
    for o in outcomes:
        typer.echo(f"{o.format}: {'released' if o.released else 'NOT released'} {o.folder}")
    failed = [o.format for o in outcomes if not o.verification.gates.passed]
    if failed:
        _fail(GateFailed(f"export gate(s) failed for {', '.join(failed)}; see {run_dir}/report.html"))


@app.command()
def show(run_dir: Path) -> None:
    """Summarise a run in the terminal: data, metrics with intervals, gate verdicts."""
    from tuneproof.federated.report import is_federation, summary_text
    from tuneproof.report import summarize

    if not (run_dir / "manifest.json").is_file():
        typer.echo(f"error: {run_dir} is not a run folder", err=True)
        raise typer.Exit(8)
    typer.echo(summary_text(run_dir) if is_federation(run_dir) else summarize(run_dir))


@app.command()
def verify(run_dir: Path) -> None:
    """Re-hash a run folder and say whether anything changed since it was written."""
    from tuneproof.export.manifest import verify as verify_run
    from tuneproof.federated.report import is_federation, verify_federation

    try:
        diff = verify_federation(run_dir) if is_federation(run_dir) else verify_run(run_dir)
    except TuneproofError as exc:
        _fail(exc)
        return
    changed = 0
    for kind, files in diff.items():
        for f in files:
            changed += 1
            typer.echo(f"{kind}: {f}")
    if changed:
        _fail(RunFolderChanged(f"{run_dir}: {changed} file(s) differ from the manifest"))
    typer.echo(f"{run_dir}: every file matches its manifest hash")


@app.command()
def monitor(
    run_dir: Path,
    window: Annotated[
        Path, typer.Option(help="captured JSONL folder from serve, or a JSONL / CSV / Parquet file of texts")
    ],
    labels: Annotated[
        Path | None, typer.Option(help="labels for the window (joined on 'id', else row by row)")
    ] = None,
    window_size: Annotated[
        int | None, typer.Option(min=20, help="rows to compare (default: the protocol's monitor.window)")
    ] = None,
    text_column: str = "text",
    label_column: str = "label",
) -> None:
    """Compare a production window with the run's reference. Exit 13 on drift, 14 when labelled
    feedback shows the model worse than at release; the report goes to RUN/monitoring/."""
    from tuneproof.errors import DriftDetected, PerformanceDegraded
    from tuneproof.monitor.check import monitor_run

    try:
        result = monitor_run(run_dir, window, labels, window_size, text_column, label_column)
    except TuneproofError as exc:
        _fail(exc)
        return
    report = result.report
    for t in report["drift"]["tests"]:
        p = "n/a" if t["p_value"] is None else f"{t['p_value']:.3g}"
        flag = "ALARM" if t["alarm"] else ("quiet" if t["alarm_on"] else "reported")
        typer.echo(f"{t['name']:<17} p={p:<9} {flag}  ({t['method']})")
    for name, m in ((report.get("performance") or {}).get("metrics") or {}).items():
        d = m.get("difference") or {}
        typer.echo(
            f"{name:<17} window - release {d.get('diff')} [{d.get('low')}, {d.get('high')}]: {m['verdict']}"
        )
    typer.echo(f"report: {result.out_dir}")
    if result.degraded:
        bad = ", ".join(report["performance"]["degraded"])
        _fail(PerformanceDegraded(f"labelled feedback: worse than at release on {bad}"))
    if result.drift:
        _fail(DriftDetected(f"drift detected by {', '.join(report['drift']['alarming_tests'])}"))


@app.command()
def serve(
    run_dir: Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_keys_env: Annotated[
        str | None, typer.Option(help="environment variable holding comma-separated API keys")
    ] = None,
    api_keys_file: Annotated[
        Path | None, typer.Option(help="file of SHA-256 hex digests of API keys, one per line")
    ] = None,
    allow_rejected: Annotated[
        bool, typer.Option("--allow-rejected", help="serve a model whose gates failed (responses say so)")
    ] = False,
    max_body_bytes: int = 1_048_576,
    max_texts: int = 64,
    max_chars_per_text: int = 4000,
    max_concurrent: int = 64,
    queue_deadline_s: float = 2.0,
    request_timeout_s: float = 30.0,
    max_new_tokens: int = 256,
    max_images: Annotated[int, typer.Option(help="image models: images per request")] = 16,
    max_image_bytes: Annotated[int, typer.Option(help="image models: encoded bytes per image")] = 1_048_576,
    max_image_pixels: Annotated[
        int, typer.Option(help="image models: width x height per image, checked before decoding")
    ] = 16_777_216,
    image_formats: Annotated[
        str, typer.Option(help="image models: comma-separated Pillow formats accepted")
    ] = "PNG,JPEG,WEBP,BMP,GIF",
    batch_window_ms: float = 4.0,
    batch_max_texts: int = 256,
    batch_max_padded_tokens: int = 16384,
    capture: Annotated[
        Path | None, typer.Option(help="write PII-scrubbed inputs and predictions (JSONL) to this folder")
    ] = None,
    capture_max_file_bytes: int = 64 * 1024 * 1024,
    capture_max_files: int = 50,
    drift_window: Annotated[
        int | None,
        typer.Option(
            min=1, help="recent texts behind the drift gauges (default: the protocol's monitor.window)"
        ),
    ] = None,
    backend: Annotated[
        str, typer.Option(help="torch (the packaged model), or onnx / onnx-int8 (the run's released export)")
    ] = "torch",
) -> None:
    """Serve a run's model over HTTP: POST /predict (or /v1/chat/completions for sft; images also
    POST /predict/upload), /health, /ready, /metrics. API keys are required unless binding to loopback."""
    from pydantic import ValidationError

    from tuneproof.serve.auth import ApiKeys
    from tuneproof.serve.server import serve as run_server
    from tuneproof.serve.settings import Batching, Capture, Limits, ServeConfigError, ServeSettings

    try:
        settings = ServeSettings(
            limits=Limits(
                max_body_bytes=max_body_bytes,
                max_texts=max_texts,
                max_chars_per_text=max_chars_per_text,
                max_concurrent=max_concurrent,
                queue_deadline_s=queue_deadline_s,
                request_timeout_s=request_timeout_s,
                max_new_tokens=max_new_tokens,
                max_images=max_images,
                max_image_bytes=max_image_bytes,
                max_image_pixels=max_image_pixels,
                image_formats=tuple(f.strip().upper() for f in image_formats.split(",") if f.strip()),
            ),
            batching=Batching(
                window_ms=batch_window_ms,
                max_texts=batch_max_texts,
                max_padded_tokens=batch_max_padded_tokens,
            ),
            capture=Capture(
                folder=capture, max_file_bytes=capture_max_file_bytes, max_files=capture_max_files
            )
            if capture is not None
            else None,
            allow_rejected=allow_rejected,
            backend=backend,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        _fail(ServeConfigError(f"{'.'.join(str(x) for x in first['loc'])}: {first['msg']}"))
        return
    try:
        keys = ApiKeys.load(api_keys_env, api_keys_file) if (api_keys_env or api_keys_file) else None
        run_server(run_dir, host, port, settings, keys, drift_window=drift_window)
    except TuneproofError as exc:
        _fail(exc)


@app.command()
def ui(
    project: Annotated[
        Path, typer.Option(help="project folder: every file the browser reads or writes")
    ] = Path("."),
    host: str = "127.0.0.1",
    port: int = 8765,
    api_keys_env: Annotated[
        str | None, typer.Option(help="environment variable holding comma-separated access keys")
    ] = None,
    api_keys_file: Annotated[
        Path | None, typer.Option(help="file of SHA-256 hex digests of access keys, one per line")
    ] = None,
) -> None:
    """A browser workbench: data, protocol form, runs that outlive the browser, comparison, try.
    Binds to 127.0.0.1; binding elsewhere needs access keys (as for `serve`)."""
    from tuneproof.serve.auth import ApiKeys
    from tuneproof.serve.server import check_binding
    from tuneproof.ui.server import serve_ui

    try:
        keys = ApiKeys.load(api_keys_env, api_keys_file) if (api_keys_env or api_keys_file) else None
        if not project.is_dir():
            raise TuneproofError(f"{project} is not a folder")
        check_binding(host, keys)
        typer.echo(f"tuneproof ui: http://{host}:{port}/ (project {project.resolve()})")
        serve_ui(project, host, port, keys)
    except TuneproofError as exc:
        _fail(exc)


@app.command()
def federate(
    protocol: Annotated[Path, typer.Argument(help="protocol file with a federated section")],
    run_dir: Annotated[Path, typer.Option(help="the server's run folder (an existing one resumes)")],
    sites_root: Annotated[
        Path, typer.Option(help="on one machine: the sites' folders are SITES_ROOT/sites/<name>")
    ] = Path("."),
    python: Annotated[
        str | None, typer.Option(help="interpreter of the environment with flwr (default: this one)")
    ] = None,
    timeout: Annotated[float, typer.Option(help="seconds before giving up on the federation")] = 3600.0,
    simulation: Annotated[
        bool,
        typer.Option(help="run the sites on Flower's simulation engine (Ray) instead of as processes"),
    ] = False,
) -> None:
    """Run a federation on this machine as real Flower processes (SuperLink, one SuperNode per site)
    on 127.0.0.1, or with --simulation on Flower's simulation engine (needs flwr[simulation]); across
    machines, start the processes by hand: docs/federated.md. Exit 4 when a gate fails, 17 when the
    federation fails."""
    from tuneproof.federated.launch import run_local

    try:
        state = run_local(
            protocol,
            run_dir,
            sites_root,
            python=python or sys.executable,
            timeout=timeout,
            simulation=simulation,
        )
    except TuneproofError as exc:
        _fail(exc)
        return
    typer.echo(str(run_dir))
    if state.get("status") == "failed":
        from tuneproof.errors import FederationFailed

        _fail(FederationFailed(str(state.get("error"))))
    if state.get("status") != "passed":
        _fail(GateFailed("federation rejected: see gates.json (model kept, not deployable)"))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
