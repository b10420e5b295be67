"""`skin-cancer submit` and `skin-cancer schedule` against a fake KFP API server on 127.0.0.1.

The server speaks the v2beta1 REST endpoints that ``kfp.Client`` calls (paths, query
parameters, JSON field names and the multipart upload as in ``kfp_server_api``), keeps
experiments, pipelines, versions, runs and recurring runs in memory, and records every
request, so the tests assert what the client really sent over HTTP.
"""

from __future__ import annotations

import email.parser
import email.policy
import getpass
import json
import os
import subprocess
import sys
import threading
import uuid
from http.server import ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from pipelines import cli, submit
from pipelines.presets import PRESETS
from tests.support.http_stub import JsonHandler

ROOT = Path(__file__).resolve().parents[2]
API = "/apis/v2beta1"
TOKEN = "tok-" + uuid.uuid4().hex  # a fake bearer token: must reach the server and nothing else


class FakeKFP:
    """In-memory KFP API: state plus a log of every request."""

    def __init__(self, token: str | None = None, release: str = "2.16.0"):
        self.token = token
        self.release = release  # what healthz reports as tag_name
        self.healthz: dict | None = None  # a recorded healthz answer (tests/data/kfp_healthz.json) instead
        self.login_page = False  # answer every request with an HTML login page, as an auth proxy does
        self.requests: list[dict] = []
        self.experiments: dict[str, dict] = {}
        self.pipelines: dict[str, dict] = {}
        self.versions: dict[str, list[dict]] = {}
        self.runs: dict[str, dict] = {}
        self.recurring: dict[str, dict] = {}
        self._clock = 0

    def _now(self) -> str:
        self._clock += 1
        return f"2026-01-01T00:00:{self._clock:02d}Z"

    def calls(self, method: str, path: str) -> list[dict]:
        return [r for r in self.requests if r["method"] == method and r["path"] == API + path]

    # -- routing -----------------------------------------------------------------------
    def handle(self, method: str, path: str, query: dict, body) -> tuple[int, dict]:
        parts = path[len(API) :].strip("/").split("/") if path.startswith(API) else []
        one = lambda k: query.get(k, [None])[0]  # noqa: E731
        if parts == ["healthz"] and method == "GET":
            return 200, self.healthz or {
                "commit_sha": "0123abc",
                "tag_name": self.release,
                "multi_user": False,
                "pipeline_store": "database",
            }
        if parts == ["experiments"] and method == "GET":
            found = [
                e
                for e in self.experiments.values()
                if _matches(e, one("filter")) and (one("namespace") in (None, "", e.get("namespace")))
            ]
            return 200, ({"experiments": found, "total_size": len(found)} if found else {})
        if parts == ["experiments"] and method == "POST":
            exp = {**body, "experiment_id": str(uuid.uuid4()), "created_at": self._now(), "storage_state": "AVAILABLE"}
            self.experiments[exp["experiment_id"]] = exp
            return 200, exp
        if parts == ["runs"] and method == "POST":
            if body.get("experiment_id") not in self.experiments:
                return 404, {"error": "experiment not found", "code": 5}
            run = {**body, "run_id": str(uuid.uuid4()), "state": "PENDING", "created_at": self._now()}
            self.runs[run["run_id"]] = run
            return 200, run
        if parts == ["pipelines"] and method == "GET":
            found = [p for p in self.pipelines.values() if _matches(p, one("filter"))]
            return 200, ({"pipelines": found, "total_size": len(found)} if found else {})
        if parts == ["pipelines", "upload"] and method == "POST":
            name = one("display_name") or one("name")
            if any(p["display_name"] == name for p in self.pipelines.values()):
                return 409, {"error": f"pipeline {name} already exists", "code": 6}
            pid = str(uuid.uuid4())
            self.pipelines[pid] = {
                "pipeline_id": pid,
                "name": name,
                "display_name": name,
                "description": one("description"),
                "namespace": one("namespace"),
                "created_at": self._now(),
            }
            self.versions[pid] = []
            self._add_version(pid, name, body)  # KFP names the first version after the pipeline
            return 200, self.pipelines[pid]
        if parts == ["pipelines", "upload_version"] and method == "POST":
            pid = one("pipelineid")
            if pid not in self.pipelines:
                return 404, {"error": "pipeline not found", "code": 5}
            if any(v["name"] == one("name") for v in self.versions[pid]):
                return 409, {"error": "version exists", "code": 6}
            return 200, self._add_version(pid, one("name"), body)
        if len(parts) == 3 and parts[0] == "pipelines" and parts[2] == "versions" and method == "GET":
            versions = list(self.versions.get(parts[1], []))
            if one("sort_by") == "created_at desc":
                versions.reverse()
            versions = versions[: int(one("page_size") or 100)]
            return 200, ({"pipeline_versions": versions, "total_size": len(versions)} if versions else {})
        if parts == ["recurringruns"] and method == "POST":
            ref = body.get("pipeline_version_reference") or {}
            if ref.get("pipeline_version_id") not in {
                v["pipeline_version_id"] for v in self.versions.get(ref.get("pipeline_id"), [])
            }:
                return 404, {"error": "pipeline version not found", "code": 5}
            rid = str(uuid.uuid4())
            job = {
                **body,
                "recurring_run_id": rid,
                "created_at": self._now(),
                "status": "ENABLED" if body.get("mode") == "ENABLE" else "DISABLED",
            }
            self.recurring[rid] = job
            return 200, job
        if parts == ["recurringruns"] and method == "GET":
            jobs = [j for j in self.recurring.values() if one("experiment_id") in (None, j.get("experiment_id"))]
            return 200, ({"recurringRuns": jobs, "total_size": len(jobs)} if jobs else {})  # sic: camelCase in the API
        if len(parts) == 2 and parts[0] == "recurringruns" and method == "DELETE":
            if self.recurring.pop(parts[1], None) is None:
                return 404, {"error": "recurring run not found", "code": 5}
            return 200, {}
        return 404, {"error": f"no route {method} {path}", "code": 5}

    def _add_version(self, pid: str, name: str, upload: dict) -> dict:
        spec = list(yaml.safe_load_all(upload["uploadfile"]))
        version = {
            "pipeline_id": pid,
            "pipeline_version_id": str(uuid.uuid4()),
            "name": name,
            "display_name": name,
            "created_at": self._now(),
            "pipeline_spec": spec[0],
        }
        self.versions[pid].append(version)
        return version


def _matches(obj: dict, filter_json: str | None) -> bool:
    if not filter_json:
        return True
    for p in json.loads(filter_json).get("predicates", []):
        assert p["operation"] in ("EQUALS", 1), p  # protobuf JSON: the enum's name or number
        if obj.get(p["key"]) != p["stringValue"]:
            return False
    return True


def _handler(fake: FakeKFP):
    class Handler(JsonHandler):
        def _serve(self):
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            ctype = self.headers.get("Content-Type", "")
            if ctype.startswith("multipart/form-data"):
                msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                    f"Content-Type: {ctype}\r\n\r\n".encode() + raw
                )
                body = {
                    part.get_param("name", header="content-disposition"): part.get_payload(decode=True).decode()
                    for part in msg.iter_parts()
                }
            else:
                body = json.loads(raw) if raw else None
            fake.requests.append(
                {
                    "method": self.command,
                    "path": url.path,
                    "query": query,
                    "body": body,
                    "authorization": self.headers.get("Authorization"),
                    "content_type": ctype,
                }
            )
            if fake.login_page:
                page = b"<!DOCTYPE html><html><body>Log in to Kubeflow</body></html>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)
                return
            if fake.token and self.headers.get("Authorization") != f"Bearer {fake.token}":
                status, payload = 401, {"error": "Unauthorized", "code": 16}
            else:
                status, payload = fake.handle(self.command, url.path, query, body)
            self.send_json(status, payload)

        do_GET = do_POST = do_DELETE = _serve

    return Handler


@pytest.fixture
def kfp_server():
    fake = FakeKFP(token=TOKEN)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield fake
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    # kfp.Client reads ~/.config/kfp/context.json; keep the user's out of the tests.
    monkeypatch.setattr("kfp.client.client.Client._LOCAL_KFP_CONTEXT", str(tmp_path / "kfp-context.json"))
    monkeypatch.setenv(submit.TOKEN_ENV, TOKEN)
    monkeypatch.delenv(submit.HOST_ENV, raising=False)


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    """The installed command line in a fresh process (component images are fixed at import);
    HOME is a temporary folder so kfp.Client reads no user context file."""
    env = {k: v for k, v in os.environ.items() if k not in ("SKIN_CANCER_IMAGE", "SKIN_CANCER_TRAIN_IMAGE")}
    env.update(HOME=str(home), **{submit.TOKEN_ENV: TOKEN})
    return subprocess.run(
        [str(Path(sys.executable).parent / "skin-cancer"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


# --- submit ----------------------------------------------------------------------------------


def test_submit_sends_compiled_spec_params_experiment_and_token(kfp_server, tmp_path):
    p = _cli(
        tmp_path,
        "submit",
        "--host",
        kfp_server.url,
        "--namespace",
        "team-a",
        "--experiment",
        "nightly",
        "--run-name",
        "first run",
        "--image",
        "registry.example/sc:1.2.3",
        "--train-image",
        "registry.example/sc-gpu:1.2.3",
        "--accelerator-type",
        "nvidia.com/gpu",
        "--node-selector",
        "pool=gpu",
        "--param",
        "data_uri=s3://skin/raw",
        "--param",
        "epochs=3",
        "--param",
        'models=[{"family": "basic"}, {"family": "resnet50", "weights": "imagenet"}]',
        "--param",
        "registered_model_name=123",
    )
    assert p.returncode == 0, p.stderr[-3000:]
    run_post = kfp_server.calls("POST", "/runs")
    assert len(run_post) == 1
    run = run_post[0]["body"]
    run_id = next(iter(kfp_server.runs))
    # what the person sees: the run id and a dashboard link to it
    assert f"run id: {run_id}" in p.stdout
    assert f"dashboard: {kfp_server.url}/#/runs/details/{run_id}" in p.stdout
    # the experiment was looked up by name in the namespace, then created there
    lookup = kfp_server.calls("GET", "/experiments")[0]["query"]
    assert json.loads(lookup["filter"][0])["predicates"][0]["stringValue"] == "nightly"
    assert lookup["namespace"] == ["team-a"]
    created = kfp_server.calls("POST", "/experiments")[0]["body"]
    assert created["display_name"] == "nightly" and created["namespace"] == "team-a"
    assert run["experiment_id"] == next(iter(kfp_server.experiments))
    assert run["display_name"] == "first run"
    assert run["service_account"] == "skin-cancer-pipeline"
    # parameters are typed by the pipeline's declared inputs, not guessed
    assert run["runtime_config"]["parameters"] == {
        "data_uri": "s3://skin/raw",
        "epochs": 3,
        "registered_model_name": "123",
        "models": [{"family": "basic"}, {"family": "resnet50", "weights": "imagenet"}],
        # who submitted: the approval evidence records it (no MLflow username here: the local user)
        "submitted_by": getpass.getuser(),
    }
    # the compiled spec travels inline, with its Kubernetes platform spec
    spec, platform = run["pipeline_spec"]["pipeline_spec"], run["pipeline_spec"]["platform_spec"]
    assert spec["pipelineInfo"]["name"] == "skin-cancer-training"
    images = {name: e["container"]["image"] for name, e in spec["deploymentSpec"]["executors"].items()}
    assert images["exec-train"] == "registry.example/sc-gpu:1.2.3"
    assert images["exec-preprocess"] == "registry.example/sc-gpu:1.2.3"  # preprocessing runs in the training image
    # compiled with require_approval (the default): the selection proposes, nothing deploys
    assert images["exec-select-and-propose"] == "registry.example/sc:1.2.3"
    assert not {"exec-select-and-register", "exec-deploy-model", "exec-smoke-test"} & set(images)
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert k8s["exec-train"]["nodeSelector"]["labels"] == {"pool": "gpu"}
    assert k8s["exec-preprocess"]["secretAsEnv"][0]["secretNameParameter"] == {"componentInputParameter": "s3_secret"}
    # the token went in the Authorization header of every request, and nowhere else
    assert {r["authorization"] for r in kfp_server.requests} == {f"Bearer {TOKEN}"}
    assert TOKEN not in p.stdout + p.stderr
    assert TOKEN not in json.dumps(run)


def test_submit_checks_parameters_before_sending_anything(kfp_server, capsys):
    assert cli.main(["submit", "--host", kfp_server.url, "--param", "data_uri=s3://b/raw", "--param", "epoch=3"]) == 2
    assert "no such parameter" in capsys.readouterr().err
    assert cli.main(["submit", "--host", kfp_server.url, "--param", "epochs=3"]) == 2
    assert "missing required parameter(s): data_uri" in capsys.readouterr().err
    assert cli.main(["submit", "--host", kfp_server.url, "--param", "data_uri=x", "--param", "epochs=three"]) == 2
    assert "not a valid integer" in capsys.readouterr().err
    assert kfp_server.requests == []


@pytest.mark.parametrize("command", [["submit"], ["schedule", "create", "--cron", "0 0 3 * * *", "--name", "n"]])
def test_an_older_backend_is_refused_naming_the_feature(kfp_server, capsys, command):
    kfp_server.release = "2.15.2"
    assert cli.main([*command, "--host", kfp_server.url, "--param", "data_uri=s3://b/raw"]) == 2
    err = capsys.readouterr().err
    assert "release 2.15.2" in err and "needs 2.16.0 or later" in err
    assert "ParallelFor feeding dsl.Collected (since 2.16.0" in err
    # Nothing was created: only the health check was asked.
    assert {r["path"] for r in kfp_server.requests} <= {API + "/healthz"}


HEALTHZ = json.loads((Path(__file__).parents[1] / "data" / "kfp_healthz.json").read_text())
OLD_UI = ["ui-server-2.15.0", "ui-server-2.5.0 (Kubeflow 1.10)", "ui-server-2.3.0 (Kubeflow 1.9)"]


@pytest.mark.parametrize("command", [["submit"], ["schedule", "create", "--cron", "0 0 3 * * *", "--name", "n"]])
@pytest.mark.parametrize("answer", OLD_UI)
def test_an_older_backend_behind_the_ui_server_is_refused_naming_the_feature(kfp_server, capsys, command, answer):
    """Through `kubectl port-forward svc/ml-pipeline-ui` (the README's way) or the Kubeflow ingress,
    healthz is the UI server's answer: apiServerTagName, no tag_name."""
    kfp_server.healthz = HEALTHZ[answer]
    release = HEALTHZ[answer]["apiServerTagName"]
    assert cli.main([*command, "--host", kfp_server.url, "--param", "data_uri=s3://b/raw"]) == 2
    err = capsys.readouterr().err
    assert f"release {release};" in err and "needs 2.16.0 or later" in err
    assert "ParallelFor feeding dsl.Collected (since 2.16.0" in err
    if release in ("2.3.0", "2.5.0"):  # Kubeflow 1.9 and 1.10
        assert "optional Secret / ConfigMap as env (since 2.15.0" in err and "dsl.Collected of parameters" in err
    assert {r["path"] for r in kfp_server.requests} == {API + "/healthz"}  # nothing created


@pytest.mark.parametrize("answer", ["ui-server-2.16.0", "ui-server-2.17.0", "api-server-2.16.0"])
def test_a_current_backend_takes_the_run_through_either_server(kfp_server, capsys, answer):
    kfp_server.healthz = HEALTHZ[answer]
    assert cli.main(["submit", "--host", kfp_server.url, "--namespace", "ns", "--param", "data_uri=s3://b/raw"]) == 0
    assert "warning" not in capsys.readouterr().err
    assert len(kfp_server.calls("POST", "/runs")) == 1


def test_a_ui_server_without_its_api_server_is_refused(kfp_server, capsys):
    """apiServerReady false: the UI server's apiServer* fields are absent or stale; nothing is known."""
    kfp_server.healthz = HEALTHZ["ui-server-2.16.0, API server down"]
    assert cli.main(["submit", "--host", kfp_server.url, "--param", "data_uri=s3://b/raw"]) == 2
    err = capsys.readouterr().err
    assert "API server not ready (apiServerReady false)" in err and "nothing was sent" in err
    assert kfp_server.runs == {}


def test_a_login_page_or_an_unknown_answer_is_refused_not_let_through(kfp_server, capsys):
    kfp_server.login_page = True
    assert cli.main(["submit", "--host", kfp_server.url, "--param", "data_uri=s3://b/raw"]) == 2
    err = capsys.readouterr().err
    assert "not JSON: a login page?" in err and submit.TOKEN_ENV in err and "text/html" in err
    kfp_server.login_page = False
    kfp_server.healthz = {"status": "ok"}
    assert cli.main(["submit", "--host", kfp_server.url, "--param", "data_uri=s3://b/raw"]) == 2
    assert "without a KFP release" in capsys.readouterr().err
    assert kfp_server.runs == {}


def test_every_recorded_healthz_answer_reads_as_its_release():
    from pipelines import backend_compat

    got = {name: backend_compat.read_healthz(answer) for name, answer in HEALTHZ.items() if name != "_about"}
    assert {n: (h.server, h.release, h.api_ready) for n, h in got.items()} == {
        "api-server-2.16.0": ("api server", "2.16.0", True),
        "api-server-2.5.0": ("api server", "2.5.0", True),
        "api-server-dev": ("api server", "unknown", True),
        "ui-server-2.17.0": ("ui server", "2.17.0", True),
        "ui-server-2.16.0": ("ui server", "2.16.0", True),
        "ui-server-2.15.0": ("ui server", "2.15.0", True),
        "ui-server-2.5.0 (Kubeflow 1.10)": ("ui server", "2.5.0", True),
        "ui-server-2.3.0 (Kubeflow 1.9)": ("ui server", "2.3.0", True),
        "ui-server-2.16.0, API server down": ("ui server", "unknown", False),
    }
    # A stale apiServerTagName left from an earlier answer says nothing when the API server is down.
    stale = {**HEALTHZ["ui-server-2.16.0"], "apiServerReady": False}
    assert backend_compat.read_healthz(stale).release == "unknown"
    assert backend_compat.read_healthz({}) is None


def test_a_development_backend_is_let_through_with_a_warning(kfp_server, capsys):
    kfp_server.release = "unknown"
    assert cli.main(["submit", "--host", kfp_server.url, "--param", "data_uri=s3://b/raw"]) == 0
    assert "reports release 'unknown'" in capsys.readouterr().err
    assert len(kfp_server.calls("POST", "/runs")) == 1


def test_submit_without_host_or_with_a_bad_token_says_what_to_fix(kfp_server, capsys, monkeypatch):
    assert cli.main(["submit", "--param", "data_uri=x"]) == 2
    assert "--host" in capsys.readouterr().err
    monkeypatch.setenv(submit.TOKEN_ENV, "wrong-token-value")
    assert cli.main(["submit", "--host", kfp_server.url, "--namespace", "ns", "--param", "data_uri=x"]) == 2
    err = capsys.readouterr().err
    assert "401" in err and submit.TOKEN_ENV in err
    assert "wrong-token-value" not in err
    assert kfp_server.runs == {}


@pytest.mark.parametrize("command", [["submit"], ["schedule", "create", "--cron", "0 0 3 * * *", "--name", "n"]])
def test_a_serving_namespace_other_than_the_runs_is_refused_before_sending(kfp_server, capsys, command):
    base = [*command, "--host", kfp_server.url, "--param", "data_uri=s3://b/raw"]
    assert cli.main([*base, "--namespace", "team-a", "--param", "serving_namespace=team-b"]) == 2
    err = capsys.readouterr().err
    assert "serving_namespace='team-b' is not the namespace the run goes to (team-a)" in err
    assert "Leave serving_namespace empty" in err
    assert cli.main([*base, "--param", "serving_namespace=team-b"]) == 2  # no --namespace: cannot be the same
    assert "none given: --namespace" in capsys.readouterr().err
    assert kfp_server.requests == []
    assert cli.main([*base, "--namespace", "team-a", "--param", "serving_namespace=team-a"]) == 0


def test_a_compiled_in_serving_namespace_is_refused(tmp_path):
    from pipelines.training_pipeline import CompileSettings

    with pytest.raises(submit.SubmitError, match="compiled-in serving_namespace default is refused"):
        submit.compile_package(
            CompileSettings(parameter_defaults={"serving_namespace": "team-b"}), str(tmp_path / "p.yaml")
        )
    assert not (tmp_path / "p.yaml").exists()


def test_a_notebooks_projected_token_is_used_when_none_is_given(kfp_server, capsys, monkeypatch, tmp_path):
    """kfp.Client reads the projected token only without a host; these commands always pass one."""
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    monkeypatch.delenv(submit.TOKEN_ENV)
    monkeypatch.setenv(submit.SA_TOKEN_PATH_ENV, str(token_file))
    assert cli.main(["submit", "--host", kfp_server.url, "--namespace", "ns", "--param", "data_uri=s3://b/raw"]) == 0
    assert {r["authorization"] for r in kfp_server.requests} == {f"Bearer {TOKEN}"}
    out = capsys.readouterr()
    assert TOKEN not in out.out + out.err
    # An explicit token wins over the file; no file and no token: no Authorization header at all.
    assert submit.resolve_target("http://h", None, "given", None).token == "given"
    monkeypatch.setenv(submit.SA_TOKEN_PATH_ENV, str(tmp_path / "absent"))
    assert submit.resolve_target("http://h", None, None, None).token is None
    assert TOKEN not in repr(submit.resolve_target("http://h", None, TOKEN, None))


def test_submit_no_cache_turns_caching_off_for_every_task(kfp_server):
    target = submit.Target(host=kfp_server.url, namespace="ns", token=TOKEN)
    from pipelines.training_pipeline import CompileSettings

    run = submit.submit(target, CompileSettings(), ["data_uri=s3://b/raw"], "exp", "r", None, enable_caching=False)
    body = kfp_server.runs[run.run_id]
    tasks = body["pipeline_spec"]["pipeline_spec"]["root"]["dag"]["tasks"]
    assert all(t["cachingOptions"].get("enableCache", False) is False for t in tasks.values())
    assert "service_account" not in body  # None: KFP's default account


# --- schedule --------------------------------------------------------------------------------


def test_schedule_create_uploads_a_version_and_creates_the_recurring_run(kfp_server, tmp_path):
    p = _cli(
        tmp_path,
        "schedule",
        "create",
        "--host",
        kfp_server.url,
        "--namespace",
        "team-a",
        "--experiment",
        "retrain",
        "--name",
        "nightly-retrain",
        "--cron",
        "0 30 2 * * *",
        "--max-concurrency",
        "1",
        "--param",
        "data_uri=s3://skin/raw",
        "--param",
        "epochs=15",
    )
    assert p.returncode == 0, p.stderr[-3000:]
    job_id, job = next(iter(kfp_server.recurring.items()))
    assert f"recurring run id: {job_id}" in p.stdout
    assert f"{kfp_server.url}/#/recurringrun/details/{job_id}" in p.stdout
    # the pipeline was uploaded (multipart, the compiled YAML) into the namespace
    upload = kfp_server.calls("POST", "/pipelines/upload")
    assert len(upload) == 1 and upload[0]["content_type"].startswith("multipart/form-data")
    assert upload[0]["query"]["namespace"] == ["team-a"]
    assert (
        yaml.safe_load_all(upload[0]["body"]["uploadfile"]).__next__()["pipelineInfo"]["name"] == "skin-cancer-training"
    )
    ((pid, versions),) = kfp_server.versions.items()
    assert job["pipeline_version_reference"] == {
        "pipeline_id": pid,
        "pipeline_version_id": versions[0]["pipeline_version_id"],
    }
    assert "pipeline_spec" not in job  # runs the uploaded version, not an inline copy
    assert job["trigger"] == {"cron_schedule": {"cron": "0 30 2 * * *"}}
    assert int(job["max_concurrency"]) == 1
    assert job["no_catchup"] is True
    assert job["mode"] == "ENABLE"
    assert job["display_name"] == "nightly-retrain"
    assert (
        job["experiment_id"]
        == next(e for e in kfp_server.experiments.values() if e["display_name"] == "retrain")["experiment_id"]
    )
    assert job["runtime_config"]["parameters"] == {
        "data_uri": "s3://skin/raw",
        "epochs": 15,
        "submitted_by": getpass.getuser(),  # who created the schedule: the evidence's submitter
    }
    assert job["service_account"] == "skin-cancer-pipeline"
    assert TOKEN not in p.stdout + p.stderr


def test_a_pipeline_that_requires_approval_refuses_deploy_true(kfp_server):
    """It has no deploy task: deploy=true would silently do nothing, so nothing is sent."""
    from pipelines.training_pipeline import CompileSettings

    target = submit.Target(host=kfp_server.url, namespace="ns", token=TOKEN)
    with pytest.raises(submit.SubmitError, match="requires approval and has no deploy task"):
        submit.submit(
            target, CompileSettings(require_approval=True), ["data_uri=s3://b/raw", "deploy=true"], "exp", None, None
        )
    assert kfp_server.calls("POST", "/runs") == []


def test_schedule_create_reuses_an_identical_version(kfp_server):
    from pipelines.training_pipeline import CompileSettings

    target = submit.Target(host=kfp_server.url, namespace="ns", token=TOKEN)
    args = dict(params=["data_uri=s3://b/raw"], cron="0 0 4 * * *", experiment="exp", catchup=True)
    first = submit.create_schedule(target, CompileSettings(), name="a", **args)
    second = submit.create_schedule(target, CompileSettings(), name="b", **args)  # uploads the digest-named version
    third = submit.create_schedule(target, CompileSettings(), name="c", **args)  # finds it: no upload
    changed = submit.create_schedule(target, CompileSettings(parallelism=2), name="d", **args)
    assert len(kfp_server.calls("POST", "/pipelines/upload")) == 1
    assert len(kfp_server.calls("POST", "/pipelines/upload_version")) == 2
    assert first.pipeline_id == second.pipeline_id == third.pipeline_id == changed.pipeline_id
    assert second.version_id == third.version_id != changed.version_id
    assert first.version_id != second.version_id
    assert kfp_server.recurring[third.recurring_run_id]["no_catchup"] is False  # --catchup


def test_the_scoring_pipeline_is_submitted_and_scheduled_nightly(kfp_server, capsys):
    """--pipeline scoring: the run and the recurring run carry the scoring pipeline's spec, under
    its own KFP pipeline (not a version of the training one), named after it by default."""
    base = [
        "--host",
        kfp_server.url,
        "--namespace",
        "clinic",
        "--pipeline",
        "scoring",
        "--image",
        "registry.example/sc:2",
        "--param",
        "data_uri=s3://clinic/inbox",
        "--param",
        "out_uri=s3://clinic/scored",
    ]
    assert cli.main(["submit", *base]) == 0, capsys.readouterr().err
    run = kfp_server.calls("POST", "/runs")[-1]["body"]
    spec = run["pipeline_spec"]["pipeline_spec"]
    assert spec["pipelineInfo"]["name"] == "skin-cancer-scoring"
    assert run["display_name"].startswith("skin-cancer-scoring ")
    assert run["runtime_config"]["parameters"] == {"data_uri": "s3://clinic/inbox", "out_uri": "s3://clinic/scored"}
    assert cli.main(["schedule", "create", *base, "--cron", "0 0 2 * * *"]) == 0, capsys.readouterr().err
    job = next(iter(kfp_server.recurring.values()))
    assert job["display_name"] == "skin-cancer-scoring-nightly"
    assert [p["display_name"] for p in kfp_server.pipelines.values()] == ["skin-cancer-scoring"]
    assert job["trigger"] == {"cron_schedule": {"cron": "0 0 2 * * *"}}
    assert cli.main(["submit", *base, "--preset", sorted(PRESETS)[0]]) == 2
    assert "--preset holds training parameters" in capsys.readouterr().err


@pytest.mark.parametrize(
    "cron, message",
    [
        ("0 3 * * *", "did you mean '0 0 3 * * *'"),
        ("0 0 24 * * *", "hour field '24': 24 is outside 0-23"),
        ("0 0 0 0 * *", "day of month field '0': 0 is outside 1-31"),
        ("* * * * * 7", "day of week field '7'"),
        ("0 */0 * * * *", "a step must be a positive number"),
        ("0 0 5-1 * * *", "must not run backwards"),
        ("0 0 3 * * * *", "has 7 fields"),
        ("0 0 3 * FOO *", "not a number or name"),
    ],
)
def test_schedule_create_refuses_a_bad_cron_before_sending_anything(kfp_server, capsys, cron, message):
    code = cli.main(["schedule", "create", "--host", kfp_server.url, "--cron", cron, "--param", "data_uri=x"])
    assert code == 2
    assert message in capsys.readouterr().err
    assert kfp_server.requests == []


@pytest.mark.parametrize(
    "cron",
    ["0 0 3 * * *", "0 */15 * * * ?", "0 0 9 ? * 2-6", "0 0 0 1 JAN,jul *", "30 5/10 8-18/2 1,15 * MON-FRI", "@daily"],
)
def test_valid_kfp_crons_pass(cron):
    assert submit.validate_cron(f"  {cron} ") == (cron if not cron.startswith("@") else cron.lower())


def test_schedule_refuses_zero_concurrency(kfp_server, capsys):
    assert (
        cli.main(
            [
                "schedule",
                "create",
                "--host",
                kfp_server.url,
                "--cron",
                "0 0 3 * * *",
                "--max-concurrency",
                "0",
                "--param",
                "data_uri=x",
            ]
        )
        == 2
    )
    assert "--max-concurrency must be at least 1" in capsys.readouterr().err
    assert kfp_server.requests == []


def test_schedule_refuses_more_concurrency_than_the_api_allows(kfp_server, capsys):
    assert (
        cli.main(
            [
                "schedule",
                "create",
                "--host",
                kfp_server.url,
                "--cron",
                "0 0 3 * * *",
                "--max-concurrency",
                "11",
                "--param",
                "data_uri=x",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "at most 10 (the KFP API's limit for a recurring run), got 11" in err
    assert kfp_server.requests == []
    assert (
        cli.main(
            [
                "schedule",
                "create",
                "--host",
                kfp_server.url,
                "--cron",
                "0 0 3 * * *",
                "--max-concurrency",
                "10",
                "--param",
                "data_uri=x",
            ]
        )
        == 0
    )
    assert int(next(iter(kfp_server.recurring.values()))["max_concurrency"]) == 10


def test_schedule_list_and_delete(kfp_server, capsys):
    from pipelines.training_pipeline import CompileSettings

    target = submit.Target(host=kfp_server.url, namespace="ns", token=TOKEN)
    a = submit.create_schedule(target, CompileSettings(), ["data_uri=s3://b/raw"], "0 0 3 * * *", "nightly", "exp")
    b = submit.create_schedule(
        target, CompileSettings(), ["data_uri=s3://b/raw"], "0 0 5 * * 0", "weekly", "other", max_concurrency=2
    )
    capsys.readouterr()
    assert cli.main(["schedule", "list", "--host", kfp_server.url, "--namespace", "ns"]) == 0
    out = capsys.readouterr().out
    assert a.recurring_run_id in out and b.recurring_run_id in out
    assert "0 0 3 * * *" in out and "0 0 5 * * 0" in out and "ENABLED" in out
    assert cli.main(["schedule", "list", "--host", kfp_server.url, "--namespace", "ns", "--experiment", "other"]) == 0
    out = capsys.readouterr().out
    assert b.recurring_run_id in out and a.recurring_run_id not in out
    assert kfp_server.calls("GET", "/recurringruns")[-1]["query"]["experiment_id"] == [b.experiment_id]

    assert cli.main(["schedule", "delete", "--host", kfp_server.url, "--namespace", "ns", a.recurring_run_id]) == 0
    assert kfp_server.calls("DELETE", f"/recurringruns/{a.recurring_run_id}")
    assert list(kfp_server.recurring) == [b.recurring_run_id]
    # deleting it again: the server's 404 comes back as a clear error
    assert cli.main(["schedule", "delete", "--host", kfp_server.url, "--namespace", "ns", a.recurring_run_id]) == 2
    assert "404" in capsys.readouterr().err


# --- parameters ----------------------------------------------------------------------------

DECLARED = {
    "data_uri": {"type": "STRING", "required": True},
    "epochs": {"type": "NUMBER_INTEGER", "required": False},
    "learning_rate": {"type": "NUMBER_DOUBLE", "required": False},
    "deploy": {"type": "BOOLEAN", "required": False},
    "models": {"type": "LIST", "required": False},
}


def test_params_are_typed_by_the_declared_inputs():
    assert submit.parse_params(
        ["data_uri=42", "epochs=7", "learning_rate=1e-3", "deploy=True", 'models=[{"family": "basic"}]'], DECLARED
    ) == {"data_uri": "42", "epochs": 7, "learning_rate": 0.001, "deploy": True, "models": [{"family": "basic"}]}
    assert submit.parse_params(["data_uri=a=b"], DECLARED) == {"data_uri": "a=b"}
    with pytest.raises(submit.SubmitError, match="holds a password") as err:
        submit.parse_params(
            ["data_uri=s3://b/raw", "mlflow_uri=http://user:hunter2@mlflow:5000"],
            {**DECLARED, "mlflow_uri": {"type": "STRING", "required": False}},
        )
    assert "hunter2" not in str(err.value)
    for bad, why in [
        ("epochs=1.5", "not a valid integer"),
        ("deploy=yes", "not a valid boolean"),
        ('models={"a": 1}', "expected a JSON list"),
        ("noequals", "expected KEY=VALUE"),
    ]:
        with pytest.raises(submit.SubmitError, match=why):
            submit.parse_params(["data_uri=x", bad], DECLARED)


def test_declared_inputs_come_from_the_compiled_pipeline(tmp_path):
    from pipelines.training_pipeline import CompileSettings

    declared = submit.pipeline_parameters(submit.compile_package(CompileSettings(), str(tmp_path / "p.yaml")))
    assert declared["data_uri"] == {"type": "STRING", "required": True}
    assert declared["epochs"] == {"type": "NUMBER_INTEGER", "required": False}
    assert declared["models"]["type"] == "LIST"
    assert {"s3_secret", "mlflow_secret", "config_map"} <= set(declared)


def test_submit_the_deploy_pipeline(kfp_server, tmp_path):
    """What `approve --deploy` sends: the deploy pipeline, which serves only an approved champion."""
    p = _cli(
        tmp_path,
        "submit",
        "--host",
        kfp_server.url,
        "--namespace",
        "team-a",
        "--pipeline",
        "deploy",
        "--image",
        "registry.example/sc:1.2.3",
        "--param",
        "data_uri=s3://skin/raw",
    )
    assert p.returncode == 0, p.stderr[-3000:]
    (post,) = kfp_server.calls("POST", "/runs")
    run = post["body"]
    assert run["pipeline_spec"]["pipeline_spec"]["pipelineInfo"]["name"] == "skin-cancer-deploy"
    assert run["runtime_config"]["parameters"] == {"data_uri": "s3://skin/raw"}
    executors = run["pipeline_spec"]["pipeline_spec"]["deploymentSpec"]["executors"]
    assert set(executors) == {"exec-approved-champion", "exec-deploy-model", "exec-smoke-test"}
