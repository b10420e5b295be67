"""A person's decision on a model: propose, approve, reject, roll back; and the history of it.

Kubeflow Pipelines has no approval step and MLflow's open-source registry no approval workflow,
so approval is built on what the registry has: aliases, model-version tags and per-model
permissions (its basic-auth app). Everything is kept in the registry, nothing beside it:

- a version's decision: the tags ``approval.status`` (pending, approved, rejected, rolled back),
  ``approval.by``, ``approval.at``, ``approval.reason``, ``approval.evidence_sha256``,
  ``approval.override``; its evidence is one JSON artifact in its MLflow run whose SHA-256 the
  proposal recorded (``approval.evidence``, ``approval.evidence_sha256``);
- the history: one registered-model tag per event (``audit.<UTC time>.<id>``, JSON), written
  by every champion change (a pipeline's promotion, an approval, a rollback) and every
  proposal and rejection. ``history`` reads them back, newest first.

Who decided: the user the MLflow server authenticated (``MLFLOW_TRACKING_USERNAME`` with the
basic-auth app), or, when the server does not authenticate, the local user, marked as not
authenticated. The registry enforces who may: a user without EDIT on the registered model is
refused by the server at the first write, before any alias moves.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import logging
import time
import uuid
from dataclasses import dataclass

from components.core import settings
from components.core.registry.champion_lock import RegistryError, champion_lock
from components.core.registry.selection import CHALLENGER, CHAMPION

log = logging.getLogger(__name__)

PREVIOUS = "previous"  # the champion before the last change: what `rollback` restores

STATUS = "approval.status"
PENDING, APPROVED, REJECTED, ROLLED_BACK = "pending", "approved", "rejected", "rolled back"
NOT_REQUIRED = "not required"  # promoted by a pipeline compiled without require_approval
EVIDENCE_URI = "approval.evidence"
EVIDENCE_SHA256 = "approval.evidence_sha256"
EVIDENCE_FILE = "approval/evidence.json"
AUDIT_PREFIX = "audit."
APPROVABLE = (PENDING, ROLLED_BACK)  # a rolled-back version comes back only through a new approval


class ApprovalError(RegistryError):
    """A decision the registry refused or this module refuses; the message says why and what to do."""


@dataclass(frozen=True)
class Identity:
    name: str
    authenticated: bool  # True: the MLflow server checked the password of ``name``

    def __str__(self) -> str:
        return self.name if self.authenticated else f"{self.name} (unauthenticated)"


def server_authenticates(tracking_uri: str) -> bool:
    """Whether the MLflow server at ``tracking_uri`` refuses a request without credentials
    (the basic-auth app answers 401): only then does a username name who is calling."""
    import requests

    if not tracking_uri.startswith(("http://", "https://")):
        return False
    try:
        answer = requests.get(
            f"{tracking_uri.rstrip('/')}/api/2.0/mlflow/experiments/get-by-name",
            params={"experiment_name": settings.EXPERIMENT},
            timeout=10,
        )
    except requests.RequestException as err:
        raise ApprovalError(f"MLflow server {tracking_uri} did not answer ({type(err).__name__})") from None
    return answer.status_code == 401


def current_identity(tracking_uri: str | None = None) -> Identity:
    """Who is deciding, as the registry will record it (see the module's docstring)."""
    import mlflow

    uri = tracking_uri or mlflow.get_tracking_uri()
    user = settings.env("MLFLOW_TRACKING_USERNAME")
    if user and server_authenticates(uri):
        return Identity(user, True)
    return Identity(user or getpass.getuser(), False)


def submitter() -> str:
    """Who submits a run, as the evidence records it (no server round trip: the MLflow username
    if set, else the local user; the approver's identity is the one the server checks)."""
    return settings.env("MLFLOW_TRACKING_USERNAME") or getpass.getuser()


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def evidence_bytes(evidence: dict) -> bytes:
    """The evidence as it is stored and hashed: sorted keys, so equal evidence has one digest."""
    return json.dumps(evidence, indent=1, sort_keys=True, default=float).encode()


# --- the history -------------------------------------------------------------------------------


def record(client, name: str, event: str, version: str | None, by: Identity | str, reason: str, **more) -> dict:
    """Append one event to ``name``'s history (a registered-model tag; needs EDIT on it)."""
    entry = {
        "event": event,
        "version": None if version is None else str(version),
        "by": str(by),
        "authenticated": bool(getattr(by, "authenticated", False)),
        "at": utc_now(),
        "reason": reason,
        **{k: v for k, v in more.items() if v not in (None, "", {}, [])},
    }
    key = f"{AUDIT_PREFIX}{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}.{time.time_ns() % 10**9:09d}.{uuid.uuid4().hex[:6]}"
    client.set_registered_model_tag(name, key, json.dumps(entry, sort_keys=True))
    return entry


def history(client, name: str) -> list[dict]:
    """Every recorded event of ``name``, newest first (the tag key orders events of one second)."""
    from mlflow.exceptions import MlflowException

    try:
        tags = client.get_registered_model(name).tags
    except MlflowException as err:
        if err.error_code == "RESOURCE_DOES_NOT_EXIST":
            return []
        raise
    events = []
    for key, value in tags.items():
        if key.startswith(AUDIT_PREFIX):
            try:
                events.append((key, json.loads(value)))
            except ValueError:
                events.append((key, {"event": "unreadable", "reason": value[:200]}))
    return [e for _, e in sorted(events, key=lambda kv: kv[0], reverse=True)]


# --- proposing ---------------------------------------------------------------------------------


def propose(client, name: str, version: str, run_id: str, evidence: dict, by: Identity | str) -> str:
    """Mark ``version`` (already ``@challenger``) as waiting for a person: the evidence artifact in
    its run, its digest and each gate's result as tags, ``approval.status = pending``. Returns the digest."""
    import mlflow

    data = evidence_bytes(evidence)
    digest = sha256_hex(data)
    mlflow.MlflowClient().log_text(run_id, data.decode(), EVIDENCE_FILE)
    tags = {
        EVIDENCE_URI: f"runs:/{run_id}/{EVIDENCE_FILE}",
        EVIDENCE_SHA256: digest,
        **{f"gate.{g['name']}": "pass" if g["passed"] else "fail" for g in evidence.get("gates", [])},
        STATUS: PENDING,  # last: a version is pending only once its evidence is in place
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version), key, value)
    failed = [g["name"] for g in evidence.get("gates", []) if not g["passed"]]
    record(
        client,
        name,
        "proposed",
        version,
        by,
        "would become champion by the promotion rule; waits for a person's approval",
        evidence_sha256=digest,
        failed_gates=failed,
    )
    return digest


def load_evidence(client, name: str, version: str) -> tuple[dict, str]:
    """The version's evidence, checked against the digest recorded when it was proposed."""
    import mlflow

    v = _version(client, name, version)
    uri, recorded = v.tags.get(EVIDENCE_URI), v.tags.get(EVIDENCE_SHA256)
    if not uri or not recorded:
        raise ApprovalError(
            f"{name} version {version} has no approval evidence: it was not proposed for approval "
            f"(status: {v.tags.get(STATUS, 'none')}). Only a version a pipeline run proposed "
            "(@challenger, approval.status = pending) can be approved"
        )
    try:
        path = mlflow.artifacts.download_artifacts(uri)
    except Exception as err:  # noqa: BLE001 - any failure to fetch it means there is nothing to check
        raise ApprovalError(
            f"{name} version {version}: cannot read its evidence {uri} ({type(err).__name__})"
        ) from None
    with open(path, "rb") as fh:
        data = fh.read()
    if sha256_hex(data) != recorded:
        raise ApprovalError(
            f"{name} version {version}: its evidence {uri} has changed since it was proposed (SHA-256 "
            f"{sha256_hex(data)[:12]}…, recorded {recorded[:12]}…); nothing was approved. Rerun the "
            "pipeline to propose the model again with fresh evidence"
        )
    return json.loads(data), recorded


# --- a person's decisions ----------------------------------------------------------------------


def _refused(err: Exception, name: str, by: Identity, what: str) -> ApprovalError:
    code = getattr(err, "error_code", "")
    if code == "PERMISSION_DENIED" or "403" in str(err)[:200]:
        return ApprovalError(
            f"the MLflow server refused {by} to {what} {name}: the user needs EDIT on the registered model "
            "(docs/approval.md, 'Who may approve'); nothing was changed"
        )
    return ApprovalError(f"could not {what} {name} ({type(err).__name__}: {err}); nothing was changed")


def _version(client, name: str, version: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version(name, str(version))
    except MlflowException as err:
        if err.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise ApprovalError(
                f"{name} has no version {version}; `skin-cancer history --model-name {name}` lists its versions' decisions"
            ) from None
        raise


def _aliases(client, name: str) -> dict[str, str]:
    return {a: str(v) for a, v in (client.get_registered_model(name).aliases or {}).items()}


def _write_tags(client, name: str, version: str, tags: dict[str, str]) -> None:
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version), key, value)


def approve(
    client,
    name: str,
    version: str,
    reason: str,
    by: Identity,
    overrides: list[str] | None = None,
    four_eyes: bool = False,
) -> dict:
    """Make the proposed ``version`` the champion (the old one becomes ``@previous``) and record
    who, when, why, on which evidence. Refuses without a reason, with changed evidence, with a
    failed gate not overridden by name, and (``four_eyes``) when the approver submitted the run."""
    from mlflow.exceptions import MlflowException

    version, reason, overrides = str(version), (reason or "").strip(), list(overrides or [])
    if not reason:
        raise ApprovalError("an approval needs --reason: what a later reader should know about this decision")
    v = _version(client, name, version)
    status = v.tags.get(STATUS, "")
    if status not in APPROVABLE:
        raise ApprovalError(
            f"{name} version {version} is {status or 'not proposed'}; only a pending (or rolled back) "
            "version can be approved"
        )
    evidence, digest = load_evidence(client, name, version)
    failed = sorted(g["name"] for g in evidence.get("gates", []) if not g["passed"])
    unknown = sorted(set(overrides) - set(failed))
    if unknown:
        raise ApprovalError(
            f"--override-gate {', '.join(unknown)}: not a failed gate of version {version} (failed: {', '.join(failed) or 'none'})"
        )
    missing = [g for g in failed if g not in overrides]
    if missing:
        details = "; ".join(f"{g['name']}: {g.get('detail', '')}" for g in evidence["gates"] if g["name"] in missing)
        raise ApprovalError(
            f"{name} version {version} failed the gate(s) {', '.join(missing)} ({details}); nothing was approved. "
            "If you accept that, approve again with --override-gate NAME for each, and say why in --reason"
        )
    submitted = str(evidence.get("submitted_by") or "")
    if four_eyes and submitted and submitted.split(" (")[0] == by.name:
        raise ApprovalError(
            f"{by.name} submitted the run that proposed version {version}; SKIN_CANCER_FOUR_EYES=1 requires "
            "someone else to approve it"
        )
    tags = {
        "approval.by": by.name,
        "approval.authenticated": str(by.authenticated).lower(),
        "approval.at": utc_now(),
        "approval.reason": reason,
        "approval.evidence_sha256": digest,
        **({"approval.override": ",".join(overrides)} if overrides else {}),
    }
    with champion_lock(client, name) as still_held:
        before = _aliases(client, name).get(CHAMPION)
        try:
            # The version's tags first: a user without EDIT is refused here, before any alias moves.
            _write_tags(client, name, version, {**tags, STATUS: APPROVED})
            still_held()
            if before and before != version:
                client.set_registered_model_alias(name, PREVIOUS, before)
            client.set_registered_model_alias(name, CHAMPION, version)
        except MlflowException as err:
            _undo_status(client, name, version, status)
            raise _refused(err, name, by, "approve a version of") from None
        drop_challenger(client, name, version)
        return record(
            client,
            name,
            "approved",
            version,
            by,
            reason,
            from_version=before,
            evidence_sha256=digest,
            overrides=overrides,
        )


def drop_challenger(client, name: str, version: str) -> None:
    """``@challenger`` off ``version``, which just became champion, if the user may: deleting an
    alias needs MANAGE in MLflow's basic-auth app, more than an approver's EDIT. Left in place it is
    harmless (the status says what the version is); the next proposal moves it."""
    from mlflow.exceptions import MlflowException

    try:
        if _aliases(client, name).get(CHALLENGER) == version:
            client.delete_registered_model_alias(name, CHALLENGER)
    except MlflowException as err:
        log.info("left @challenger on version %s (%s)", version, getattr(err, "error_code", type(err).__name__))


def _undo_status(client, name: str, version: str, status: str) -> None:
    """Put the status back after a refused alias move (best effort: a refused write refuses this too)."""
    try:
        client.set_model_version_tag(name, version, STATUS, status)
    except Exception:  # noqa: BLE001 - the refusal itself is what the caller reports
        pass


def reject(client, name: str, version: str, reason: str, by: Identity) -> dict:
    """Record a person's no: ``approval.status = rejected``, the version leaves ``@challenger``;
    ``@champion`` is not touched."""
    from mlflow.exceptions import MlflowException

    version, reason = str(version), (reason or "").strip()
    if not reason:
        raise ApprovalError("a rejection needs --reason")
    v = _version(client, name, version)
    if _aliases(client, name).get(CHAMPION) == version:
        raise ApprovalError(f"{name} version {version} is the champion; to replace it, use `skin-cancer rollback`")
    try:
        _write_tags(
            client,
            name,
            version,
            {
                STATUS: REJECTED,
                "approval.by": by.name,
                "approval.authenticated": str(by.authenticated).lower(),
                "approval.at": utc_now(),
                "approval.reason": reason,
            },
        )
        if _aliases(client, name).get(CHALLENGER) == version:
            client.delete_registered_model_alias(name, CHALLENGER)
    except MlflowException as err:
        raise _refused(err, name, by, "reject a version of") from None
    return record(
        client,
        name,
        "rejected",
        version,
        by,
        reason,
        evidence_sha256=v.tags.get(EVIDENCE_SHA256),
        was=v.tags.get(STATUS),
    )


def rollback(client, name: str, reason: str, by: Identity) -> dict:
    """``@champion`` back to ``@previous``; the version rolled away from is marked rolled back and
    becomes ``@previous`` (the champion before the last change), so a second rollback is refused:
    a rolled-back version returns only through a new approval."""
    from mlflow.exceptions import MlflowException

    reason = (reason or "").strip()
    if not reason:
        raise ApprovalError("a rollback needs --reason")
    with champion_lock(client, name) as still_held:
        aliases = _aliases(client, name)
        current, previous = aliases.get(CHAMPION), aliases.get(PREVIOUS)
        if not previous or not current:
            raise ApprovalError(f"{name} has no @previous champion to roll back to; nothing was changed")
        if client.get_model_version(name, previous).tags.get(STATUS) == ROLLED_BACK:
            raise ApprovalError(
                f"@previous of {name} is version {previous}, which was rolled back; to make it champion again, "
                f"approve it (skin-cancer approve {previous} --reason ...). Nothing was changed"
            )
        try:
            _write_tags(client, name, current, {STATUS: ROLLED_BACK})
            still_held()
            client.set_registered_model_alias(name, CHAMPION, previous)
            client.set_registered_model_alias(name, PREVIOUS, current)
        except MlflowException as err:
            raise _refused(err, name, by, "roll back") from None
        return record(client, name, "rolled back", previous, by, reason, from_version=current)


def deployable(client, name: str) -> tuple[str, str]:
    """(version, Model artifact URI) of ``name``'s ``@champion``, if it may be served: approved by
    a person, or promoted by a pipeline that did not require approval. Otherwise ApprovalError."""
    from mlflow.exceptions import MlflowException

    try:
        v = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        raise ApprovalError(
            f"{name} has no @champion to deploy; approve a version first (skin-cancer approve)"
        ) from None
    status = v.tags.get(STATUS, "")
    if status not in (APPROVED, NOT_REQUIRED):
        raise ApprovalError(
            f"{name} version {v.version} is @champion but its approval status is {status or 'missing'}; "
            "only an approved champion is deployed (skin-cancer approve, docs/approval.md)"
        )
    artifact = v.tags.get("model_artifact", "")
    if not artifact:
        raise ApprovalError(
            f"{name} version {v.version} records no Model artifact (tag model_artifact): it was registered "
            "by an older pipeline; rerun training to register a deployable version"
        )
    return str(v.version), artifact
