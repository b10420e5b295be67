"""Slow tier of integration/test_cluster_manifests.py: Kubernetes manifests and container images, checked offline."""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

import pytest

from tests.integration.test_cluster_manifests import by_kind, rendered  # noqa: F401 (fixtures are found by name)
from tests.support.processes import free_port, start, stop


@pytest.mark.slow
def test_the_mlflow_server_command_accepts_in_cluster_host_names(rendered, tmp_path):
    """Run the Deployment's own command line and Host allow-list (MLflow 3 rejects unknown Host
    headers) with a local SQLite store in place of PostgreSQL and S3."""
    container = by_kind(rendered["overlays/minio"], "Deployment")["mlflow"]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e and "$(" not in e["value"]}
    assert container["command"] == ["mlflow"]
    port = free_port()
    args = [a if a != "5000" else str(port) for a in container["args"]]
    args = [a if a != "0.0.0.0" else "127.0.0.1" for a in args]
    assert args == ["server", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"]
    args[-1] = "1"  # one worker is enough here and starts twice as fast on a shared CPU
    proc_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))},
        **env,
        "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "MLFLOW_ARTIFACTS_DESTINATION": str(tmp_path / "artifacts"),
    }
    base = f"http://127.0.0.1:{port}"
    # Fails with the server log's tail when it never answers.
    proc = start([sys.executable, "-m", "mlflow", *args], f"{base}/health", tmp_path / "server.log", 180, proc_env)
    try:

        def status(host: str) -> int:
            req = urllib.request.Request(
                f"{base}/api/2.0/mlflow/experiments/search?max_results=1", headers={"Host": host}
            )
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    return r.status
            except urllib.error.HTTPError as err:
                return err.code

        for host in (
            "mlflow:5000",
            "mlflow.kubeflow-user-example-com.svc.cluster.local:5000",
            "mlflow.kubeflow-user-example-com:5000",
            f"localhost:{port}",
        ):
            assert status(host) == 200, host
        assert status("attacker.example.com") == 403  # the guard is on; the list above is what admits
    finally:
        stop(proc, 30)
