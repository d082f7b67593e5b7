"""Service plugins (`mode: service`): their own workers, as a Deployment; never a node's.

The manifest's `mode`, the Deployment `build_deployment()` makes (checked with
kubernetes-validate and a server's rules, and the one in deploy/base), and,
with real processes on a real nats-server, a `noetl worker --plugin greet`
that serves a node's greet step while the node itself runs no greet worker.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import attrs
import pytest
import yaml

from noetl_actors.errors import ManifestError
from noetl_actors.runners import (
    PLUGIN_PATH_ENV,
    KubeSettings,
    build_deployment,
    find_plugins,
    read_manifest,
)
from tests.kube_helpers import check
from tests.node_helpers import Cli, actor, running_node, spawn
from tests.run_helpers import REPO, cli_command, wait_until, write_playbook

pytestmark = pytest.mark.timeout(180)

EXAMPLE_PLUGINS = REPO / "examples" / "plugins"
GREET = EXAMPLE_PLUGINS / "greet" / "plugin.yaml"


def plugin_folder(tmp_path: Path, manifest: str) -> Path:
    folder = tmp_path / "svc"
    folder.mkdir()
    (folder / "plugin.py").write_text("def run(input, ctx):\n    return input\n")
    path = folder / "plugin.yaml"
    path.write_text("name: svc\n" + manifest)
    return path


# -- the manifest --------------------------------------------------------------------------


def test_mode_service_is_read_and_job_is_the_default() -> None:
    greet = read_manifest(GREET)
    assert greet.mode == "service" and greet.service
    assert not find_plugins()["shell"].service
    assert {info.mode for info in find_plugins().values()} == {"job"}


@pytest.mark.parametrize(("manifest", "message"), [
    ("mode: service\n", "mode 'service' needs an 'image': its Deployment runs it"),
    ("mode: daemon\nimage: x:1\n", "mode must be job or service (got 'daemon')"),
    ("mode: service\nimage: x:1\nmodes: [inproc, kubernetes]\n",
     "a service plugin runs its attempts in its own workers' pods: its modes are inproc "
     "and process, not kubernetes"),
])
def test_a_bad_service_manifest_says_what_is_wrong(tmp_path: Path, manifest: str,
                                                   message: str) -> None:
    path = plugin_folder(tmp_path, manifest)
    with pytest.raises(ManifestError) as caught:
        read_manifest(path)
    assert str(caught.value) == f"{path}: {message}"


def test_a_nodes_config_runs_no_service_plugin_worker_unless_it_enables_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from noetl_actors.playbook import Catalog
    from noetl_actors.services import load_node_config

    monkeypatch.setenv(PLUGIN_PATH_ENV, str(EXAMPLE_PLUGINS))
    catalog = Catalog.default()
    assert "greet" in catalog.plugins
    assert "greet" in load_node_config(catalog=catalog).workers.disabled
    assert "shell" not in load_node_config(catalog=catalog).workers.disabled
    enabling = tmp_path / "node.yaml"
    enabling.write_text("workers:\n  plugins:\n    greet: {enabled: true}\n")
    assert "greet" not in load_node_config(enabling, catalog=catalog).workers.disabled


# -- the Deployment ------------------------------------------------------------------------


def test_the_deployment_runs_the_plugins_workers_in_its_image_and_is_valid() -> None:
    greet = read_manifest(GREET)
    deployment = build_deployment(greet, nats_url="nats://nats:4222", replicas=3,
                                  namespace="noetl")
    check(deployment)
    spec = deployment["spec"]
    assert spec["replicas"] == 3
    [container] = spec["template"]["spec"]["containers"]
    assert container["image"] == "noetl-actors/greet:0.1.0"
    assert container["command"] == ["noetl", "worker", "--plugin", "greet"]
    assert {"name": "NATS_URL", "value": "nats://nats:4222"} in container["env"]
    assert container["resources"] == {"requests": {"cpu": "50m", "memory": "96Mi"},
                                      "limits": {"memory": "256Mi"}}
    labels = spec["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "noetl-actors", "reaches NATS as plugins do"
    assert all(labels[k] == v for k, v in spec["selector"]["matchLabels"].items())
    assert spec["template"]["spec"]["automountServiceAccountToken"] is False


def test_settings_lay_over_the_plugins_and_a_job_plugin_has_no_deployment() -> None:
    greet = read_manifest(GREET)
    deployment = build_deployment(greet, nats_url="nats://nats:4222", settings=KubeSettings(
        resources={"limits": {"memory": "1Gi"}}, service_account="greeter",
        node_selector={"pool": "io"}))
    check(deployment)
    pod = deployment["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"] == {"memory": "1Gi"}
    assert pod["containers"][0]["resources"]["requests"] == {"cpu": "50m", "memory": "96Mi"}
    assert pod["serviceAccountName"] == "greeter" and "automountServiceAccountToken" not in pod
    assert pod["nodeSelector"] == {"pool": "io"}
    with pytest.raises(ValueError, match="plugin 'shell' is not a service plugin"):
        build_deployment(find_plugins()["shell"], nats_url="nats://nats:4222")
    with pytest.raises(ValueError, match="replicas must be >= 0"):
        build_deployment(greet, nats_url="nats://nats:4222", replicas=-1)
    renamed = attrs.evolve(greet, name="My_Plugin")
    assert build_deployment(renamed, nats_url="n")["metadata"]["name"] == "noetl-plugin-my-plugin"


def test_the_example_in_deploy_base_is_what_the_builder_makes() -> None:
    on_disk = yaml.safe_load((REPO / "deploy" / "base" / "plugin-greet.yaml").read_text())
    assert on_disk == build_deployment(read_manifest(GREET), nats_url="nats://nats:4222",
                                       replicas=2)
    kustomization = yaml.safe_load((REPO / "deploy" / "base" / "kustomization.yaml").read_text())
    assert "plugin-greet.yaml" in kustomization["resources"]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_the_base_still_builds_with_kubectl_kustomize() -> None:
    done = subprocess.run(["kubectl", "kustomize", str(REPO / "deploy" / "base")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    names = [(o["kind"], o["metadata"]["name"]) for o in yaml.safe_load_all(done.stdout) if o]
    assert ("Deployment", "noetl-plugin-greet") in names


# -- for real: a worker process serves a node's step ------------------------------------------


GREETS = """
    tasks:
      - name: t
        steps:
          - {name: hi, plugin: greet, with: {who: ada}}
    """


def greet_step(record: dict[str, Any]) -> dict[str, Any]:
    step: dict[str, Any] = record["tasks"]["t"]["steps"]["hi"]
    return step


def test_a_node_runs_no_worker_for_a_service_plugin_and_its_own_worker_serves_the_step(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PLUGIN_PATH_ENV, str(EXAMPLE_PLUGINS))
    with running_node(tmp_path, "a") as node:
        cli = Cli(node.url)
        tree = cli.tree()["a"]["tree"]
        assert actor(tree, "/a/workers/shell") is not None
        assert actor(tree, "/a/workers/greet") is None, "a service plugin: no node worker"

        workflow_id = cli.submit(write_playbook(tmp_path, "greets", GREETS))
        wait_until(lambda: greet_step(cli.status(workflow_id))["status"] == "waiting", 60,
                   "the greet step to wait for a worker")
        assert greet_step(cli.status(workflow_id))["waiting"]["plugin"] == "greet"

        worker = spawn(cli_command("worker", "--nats", node.url, "--plugin", "greet"),
                       tmp_path, "greet-worker")
        try:
            record = cli.wait_status(workflow_id, {"succeeded", "failed"}, timeout=60)
            assert record["status"] == "succeeded", record.get("error")
            output = greet_step(record)["output"]
            assert output["greeting"] == "hello ada"
            assert output["by"].endswith(f":{worker.pid}"), (output, "run by the worker")
            assert cli.ok("logs", workflow_id, "t.hi").stdout == \
                f"greeting ada from {output['by']}\n", "its lines, published by the worker"
            events = [e for e in cli.events(workflow_id) if e.get("type") == "event"]
            assert {e["worker"] for e in events} == {f"{os.uname().nodename}/node/workers/greet"}
        finally:
            worker.cleanup()
