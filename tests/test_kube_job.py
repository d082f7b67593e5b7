"""One attempt -> one batch/v1 Job (`build_job`), checked as an API server would.

Every Job built here goes through `kubernetes-validate` (strict, the pinned
Kubernetes version) and the rules only a server checks (`server_problems`):
names, labels, a Job's restartPolicy. Names and labels are checked for any
text hypothesis can make of workflow ids, task and step names.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import kubernetes_validate
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from noetl_actors.errors import ManifestError
from noetl_actors.runners import (
    COMMAND_ENV,
    ENTRY_COMMAND,
    KUBERNETES_VERSION,
    Attempt,
    KubeSettings,
    PluginInfo,
    build_job,
    find_plugins,
    job_labels,
    job_name,
    read_manifest,
)
from tests.kube_helpers import DNS_LABEL, LABEL_VALUE, check, server_problems

KUBE_PLUGINS = sorted(name for name, info in find_plugins().items() if "kubernetes" in info.modes)


def attempt(**changes: object) -> Attempt:
    fields: dict[str, object] = {"workflow_id": "wf-1", "task": "load", "step": "fetch",
                                 "number": 1, "plugin": "http", "input": {"url": "http://x"}}
    fields.update(changes)
    return Attempt(**fields)  # type: ignore[arg-type]


def job(plugin: PluginInfo, the_attempt: Attempt, step: KubeSettings | None = None,
        **kwargs: object) -> dict:
    merged = (step or KubeSettings()).over(plugin.kubernetes)
    options: dict[str, object] = {"epoch": 7, "settings": merged, "ttl_after_finished": 3600.0,
                                  "nats_url": "nats://nats:4222"}
    options.update(kwargs)
    return build_job(plugin, the_attempt, **options)  # type: ignore[arg-type]


def container(the_job: dict) -> dict:
    return the_job["spec"]["template"]["spec"]["containers"][0]


def test_the_built_in_plugins_that_run_on_kubernetes_are_found() -> None:
    assert KUBE_PLUGINS == ["http", "python", "shell"]


@pytest.mark.parametrize("name", KUBE_PLUGINS)
def test_every_kubernetes_plugins_job_is_valid_for_the_pinned_version_and_a_server(
        name: str) -> None:
    plugin = find_plugins()[name]
    for the_attempt in (attempt(plugin=name), attempt(plugin=name, timeout=0.2, number=12,
                                                      task="Load_Data", step="STEP.x")):
        the_job = job(plugin, the_attempt, namespace="noetl")
        check(the_job)
        assert the_job["spec"]["backoffLimit"] == 0
        assert the_job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
        assert container(the_job)["image"] == plugin.image
        assert container(the_job)["command"] == list(ENTRY_COMMAND)


def test_the_validator_and_the_server_rules_do_refuse_what_is_wrong() -> None:
    """The checks the other tests rely on are not empty: each refuses a broken Job."""
    the_job = job(find_plugins()["http"], attempt())
    the_job["spec"]["backOffLimit"] = 0  # a misspelt field: strict mode refuses it
    with pytest.raises(kubernetes_validate.ValidationError):
        check(the_job)
    the_job = job(find_plugins()["http"], attempt())
    the_job["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    the_job["metadata"]["name"] = "Has_Upper"
    the_job["metadata"]["labels"]["noetl.io/task"] = "x" * 64
    assert len(server_problems(the_job)) == 3


def test_the_command_is_the_attempt_and_the_plugin_name_in_one_variable() -> None:
    the_attempt = attempt(input={"url": "http://example", "n": [1, 2]}, timeout=3.0)
    env = {e["name"]: e["value"] for e in container(job(find_plugins()["http"],
                                                        the_attempt))["env"]}
    command = json.loads(env[COMMAND_ENV])
    assert command == {"schema_version": 1, "plugin": "http", "attempt": the_attempt.to_json()}
    assert Attempt.from_json(command["attempt"]) == the_attempt
    assert env["NOETL_NATS_URL"] == "nats://nats:4222"


def test_the_deadline_is_the_steps_timeout_rounded_up_and_absent_without_one() -> None:
    plugin = find_plugins()["http"]
    assert job(plugin, attempt(timeout=30.2))["spec"]["activeDeadlineSeconds"] == 31
    assert job(plugin, attempt(timeout=0.01))["spec"]["activeDeadlineSeconds"] == 1
    assert "activeDeadlineSeconds" not in job(plugin, attempt())["spec"]
    assert job(plugin, attempt(), ttl_after_finished=90.5)["spec"][
        "ttlSecondsAfterFinished"] == 91


def test_a_plugin_that_cannot_run_on_kubernetes_gets_no_job() -> None:
    with pytest.raises(ValueError, match=r"plugin 'echo' cannot run as a Kubernetes Job"):
        job(find_plugins()["echo"], attempt(plugin="echo"))


def test_the_steps_settings_override_the_plugins_and_reach_the_pod() -> None:
    plugin = PluginInfo(name="http", modes=("inproc", "kubernetes"), image="img:1",
                        kubernetes=KubeSettings.from_mapping({
                            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"},
                                          "limits": {"memory": "128Mi"}},
                            "env": {"A": "plugin", "B": 1},
                            "service_account": "plugin-sa",
                            "node_selector": {"pool": "general"},
                            "tolerations": [{"key": "x", "operator": "Exists"}],
                        }))
    step = KubeSettings.from_mapping({
        "resources": {"requests": {"cpu": 2}, "limits": {"nvidia.com/gpu": 1}},
        "env": {"A": "step", "DEBUG": True},
        "node_selector": {"kubernetes.io/arch": "arm64"},
        "tolerations": [{"key": "gpu", "operator": "Equal", "value": "yes",
                         "effect": "NoSchedule", "tolerationSeconds": 60}],
    })
    the_job = job(plugin, attempt(), step)
    check(the_job)
    pod = the_job["spec"]["template"]["spec"]
    assert container(the_job)["resources"] == {
        "requests": {"cpu": "2", "memory": "64Mi"},
        "limits": {"memory": "128Mi", "nvidia.com/gpu": "1"}}
    env = {e["name"]: e["value"] for e in container(the_job)["env"]}
    assert (env["A"], env["B"], env["DEBUG"]) == ("step", "1", "true")
    assert pod["serviceAccountName"] == "plugin-sa"
    assert "automountServiceAccountToken" not in pod
    assert pod["nodeSelector"] == {"pool": "general", "kubernetes.io/arch": "arm64"}
    assert pod["tolerations"] == [{"key": "gpu", "operator": "Equal", "value": "yes",
                                   "effect": "NoSchedule", "tolerationSeconds": 60}]


def test_a_pod_without_a_service_account_gets_no_api_token() -> None:
    pod = job(find_plugins()["http"], attempt())["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in pod


def test_with_a_nats_secret_the_pod_reads_its_nats_key_from_it_and_no_one_else() -> None:
    the_job = job(find_plugins()["http"], attempt(), nats_secret="noetl-job-nkey")
    check(the_job)
    pod = the_job["spec"]["template"]["spec"]
    assert pod["volumes"] == [{"name": "nats-key", "secret": {
        "secretName": "noetl-job-nkey", "items": [{"key": "seed", "path": "seed"}],
        "defaultMode": 0o400}}]
    assert container(the_job)["volumeMounts"] == [
        {"name": "nats-key", "mountPath": "/var/run/noetl/nats", "readOnly": True}]
    env = {e["name"]: e["value"] for e in container(the_job)["env"]}
    assert env["NATS_NKEY"] == "/var/run/noetl/nats/seed"
    without = job(find_plugins()["http"], attempt())
    assert "volumes" not in without["spec"]["template"]["spec"]
    assert "NATS_NKEY" not in {e["name"] for e in container(without)["env"]}


def test_the_labels_name_workflow_task_step_attempt_epoch_and_the_pod_has_them_too() -> None:
    the_attempt = attempt(number=3)
    the_job = job(find_plugins()["http"], the_attempt)
    labels = the_job["metadata"]["labels"]
    assert labels == job_labels(the_attempt, epoch=7)
    assert {k: labels[f"noetl.io/{k}"] for k in ("workflow", "task", "step", "attempt",
                                                 "epoch")} == {
        "workflow": "wf-1", "task": "load", "step": "fetch", "attempt": "3", "epoch": "7"}
    assert the_job["spec"]["template"]["metadata"]["labels"] == labels


def test_the_name_depends_on_the_attempt_alone() -> None:
    one = attempt(number=2, timeout=5.0, input={"a": 1})
    same = attempt(number=2, input={"b": 2}, command_id="another-id")
    assert job_name(one) == job_name(same)
    assert job_name(one) != job_name(attempt(number=3))
    assert job_name(attempt(task="a_b")) != job_name(attempt(task="a-b"))
    assert job_name(one).startswith("noetl-wf-1-load-fetch-2-")


TEXT = st.text(min_size=1, max_size=200)


@settings(max_examples=300, deadline=None)
@given(workflow=TEXT, task=TEXT, step=TEXT, number=st.integers(1, 10**9))
def test_any_attempt_gives_a_valid_name_and_valid_labels(
        workflow: str, task: str, step: str, number: int) -> None:
    the_attempt = Attempt(workflow_id=workflow, task=task, step=step, number=number,
                          plugin="http")
    name = job_name(the_attempt)
    assert len(name) <= 63 and DNS_LABEL.match(name), name
    assert name == job_name(the_attempt)
    for value in job_labels(the_attempt, epoch=number).values():
        assert len(value) <= 63 and LABEL_VALUE.match(value), value
    assert server_problems({"kind": "Job", "metadata": {
        "name": name, "labels": job_labels(the_attempt, epoch=1)}}) == []


@settings(max_examples=200, deadline=None)
@given(a=st.tuples(TEXT, TEXT, TEXT), b=st.tuples(TEXT, TEXT, TEXT))
def test_two_different_attempts_never_share_a_name_or_labels(
        a: tuple[str, str, str], b: tuple[str, str, str]) -> None:
    first = Attempt(workflow_id=a[0], task=a[1], step=a[2], number=1, plugin="http")
    second = Attempt(workflow_id=b[0], task=b[1], step=b[2], number=1, plugin="http")
    if a != b:
        assert job_name(first) != job_name(second)
        assert job_labels(first, epoch=1) != job_labels(second, epoch=1)


def test_the_pinned_version_is_one_kubernetes_validate_ships() -> None:
    assert KUBERNETES_VERSION == "1.30"
    kubernetes_validate.validate({"apiVersion": "v1", "kind": "ConfigMap",
                                  "metadata": {"name": "x"}}, KUBERNETES_VERSION, strict=True)


# -- kubernetes: in plugin.yaml ------------------------------------------------------------


def write_plugin(tmp_path: Path, text: str) -> Path:
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "plugin.py").write_text("def run(input, ctx):\n    return input\n")
    manifest = folder / "plugin.yaml"
    manifest.write_text(textwrap.dedent(text))
    return manifest


def test_a_plugins_kubernetes_settings_are_read_from_its_manifest(tmp_path: Path) -> None:
    manifest = write_plugin(tmp_path, """\
        name: p
        modes: [kubernetes]
        image: p:1
        kubernetes:
          resources: {limits: {memory: 1Gi}}
          env: {MODE: fast}
        """)
    info = read_manifest(manifest)
    assert info.kubernetes == KubeSettings(resources={"limits": {"memory": "1Gi"}},
                                           env={"MODE": "fast"})


@pytest.mark.parametrize(("block", "message"), [
    ("kubernetes: {cpu: 1}", "unknown key 'cpu' in kubernetes; allowed: resources, env, "
                             "service_account, node_selector, tolerations"),
    ("kubernetes: {resources: {limits: {memory: lots}}}",
     "kubernetes.resources.limits.memory must be a quantity such as 500m, 1Gi or 2 "
     "(got 'lots')"),
    ("kubernetes: {env: {NOETL_COMMAND: x}}",
     "kubernetes.env: NOETL_COMMAND is set by the runner (NOETL_* are reserved)"),
])
def test_a_bad_kubernetes_mapping_in_plugin_yaml_is_refused(
        tmp_path: Path, block: str, message: str) -> None:
    manifest = write_plugin(tmp_path, f"name: p\nmodes: [kubernetes]\nimage: p:1\n{block}\n")
    with pytest.raises(ManifestError) as caught:
        read_manifest(manifest)
    assert message in str(caught.value)
