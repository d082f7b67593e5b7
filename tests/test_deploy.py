"""deploy/ builds with `kubectl kustomize`, and every object is one a server would take.

Each object of the example overlay is checked with kubernetes-validate
(strict, the pinned version) and the rules only a server checks; then what
deploy/ promises: the node's Role allows exactly what the Job runner does,
the nodes are several with probes on the health endpoint their config
serves, every container has requests and limits, plugin pods reach NATS and
nothing of the nodes. Needs `kubectl` (it embeds kustomize); without it the
tests are skipped and say so.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from noetl_actors import __version__
from noetl_actors.runners import Attempt, KubeSettings, build_job, find_plugins
from noetl_actors.services import load_node_config
from tests.kube_helpers import check
from tests.run_helpers import REPO

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None,
                                reason="kubectl is not installed: deploy/ cannot be built")

OVERLAY = REPO / "deploy" / "overlays" / "example"
IMAGE = f"noetl-actors/noetl:{__version__}"


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    done = subprocess.run(["kubectl", "kustomize", str(OVERLAY)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return [obj for obj in yaml.safe_load_all(done.stdout) if obj]


def one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def test_the_overlay_holds_every_part_in_its_namespace(objects: list[dict[str, Any]]) -> None:
    kinds = sorted(f"{o['kind']}/{o['metadata']['name']}" for o in objects
                   if o["kind"] != "ConfigMap")
    assert kinds == ["Deployment/noetl-node", "Deployment/noetl-plugin-greet",
                     "Namespace/noetl", "NetworkPolicy/nats-clients",
                     "NetworkPolicy/noetl-node-no-ingress", "NetworkPolicy/noetl-plugin-egress",
                     "Role/noetl-node", "RoleBinding/noetl-node", "Service/nats",
                     "Service/nats-headless", "ServiceAccount/noetl-node", "StatefulSet/nats"]
    assert all(o["metadata"].get("namespace") == "noetl" for o in objects
               if o["kind"] != "Namespace")


def test_every_object_is_valid_for_the_pinned_version_and_a_server(
        objects: list[dict[str, Any]]) -> None:
    for obj in objects:
        check(obj)


def test_the_nodes_role_allows_exactly_what_the_job_runner_does(
        objects: list[dict[str, Any]]) -> None:
    rules = one(objects, "Role", "noetl-node")["rules"]
    allowed = {(group, resource, verb) for rule in rules for group in rule["apiGroups"]
               for resource in rule["resources"] for verb in rule["verbs"]}
    assert allowed == {
        *(("batch", "jobs", verb) for verb in ("create", "get", "list", "watch", "delete")),
        *(("", "pods", verb) for verb in ("get", "list", "watch")),
        ("", "pods/log", "get"),
    }
    assert all(set(rule) == {"apiGroups", "resources", "verbs"} for rule in rules)
    binding = one(objects, "RoleBinding", "noetl-node")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": "noetl-node"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "noetl-node",
                                    "namespace": "noetl"}]
    assert not [o for o in objects if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]


def node_config(objects: list[dict[str, Any]], tmp_path: Path) -> Any:
    maps = [o for o in objects if o["kind"] == "ConfigMap"
            and o["metadata"]["name"].startswith("noetl-node-config")]
    assert len(maps) == 1
    path = tmp_path / "node.yaml"
    path.write_text(maps[0]["data"]["node.yaml"])
    return load_node_config(path)


def test_the_nodes_are_several_with_probes_on_the_port_their_config_serves(
        objects: list[dict[str, Any]], tmp_path: Path) -> None:
    deployment = one(objects, "Deployment", "noetl-node")
    assert deployment["spec"]["replicas"] == 3
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "noetl-node"
    [container] = pod["containers"]
    assert container["image"] == IMAGE
    config = node_config(objects, tmp_path)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["health"] == config.health_port == 8080
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert "--nats" in container["args"] and "nats://nats:4222" in container["args"]
    mounted = {v["name"]: v for v in pod["volumes"]}["config"]["configMap"]["name"]
    assert mounted.startswith("noetl-node-config")


def test_every_container_has_requests_and_limits(objects: list[dict[str, Any]]) -> None:
    for obj in objects:
        template = obj.get("spec", {}).get("template")
        if template is None:
            continue
        for container in template["spec"]["containers"]:
            resources = container.get("resources", {})
            assert resources.get("requests", {}).keys() >= {"cpu", "memory"}, obj["kind"]
            assert "memory" in resources.get("limits", {}), obj["kind"]


def test_nats_keeps_jetstream_on_a_persistent_volume(objects: list[dict[str, Any]]) -> None:
    nats = one(objects, "StatefulSet", "nats")
    [claim] = nats["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"
    [container] = nats["spec"]["template"]["spec"]["containers"]
    assert {"name": "data", "mountPath": "/data"} in container["volumeMounts"]
    [config] = [o for o in objects if o["kind"] == "ConfigMap"
                and o["metadata"]["name"].startswith("nats-config-")]  # a hash follows
    assert "store_dir: /data" in config["data"]["nats.conf"]
    assert config["data"]["roles.conf"] == (REPO / "deploy" / "nats" / "roles.conf").read_text()


def matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def test_plugin_pods_reach_nats_and_nothing_of_the_nodes(objects: list[dict[str, Any]]) -> None:
    plugin = find_plugins()["http"]
    job = build_job(plugin, Attempt(workflow_id="w", task="t", step="s", number=1,
                                    plugin="http"), epoch=1,
                    settings=KubeSettings().over(plugin.kubernetes), ttl_after_finished=60,
                    nats_url="nats://nats:4222")
    plugin_labels = job["spec"]["template"]["metadata"]["labels"]
    node_labels = one(objects, "Deployment", "noetl-node")["spec"]["template"]["metadata"][
        "labels"]
    nats_labels = one(objects, "StatefulSet", "nats")["spec"]["template"]["metadata"]["labels"]
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    # Nodes: isolated for ingress, and no rule lets anything in.
    on_nodes = [p for p in policies if matches(p["spec"]["podSelector"], node_labels)]
    assert on_nodes and all("Ingress" in p["spec"]["policyTypes"] for p in on_nodes)
    assert all(not p["spec"].get("ingress") for p in on_nodes)
    # NATS: plugin pods and nodes may connect on 4222.
    [on_nats] = [p for p in policies if matches(p["spec"]["podSelector"], nats_labels)]
    sources = [peer["podSelector"] for rule in on_nats["spec"]["ingress"]
               for peer in rule["from"]]
    assert any(matches(s, plugin_labels) for s in sources)
    assert any(matches(s, node_labels) for s in sources)
    assert not any(matches(s, {}) for s in sources)  # not everyone
    # Plugin pods' egress: NATS yes; no rule names the nodes' pods.
    [egress] = [p for p in policies if matches(p["spec"]["podSelector"], plugin_labels)]
    peers = [peer for rule in egress["spec"]["egress"] for peer in rule["to"]]
    assert any(matches(peer.get("podSelector", {"matchLabels": {"x": "y"}}), nats_labels)
               for peer in peers)
    assert not any("podSelector" in peer and matches(peer["podSelector"], node_labels)
                   and "namespaceSelector" not in peer for peer in peers)


def test_the_built_in_plugins_jobs_run_the_image_deploy_runs() -> None:
    """One image for the nodes and the built-in plugins' Jobs: the Dockerfile's."""
    images = {info.image for info in find_plugins().values() if info.image}
    assert images == {IMAGE}
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "COPY plugins ./plugins" in dockerfile and "pip install ." in dockerfile
