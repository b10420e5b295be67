"""The approval flow a person goes through, on demo data and a real `mlflow server`:

`skin-cancer run --require-approval` proposes (no @champion on a new registry; @challenger,
approval.status = pending, the evidence and subgroups.json in MLflow; the console says what to
run next); `approve` moves @champion with every approval.* tag and rewrites the card; `history`
lists it; a refused approval (failed gate) and `reject` leave @champion untouched; `rollback`
restores the previous champion, and `history` shows that too.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from components.core.registry import approval, tracking
from tests.support.cli import TINY, run_cli
from tests.support.probe_data import log_model_run
from tests.support.reliability_support import probe_model


@pytest.fixture
def decide(mlflow_server, monkeypatch, capsys):
    """`skin-cancer ARGS` in this process (approve, reject, rollback, history: the same main(),
    without a process start and MLflow's import per command); returns (exit code, stdout, stderr)."""
    from pipelines.cli import main

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(list(args))
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


@pytest.fixture(scope="module")
def proposed(demo_raw, mlflow_server, tmp_path_factory):
    """One `skin-cancer run --require-approval` on demo data; (model name, console, workdir)."""
    name = f"approval-cli-{uuid.uuid4().hex[:6]}"
    work = tmp_path_factory.mktemp("work")
    args = ["run", "--require-approval", "--data", str(demo_raw), "--workdir", str(work), "--model-name", name]
    args += ["--models", json.dumps(TINY), "--image-size", "32", "--epochs", "2", "--batch-size", "16"]
    done = run_cli(
        *args, "--val-fraction", "0.25", "--experiment", "approval-cli", env={"MLFLOW_TRACKING_URI": mlflow_server}
    )
    console = done.stdout + done.stderr
    assert done.returncode == 0, console[-4000:]
    return name, console, work


def test_run_proposes_and_a_person_approves_rejects_and_rolls_back(proposed, mlflow_server, decide):
    import mlflow
    from mlflow import MlflowClient

    name, console, _ = proposed
    tracking.setup(mlflow_server, "approval-cli")
    client = MlflowClient()
    assert approval._aliases(client, name) == {"challenger": "1"}  # no @champion on a new registry
    tags = client.get_model_version(name, "1").tags
    assert tags["approval.status"] == "pending" and tags["approval.required"] == "true"
    assert {"approval.evidence", "approval.evidence_sha256", "gate.beats_champion", "gate.subgroup_recall"} <= set(tags)
    assert "waiting for approval: @champion did not move" in console
    assert 'skin-cancer approve 1 --reason "..."' in console

    facts, digest = approval.load_evidence(client, name, "1")
    assert digest == tags["approval.evidence_sha256"]
    run_id = client.get_model_version(name, "1").run_id
    assert facts["mlflow_run_id"] == run_id and facts["kfp_run"]["id"].startswith("local-")
    assert facts["validation"]["intervals_95"]["accuracy"] and facts["champion_comparison"] is None
    assert facts["subgroups"]["uri"] == f"runs:/{run_id}/subgroups.json"
    subgroups = Path(mlflow.artifacts.download_artifacts(facts["subgroups"]["uri"])).read_bytes()
    assert approval.sha256_hex(subgroups) == facts["subgroups"]["sha256"]
    assert "skin_tone_ita" in json.loads(subgroups)["attributes"]
    card = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="model_card.md")).read_text()
    assert "## Who it was tested on" in card and "waiting for a person's approval" in card
    page = Path(
        mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="selection/dashboard.html")
    ).read_text()
    assert "Waiting for a person&#x27;s approval: skin-cancer approve 1" in page and 'id="subgroups"' in page

    code, _, err = decide("approve", "9", "--model-name", name, "--reason", "typo")
    assert code == 2 and f"{name} has no version 9" in err
    code, out, err = decide("approve", "1", "--model-name", name, "--reason", "first model; evidence read")
    assert code == 0 and f"approved {name} version 1" in out, err
    assert approval._aliases(client, name)["champion"] == "1"
    tags = client.get_model_version(name, "1").tags
    assert (tags["approval.status"], tags["approval.reason"], tags["approval.authenticated"]) == (
        "approved",
        "first model; evidence read",
        "false",  # the test server does not authenticate (test_approval.py covers basic auth)
    )
    assert tags["approval.by"] and tags["approval.at"] and tags["approval.evidence_sha256"] == digest
    card = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="model_card.md")).read_text()
    assert "Version 1 is **approved**" in card
    page = Path(
        mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="selection/dashboard.html")
    ).read_text()
    assert "Version 1 is **approved**" in page  # the card the dashboard embeds was rewritten too

    # A second proposal (a probe model, no training) whose subgroup gate failed: refused without
    # the override, nothing moves; approved with it; then a third is rejected.
    experiment = mlflow.get_experiment_by_name("approval-cli").experiment_id
    for version, failed in (("2", True), ("3", False)):
        probe = log_model_run(probe_model("A"), experiment, f"probe-{version}", image_size=16)
        mlflow.register_model(probe.model_uri, name)
        gates = [{"name": "beats_champion", "passed": True}, {"name": "subgroup_recall", "passed": not failed}]
        approval.propose(client, name, version, probe.run_id, {"gates": gates}, approval.Identity("pipeline", False))
    code, _, err = decide("approve", "2", "--model-name", name, "--reason", "ok")
    assert code == 2 and "failed the gate(s) subgroup_recall" in err
    assert approval._aliases(client, name)["champion"] == "1"
    args = ["--model-name", name, "--reason", "small groups; reviewed", "--override-gate", "subgroup_recall"]
    assert decide("approve", "2", *args)[0] == 0
    assert decide("reject", "3", "--model-name", name, "--reason", "worse on dark images")[0] == 0
    assert approval._aliases(client, name)["champion"] == "2"

    code, _, err = decide("rollback", "--model-name", name, "--reason", "complaints from the clinic")
    assert code == 0, err
    assert approval._aliases(client, name)["champion"] == "1"
    code, history, _ = decide("history", "--model-name", name)
    assert code == 0
    events = [line.split()[1:3] for line in history.splitlines()[1:]]
    assert events == [
        ["rolled", "back"],
        ["rejected", "3"],
        ["approved", "2"],
        ["proposed", "3"],
        ["proposed", "2"],
        ["approved", "1"],
        ["proposed", "1"],
    ]
    assert "complaints from the clinic" in history and "[override: subgroup_recall]" in history
