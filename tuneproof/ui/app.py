"""The workbench app: pages (Jinja2, server-rendered) and the JSON routes their JavaScript calls.

Every route calls a function the CLI also calls: profile_file / check_protocol_parts (validate),
starting_protocol (init), protocol_json_schema (schema), `tuneproof run` as a process (run), the run
folder's evidence (show), Predictor (predict). Paths are confined to the project folder.

Safety of a local app that starts processes: the Host header must name this server (a page on another
site cannot reach it through DNS rebinding), every state-changing request must carry the
``X-Tuneproof-UI`` header (a cross-site form cannot set it), and off loopback an access key is
required: a ``Bearer`` key as for ``serve``, or a session cookie issued by /login for that key.
"""

# No `from __future__ import annotations`: FastAPI reads the request models' annotations at runtime.

import secrets
from pathlib import Path
from typing import Any

import yaml
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ConfigDict

from tuneproof import __version__
from tuneproof.errors import PathOutsideProject, Problem, TuneproofError
from tuneproof.serve.auth import ApiKeys
from tuneproof.ui import jobs
from tuneproof.ui.paths import confine, relative, walk

HERE = Path(__file__).parent
DATA_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".ndjson", ".parquet", ".txt", ".conll")
COMPRESSED = (".gz", ".bz2", ".xz")
MAX_UPLOAD_BYTES = 256 * 1024 * 1024
SESSION_COOKIE = "tuneproof_ui_session"
PAGES = ("data", "protocol", "run", "runs", "try")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataChoice(_Body):
    path: str
    text_column: str
    label_column: str
    labels: list[str] | None = None


class ProtocolBody(_Body):
    protocol: dict[str, Any]


class SaveBody(_Body):
    path: str
    protocol: dict[str, Any]


class StartBody(_Body):
    protocol: str


class ResumeBody(_Body):
    run: str


class ChatMessage(_Body):
    role: str
    content: str


class TryBody(_Body):
    run: str
    text: str = ""
    messages: list[ChatMessage] | None = None  # an sft chat so far, ending with the user's turn
    with_base: bool = True


class LoginBody(_Body):
    key: str


def is_data_file(path: Path) -> bool:
    name = path.name.lower()
    for c in COMPRESSED:
        name = name.removesuffix(c)
    return name.endswith(DATA_SUFFIXES)


def _problems(problems: list[Problem]) -> list[dict[str, str]]:
    return [{"where": p.where, "message": p.message} for p in problems]


def create_ui_app(project: Path, keys: ApiKeys | None = None, allowed_hosts: tuple[str, ...] = ()) -> FastAPI:
    project = project.resolve()
    app = FastAPI(title="tuneproof ui", version=__version__, docs_url=None, redoc_url=None, openapi_url=None)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.autoescape = True  # the .j2 suffix is not on select_autoescape's list
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    sessions: set[str] = set()
    hosts = {"127.0.0.1", "localhost", "[::1]", *allowed_hosts}

    def authorised(request: Request) -> bool:
        if not keys:
            return True
        if keys.check(request.headers.get("authorization")):
            return True
        return request.cookies.get(SESSION_COOKIE, "") in sessions

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        host = (request.headers.get("host") or "").rsplit(":", 1)[0]
        if host not in hosts:
            return JSONResponse({"error": f"host {host!r} is not this server"}, 421)
        path = request.url.path
        if request.method not in ("GET", "HEAD") and request.headers.get("x-tuneproof-ui") != "1":
            return JSONResponse({"error": "missing X-Tuneproof-UI header"}, 403)
        if (
            not authorised(request)
            and path not in ("/login", "/api/login")
            and not path.startswith("/static/")
        ):
            if path.startswith("/api/"):
                return JSONResponse({"error": "an access key is required"}, 401)
            return RedirectResponse("/login", 303)
        response: Response = await call_next(request)
        return response

    @app.exception_handler(PathOutsideProject)
    async def refused(request: Request, exc: PathOutsideProject) -> Response:
        return JSONResponse({"error": str(exc)}, 403)

    @app.exception_handler(TuneproofError)
    async def failed(request: Request, exc: TuneproofError) -> Response:
        problems = getattr(exc, "problems", [])
        return JSONResponse({"error": str(exc), "problems": _problems(problems)}, 422)

    def page(request: Request, name: str, **context: Any) -> Response:
        return templates.TemplateResponse(
            request, f"{name}.html.j2", {"page": name, "pages": PAGES, "project": str(project), **context}
        )

    @app.get("/")
    def index() -> Response:
        return RedirectResponse("/data", 303)

    @app.get("/login")
    def login_page(request: Request) -> Response:
        return page(request, "login")

    @app.post("/api/login")
    def login(body: LoginBody) -> Response:
        if not keys or not keys.check(f"Bearer {body.key}"):
            return JSONResponse({"error": "wrong key"}, 401)
        token = secrets.token_urlsafe(32)
        sessions.add(token)
        response = JSONResponse({"ok": True})
        response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="strict")
        return response

    for name in PAGES:

        def show(request: Request, _name: str = name) -> Response:
            return page(request, _name)

        app.add_api_route(f"/{name}", show, methods=["GET"])

    # -- Data ---------------------------------------------------------------------------------------
    @app.get("/api/files")
    def files(kind: str = "data") -> dict[str, Any]:
        found = walk(project)
        if kind == "protocol":
            # A run folder's protocol.yaml is a record of what ran, not a protocol to start from.
            chosen = [
                p
                for p in found
                if p.suffix in (".yaml", ".yml") and not (p.parent / "manifest.json").is_file()
            ]
        else:
            chosen = [p for p in found if is_data_file(p) and jobs.JOBS not in relative(project, p)]
        return {"files": [relative(project, p) for p in chosen]}

    @app.post("/api/upload")
    async def upload(request: Request, name: str) -> dict[str, Any]:
        safe = Path(name).name
        if not safe or not is_data_file(Path(safe)):
            raise HTTPException(422, f"{name!r}: upload a CSV, TSV, JSONL, Parquet or text file")
        body = await request.body()
        if len(body) > MAX_UPLOAD_BYTES:
            raise HTTPException(413, f"uploads are capped at {MAX_UPLOAD_BYTES} bytes")
        target = confine(project, f"data/uploads/{safe}")
        target.parent.mkdir(parents=True, exist_ok=True)
        from tuneproof.fsutil import atomic_write_bytes

        atomic_write_bytes(target, body)
        return {"path": relative(project, target)}

    @app.get("/api/data/profile")
    def data_profile(path: str, label_column: str | None = None) -> dict[str, Any]:
        from tuneproof.data.profile import profile_file

        file = confine(project, path)
        if not file.is_file():
            raise HTTPException(404, f"{path} is not a file")
        prof = profile_file(file)
        column = label_column or prof.label_column
        return {
            "path": relative(project, file),
            "columns": prof.columns,
            "rows": prof.rows,
            "preview": prof.preview,
            "text_column": prof.text_column,
            "label_column": column,
            "label_counts": prof.label_counts(column),
            "read_problems": _problems(prof.problems[:50]),
        }

    @app.post("/api/data/validate")
    def data_validate(choice: DataChoice) -> dict[str, Any]:
        """What `validate` says about this file with these columns, on a draft protocol beside it."""
        raw = _template("classification", choice)
        return _check_draft(raw, project)

    # -- Protocol -----------------------------------------------------------------------------------
    @app.get("/api/schema")
    def schema() -> dict[str, Any]:
        from tuneproof.protocol.jsonschema import protocol_json_schema

        return protocol_json_schema()

    def _template(task: str, choice: DataChoice | None) -> dict[str, Any]:
        if choice is not None and task == "classification":
            from tuneproof.protocol.starter import starting_protocol

            text = starting_protocol(
                confine(project, choice.path),
                project,
                task,
                choice.text_column,
                choice.label_column,
                choice.labels,
            )
            out: dict[str, Any] = yaml.safe_load(text)
            return out
        from tuneproof.protocol.starter import task_template

        out = task_template(task, choice.path if choice else None)
        if choice is not None and task != "image_classification":
            # The columns picked on the Data page, where the task reads a text and a target column.
            out["data"]["text_column"] = choice.text_column
            if "label_column" in out["data"]:
                out["data"]["label_column"] = choice.label_column
        return out

    @app.post("/api/template")
    def template(task: str, choice: DataChoice | None = None) -> dict[str, Any]:
        return {"protocol": _template(task, choice)}

    @app.post("/api/protocol/check")
    def protocol_check(body: ProtocolBody) -> dict[str, Any]:
        from pydantic import ValidationError

        from tuneproof.protocol.loader import problems_from_validation, validate_protocol

        text = yaml.safe_dump(body.protocol, sort_keys=False, allow_unicode=True)
        try:
            validate_protocol(body.protocol)
            problems: list[Problem] = []
        except ValidationError as exc:
            problems = problems_from_validation(exc)
        return {"yaml": text, "problems": _problems(problems)}

    @app.post("/api/protocol/save")
    def protocol_save(body: SaveBody) -> dict[str, Any]:
        from tuneproof.fsutil import atomic_write_text
        from tuneproof.protocol.check import check_protocol_parts

        target = confine(project, body.path)
        if target.suffix not in (".yaml", ".yml"):
            raise HTTPException(422, "a protocol file ends in .yaml")
        if target.parent != project:
            # The form's data paths are relative to the project folder, so the file goes there.
            raise HTTPException(422, "save the protocol in the project folder (a file name, no folder)")
        checked = protocol_check(ProtocolBody(protocol=body.protocol))
        if checked["problems"]:
            return {"saved": False, **checked}
        target.parent.mkdir(parents=True, exist_ok=True)
        header = "# Written by tuneproof ui: a plain protocol file, the same as one written by hand.\n"
        atomic_write_text(target, header + checked["yaml"])
        _, problems, data_problems = check_protocol_parts(target)
        return {
            "saved": True,
            "path": relative(project, target),
            "yaml": checked["yaml"],
            "problems": _problems(problems + data_problems),
        }

    def _check_draft(raw: dict[str, Any], folder: Path) -> dict[str, Any]:
        from tuneproof.fsutil import atomic_write_text
        from tuneproof.protocol.check import check_protocol_parts

        draft = folder / f".tuneproof-ui-draft-{secrets.token_hex(4)}.yaml"
        atomic_write_text(draft, yaml.safe_dump(raw, sort_keys=False))
        try:
            _, problems, data_problems = check_protocol_parts(draft)
        finally:
            draft.unlink(missing_ok=True)
        return {"protocol": raw, "problems": _problems(problems), "data_problems": _problems(data_problems)}

    # -- Run ----------------------------------------------------------------------------------------
    @app.post("/api/runs/start")
    def run_start(body: StartBody) -> dict[str, Any]:
        protocol = confine(project, body.protocol)
        if not protocol.is_file():
            raise HTTPException(404, f"{body.protocol} is not a file")
        job = jobs.start(project, protocol=protocol)
        return {"job": job.id}

    @app.post("/api/runs/resume")
    def run_resume(body: ResumeBody) -> dict[str, Any]:
        run_dir = confine(project, body.run)
        job = jobs.start(project, resume=run_dir)
        return {"job": job.id}

    @app.get("/api/jobs")
    def job_list() -> dict[str, Any]:
        return {"jobs": [_progress(j) for j in jobs.list_jobs(project)[:20]]}

    def _progress(job: jobs.Job) -> dict[str, Any]:
        p = jobs.progress(project, job)
        if p.get("run_dir"):
            run_dir = Path(p["run_dir"])
            p["run_dir"] = relative(project, run_dir) if run_dir.resolve().is_relative_to(project) else None
        return p

    def _job(job_id: str) -> jobs.Job:
        job = jobs.find_job(project, job_id)
        if job is None:
            raise HTTPException(404, f"no job {job_id}")
        return job

    @app.get("/api/jobs/{job_id}")
    def job_progress(job_id: str) -> dict[str, Any]:
        return _progress(_job(job_id))

    @app.post("/api/jobs/{job_id}/stop")
    def job_stop(job_id: str) -> dict[str, Any]:
        return {"stopped": jobs.stop(_job(job_id))}

    # -- Runs ---------------------------------------------------------------------------------------
    @app.get("/api/runs")
    def runs() -> dict[str, Any]:
        from tuneproof.ui.runs import list_runs

        return {"runs": list_runs(project)}

    @app.get("/api/compare")
    def compare(a: str, b: str) -> dict[str, Any]:
        from tuneproof.ui.runs import compare_runs

        return compare_runs(confine(project, a), confine(project, b))

    @app.get("/report/{run:path}")
    def report(run: str) -> Response:
        path = confine(project, run) / "report.html"
        if not path.is_file():
            raise HTTPException(404, f"{run} has no report.html")
        return FileResponse(path, media_type="text/html")

    @app.get("/view/{run:path}")
    def view(request: Request, run: str) -> Response:
        confine(project, run)
        return page(request, "view", run=run)

    # -- Try ----------------------------------------------------------------------------------------
    @app.post("/api/try")
    def try_model(body: TryBody) -> dict[str, Any]:
        from tuneproof.ui.try_model import try_chat, try_text

        run_dir = confine(project, body.run)
        if body.messages is not None:
            messages = [{"role": m.role, "content": m.content[:20_000]} for m in body.messages[-50:]]
            return try_chat(run_dir, messages, body.with_base)
        if not body.text.strip():
            raise HTTPException(422, "type a text")
        return try_text(run_dir, body.text[:20_000])

    return app
