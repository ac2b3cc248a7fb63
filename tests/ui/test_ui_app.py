"""The workbench's HTTP surface without a browser: confinement, the request guards, access keys, and
the routes calling the same functions as the CLI (profile, template, check, save)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from helpers_ui import make_project

from tuneproof.errors import PathOutsideProject
from tuneproof.protocol import load_protocol
from tuneproof.serve.auth import ApiKeys, key_digest
from tuneproof.serve.settings import ServeConfigError
from tuneproof.ui.app import create_ui_app
from tuneproof.ui.paths import confine
from tuneproof.ui.server import serve_ui

H = {"X-Tuneproof-UI": "1"}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_project(tmp_path_factory.mktemp("ui-project"))


@pytest.fixture
def client(project: Path) -> TestClient:
    return TestClient(create_ui_app(project), base_url="http://127.0.0.1")


def test_confine_refuses_escapes(tmp_path: Path) -> None:
    (tmp_path / "inside.csv").write_text("x")
    (tmp_path / "link").symlink_to("/etc")
    assert confine(tmp_path, "inside.csv") == (tmp_path / "inside.csv").resolve()
    for bad in ("../x", "/etc/passwd", "link/passwd", "a/../../x", ""):
        with pytest.raises(PathOutsideProject):
            confine(tmp_path, bad)


def test_paths_outside_the_project_get_403(client: TestClient) -> None:
    for path in ("../../etc/passwd", "/etc/passwd"):
        r = client.get("/api/data/profile", params={"path": path})
        assert r.status_code == 403 and "outside the project" in r.json()["error"]
    assert client.get("/report/../../etc").status_code in (403, 404)
    r = client.post("/api/protocol/save", json={"path": "../p.yaml", "protocol": {}}, headers=H)
    assert r.status_code == 403


def test_state_changes_need_the_ui_header_and_this_host(client: TestClient, project: Path) -> None:
    body = {"path": "p.yaml", "protocol": {"name": "p"}}
    assert client.post("/api/protocol/save", json=body).status_code == 403
    assert not (project / "p.yaml").exists()
    other = TestClient(create_ui_app(project), base_url="http://attacker.example")
    assert other.get("/api/files").status_code == 421


def test_access_key_as_bearer_or_login_cookie(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = "s3cret-key"
    keys = ApiKeys((key_digest(key).encode(),))
    c = TestClient(create_ui_app(project, keys), base_url="http://127.0.0.1")
    assert c.get("/api/files").status_code == 401
    assert c.get("/data", follow_redirects=False).status_code == 303
    assert c.get("/static/ui.js").status_code == 200  # the login page needs its script
    assert c.get("/api/files", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    assert c.post("/api/login", json={"key": "wrong"}, headers=H).status_code == 401
    assert c.post("/api/login", json={"key": key}, headers=H).status_code == 200
    assert c.get("/api/files").status_code == 200  # the session cookie now stands for the key


def test_binding_beyond_loopback_needs_keys(project: Path) -> None:
    with pytest.raises(ServeConfigError, match="API keys"):
        serve_ui(project, "0.0.0.0", 0, None)


def test_data_profile_reads_real_columns_and_labels(client: TestClient) -> None:
    p = client.get("/api/data/profile", params={"path": "reviews.csv"}).json()
    assert p["columns"] == ["text", "label", "genre"]
    assert (p["text_column"], p["label_column"]) == ("text", "label")
    assert p["label_counts"] == {"neg": 155, "pos": 145}
    assert len(p["preview"]) == 20
    g = client.get("/api/data/profile", params={"path": "reviews.csv", "label_column": "genre"}).json()
    assert set(g["label_counts"]) == {"drama", "comedy"}


def test_template_check_and_save_write_a_plain_protocol(client: TestClient, project: Path) -> None:
    choice = {"path": "reviews.csv", "text_column": "text", "label_column": "label"}
    proto = client.post("/api/template?task=classification", json=choice, headers=H).json()["protocol"]
    assert proto["data"] == {
        "files": ["reviews.csv"],
        "text_column": "text",
        "label_column": "label",
        "labels": ["neg", "pos"],
    }
    proto["train"]["learning_rate"] = -1
    checked = client.post("/api/protocol/check", json={"protocol": proto}, headers=H).json()
    assert {"where": "train.learning_rate", "message": "Input should be greater than 0"} in checked[
        "problems"
    ]
    refused = client.post("/api/protocol/save", json={"path": "a.yaml", "protocol": proto}, headers=H).json()
    assert refused["saved"] is False and not (project / "a.yaml").exists()
    proto["train"]["learning_rate"] = 0.003
    proto["model"]["source"] = "tiny-bert"
    saved = client.post("/api/protocol/save", json={"path": "a.yaml", "protocol": proto}, headers=H).json()
    assert saved["saved"] is True and saved["problems"] == []
    assert yaml.safe_load((project / "a.yaml").read_text()) == proto
    assert load_protocol(project / "a.yaml").protocol.train.learning_rate == 0.003


def test_file_lists_leave_out_run_records_and_job_logs(client: TestClient, project: Path) -> None:
    run = project / "runs" / "r-1"
    run.mkdir(parents=True, exist_ok=True)
    (run / "manifest.json").write_text("{}")
    (run / "protocol.yaml").write_text("name: r\n")
    (project / "mine.yaml").write_text("name: mine\n")
    protocols = client.get("/api/files", params={"kind": "protocol"}).json()["files"]
    assert "mine.yaml" in protocols and "runs/r-1/protocol.yaml" not in protocols
    assert "reviews.csv" in client.get("/api/files").json()["files"]


def test_data_validate_reports_what_validate_would(client: TestClient, project: Path) -> None:
    (project / "bad.csv").write_text(
        "text,label\n" + "".join(f"row {i},{'pos' if i % 2 else ''}\n" for i in range(40))
    )
    r = client.post(
        "/api/data/validate",
        json={"path": "bad.csv", "text_column": "text", "label_column": "label"},
        headers=H,
    )
    assert r.status_code == 422  # one label only: init's builder refuses before validate runs
    ok = client.post(
        "/api/data/validate",
        json={"path": "reviews.csv", "text_column": "text", "label_column": "label"},
        headers=H,
    ).json()
    assert ok["problems"] == [] and ok["data_problems"] == []
    assert list(project.glob(".tuneproof-ui-draft-*")) == []


def test_every_task_has_a_template_and_takes_the_data_pages_columns(client: TestClient) -> None:
    choice = {"path": "reviews.csv", "text_column": "text", "label_column": "genre"}
    schema = client.get("/api/schema").json()
    for task in schema["properties"]["task"]["enum"]:
        proto = client.post(f"/api/template?task={task}", json=choice, headers=H).json()["protocol"]
        assert proto["task"] == task and proto["data"]["files"] == ["reviews.csv"]
        checked = client.post("/api/protocol/check", json={"protocol": proto}, headers=H).json()
        assert checked["problems"] == [], (task, checked["problems"])
    sft = client.post("/api/template?task=sft", json=choice, headers=H).json()["protocol"]
    assert sft["data"]["text_column"] == "text" and "label_column" not in sft["data"]
    assert sft["evaluate"]["baselines"] == ["base_model"]
    ner = client.post("/api/template?task=token_classification", headers=H).json()["protocol"]
    assert ner["data"]["format"] == "conll" and ner["gates"][0]["beats"] == "most_frequent_tag"


def test_problems_inside_lists_and_unions_name_their_item(client: TestClient) -> None:
    proto = client.post("/api/template?task=regression", headers=H).json()["protocol"]
    proto["gates"].append({"min": 0.1})
    proto["data"]["files"].append({"package": "scattertext"})
    proto["cleaning"] = {"max_removed_fraction": 1.5}
    where = {
        p["where"]
        for p in client.post("/api/protocol/check", json={"protocol": proto}, headers=H).json()["problems"]
    }
    # A number spreads over every stage, so its problem names the stage the form walks up from.
    assert {"gates[2].metric", "data.files[1].path", "cleaning.max_removed_fraction.per_stage"} <= where


def test_try_refuses_a_chat_that_does_not_end_with_the_user(client: TestClient) -> None:
    from tuneproof.errors import DataValidationError
    from tuneproof.ui.try_model import check_messages

    with pytest.raises(DataValidationError) as err:
        check_messages([{"role": "user", "content": "hi"}, {"role": "bot", "content": "x"}])
    assert [p.where for p in err.value.problems] == ["messages[1].role", "messages"]
    check_messages([{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}])
