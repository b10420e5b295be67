"""Approval against real MLflow servers, with probe models (tests/support/probe_data.py): no
training, seconds per registration.

- a pipeline that requires approval proposes (@challenger, pending, evidence) and never moves
  @champion; approve moves it with every approval.* tag; reject, a failed gate and changed
  evidence leave it where it was; rollback restores @previous; history lists it all;
- with MLflow's basic-auth app: approval.by is the user the server authenticated, and a user
  without EDIT on the registered model is refused by the registry, with nothing moved.
"""

from __future__ import annotations

import os
import uuid

import pytest

from components.core.data.dataset import SplitArrays
from components.core.registry import approval, evidence, tracking, versions
from tests.support.probe_data import log_model_run
from tests.support.processes import start_mlflow_server, stop
from tests.support.reliability_support import probe_model, write_probe_splits


@pytest.fixture(scope="module")
def probe_splits(tmp_path_factory):
    paths = write_probe_splits(tmp_path_factory.mktemp("probe"))
    return SplitArrays(paths["val"]), SplitArrays(paths["test"])


def gate(name: str, passed: bool) -> dict:
    return {"name": name, "passed": passed, "detail": "by hand"}


def propose(client, name, reg, run_id, gates, who="pipeline"):
    facts = {"version": reg.version, "gates": gates, "submitted_by": who}
    return approval.propose(client, name, reg.version, run_id, facts, approval.Identity(who, False))


def champion(client, name):
    return approval._aliases(client, name).get("champion")


@pytest.fixture(scope="module")
def plain(mlflow_server):
    from mlflow import MlflowClient

    experiment = tracking.setup(mlflow_server, "test-approval")
    return MlflowClient(), experiment


def test_propose_approve_reject_rollback_and_history(plain, probe_splits):
    client, experiment = plain
    val, test = probe_splits
    name = f"approval-{uuid.uuid4().hex[:6]}"
    alice = approval.Identity("alice", False)
    # A reads R: 20/20; B reads G: 14/20; C says benign: 10/20 (tests/support/reliability_support.py).
    c, b, a = (log_model_run(probe_model(k), experiment, f"probe-{k}", image_size=16) for k in "CBA")

    first = versions.register_winner(c, name, val, test, {}, require_approval=True)
    assert (first.alias, first.proposed, first.champion_changed, first.champion_version) == (
        "challenger",
        True,
        False,
        "",
    )
    digest = propose(client, name, first, c.run_id, [gate("beats_champion", True), gate("subgroup_recall", True)])
    tags = client.get_model_version(name, "1").tags
    assert tags["approval.status"] == "pending" and tags["approval.evidence_sha256"] == digest
    assert tags["gate.subgroup_recall"] == "pass"
    assert champion(client, name) is None  # absent on a new registry, and still absent

    with pytest.raises(approval.ApprovalError, match="needs --reason"):
        approval.approve(client, name, "1", "  ", alice)
    with pytest.raises(approval.ApprovalError, match="submitted the run.*SKIN_CANCER_FOUR_EYES"):
        approval.approve(client, name, "1", "my own run", approval.Identity("pipeline", True), four_eyes=True)
    assert champion(client, name) is None
    event = approval.approve(client, name, "1", "first model, evidence read", alice, four_eyes=True)
    tags = client.get_model_version(name, "1").tags
    assert champion(client, name) == "1"
    assert {k: tags[k] for k in ("approval.status", "approval.by", "approval.authenticated", "approval.reason")} == {
        "approval.status": "approved",
        "approval.by": "alice",
        "approval.authenticated": "false",
        "approval.reason": "first model, evidence read",
    }
    assert tags["approval.evidence_sha256"] == digest and tags["approval.at"].endswith("Z")
    assert event["event"] == "approved" and "from_version" not in event

    # B beats C: proposed with a failed gate; approval without the override is refused.
    second = versions.register_winner(b, name, val, test, {}, require_approval=True)
    assert (second.version, second.alias, second.proposed) == ("2", "challenger", True)
    propose(client, name, second, b.run_id, [gate("beats_champion", True), gate("subgroup_recall", False)])
    with pytest.raises(approval.ApprovalError, match="failed the gate.*subgroup_recall"):
        approval.approve(client, name, "2", "looks fine", alice)
    with pytest.raises(approval.ApprovalError, match="not a failed gate"):
        approval.approve(client, name, "2", "looks fine", alice, overrides=["beats_champion"])
    assert champion(client, name) == "1" and client.get_model_version(name, "2").tags["approval.status"] == "pending"
    approval.approve(client, name, "2", "the small group is 3 images; reviewed", alice, overrides=["subgroup_recall"])
    assert (champion(client, name), approval._aliases(client, name)["previous"]) == ("2", "1")
    assert client.get_model_version(name, "2").tags["approval.override"] == "subgroup_recall"

    # A beats B: proposed, then its evidence is changed: refused, nothing moves; then rejected.
    third = versions.register_winner(a, name, val, test, {}, require_approval=True)
    propose(client, name, third, a.run_id, [gate("beats_champion", True), gate("subgroup_recall", True)])
    client.log_text(a.run_id, '{"gates": []}', approval.EVIDENCE_FILE)
    with pytest.raises(approval.ApprovalError, match="has changed since it was proposed"):
        approval.approve(client, name, "3", "ok", alice)
    approval.reject(client, name, "3", "evidence was tampered with", alice)
    assert champion(client, name) == "2" and client.get_model_version(name, "3").tags["approval.status"] == "rejected"
    with pytest.raises(approval.ApprovalError, match="is rejected"):
        approval.approve(client, name, "3", "changed my mind", alice)

    approval.rollback(client, name, "v2 misbehaves in clinic", alice)
    assert (champion(client, name), approval._aliases(client, name)["previous"]) == ("1", "2")
    assert client.get_model_version(name, "2").tags["approval.status"] == "rolled back"
    with pytest.raises(approval.ApprovalError, match="was rolled back"):
        approval.rollback(client, name, "again", alice)

    events = approval.history(client, name)
    assert [(e["event"], e["version"]) for e in events] == [
        ("rolled back", "1"),
        ("rejected", "3"),
        ("proposed", "3"),
        ("approved", "2"),
        ("proposed", "2"),
        ("approved", "1"),
        ("proposed", "1"),
    ]
    assert events[0]["from_version"] == "2" and events[0]["by"] == "alice (unauthenticated)"
    assert events[3]["overrides"] == ["subgroup_recall"] and events[5]["evidence_sha256"] == digest


def test_a_promotion_without_approval_is_in_the_history_too(plain, probe_splits):
    client, experiment = plain
    val, test = probe_splits
    name = f"approval-free-{uuid.uuid4().hex[:6]}"
    c, a = (log_model_run(probe_model(k), experiment, f"probe-{k}", image_size=16) for k in "CA")
    versions.register_winner(c, name, val, test, {})
    reg = versions.register_winner(a, name, val, test, {})
    assert (reg.alias, reg.champion_changed, reg.proposed) == ("champion", True, False)
    assert approval._aliases(client, name)["previous"] == "1"
    assert client.get_model_version(name, "2").tags["approval.status"] == "not required"
    assert [(e["event"], e["version"], e.get("from_version")) for e in approval.history(client, name)] == [
        ("promoted", "2", "1"),
        ("promoted", "1", None),
    ]
    with pytest.raises(approval.ApprovalError, match="records no Model artifact"):
        approval.deployable(client, name)


def test_evidence_gates_follow_the_comparison_and_the_subgroup_report():
    from types import SimpleNamespace

    reg = SimpleNamespace(previous_champion=None, proposed=True, champion_changed=False)
    fair = {"gate": {"name": "subgroup_recall", "passed": True, "detail": "every group"}}
    assert evidence.gates(SimpleNamespace(subgroups=fair), reg) == [
        {"name": "beats_champion", "passed": True, "detail": "no champion to compare with"},
        {"name": "subgroup_recall", "passed": True, "detail": "every group"},
    ]
    missing = evidence.gates(SimpleNamespace(subgroups={"error": "ValueError: boom"}), reg)[1]
    assert missing["passed"] is False and "ValueError: boom" in missing["detail"]


# --- MLflow's basic-auth app ----------------------------------------------------------------


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    """`mlflow server --app-name basic-auth` (SQLite) with an admin, alice (EDIT on the model
    once it exists) and bob (the default READ)."""
    root = tmp_path_factory.mktemp("mlflow-auth")
    config = root / "basic_auth.ini"
    config.write_text(
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = sqlite:///{root / 'auth.db'}\n"
        "admin_username = admin\nadmin_password = admin-secret-1\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        # One PBKDF2 check per user, not per request (about 0.4 s each on 2 cores).
        "auth_cache_ttl_seconds = 300\n"
    )
    secrets = {"MLFLOW_AUTH_CONFIG_PATH": str(config), "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-only"}
    proc, uri = start_mlflow_server(root, "--app-name", "basic-auth", env={**os.environ, **secrets})
    yield uri
    stop(proc, 30)


def as_user(monkeypatch, user: str, password: str) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)


def test_basic_auth_names_the_approver_and_refuses_a_reader(auth_server, probe_splits, monkeypatch):
    from mlflow import MlflowClient
    from mlflow.server import get_app_client

    val, test = probe_splits
    as_user(monkeypatch, "admin", "admin-secret-1")
    experiment = tracking.setup(auth_server, "test-approval-auth")
    users = get_app_client("basic-auth", tracking_uri=auth_server)
    users.create_user("alice", "alice-secret-1")
    users.create_user("bob", "bob-secret-1")
    name = f"auth-{uuid.uuid4().hex[:6]}"
    client = MlflowClient()
    winner = log_model_run(probe_model("A"), experiment, "probe-A", image_size=16)
    reg = versions.register_winner(winner, name, val, test, {}, require_approval=True)
    propose(client, name, reg, winner.run_id, [gate("beats_champion", True)], who="admin")
    users.grant_user_permission("alice", "registered_model", name, "EDIT")

    as_user(monkeypatch, "bob", "bob-secret-1")
    bob = approval.current_identity(auth_server)
    assert (bob.name, bob.authenticated) == ("bob", True)
    with pytest.raises(approval.ApprovalError, match="refused bob to approve.*needs EDIT"):
        approval.approve(MlflowClient(), name, reg.version, "I read it", bob)
    tags = client.get_model_version(name, reg.version).tags
    assert champion(client, name) is None and tags["approval.status"] == "pending" and "approval.by" not in tags

    as_user(monkeypatch, "alice", "alice-secret-1")
    alice = approval.current_identity(auth_server)
    assert str(alice) == "alice"
    approval.approve(MlflowClient(), name, reg.version, "reviewed with the dermatology lead", alice)
    tags = MlflowClient().get_model_version(name, reg.version).tags
    assert (tags["approval.by"], tags["approval.authenticated"], tags["approval.status"]) == (
        "alice",
        "true",
        "approved",
    )
    assert champion(MlflowClient(), name) == reg.version
    assert approval.history(MlflowClient(), name)[0]["by"] == "alice"
