"""A step's `kubernetes:` mapping: its Job's settings over its plugin's (docs/kubernetes.md).

Each bad value is refused with the exact `file:line:col` of the key or value
that is wrong; a good one is kept as written and round-trips.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from noetl_actors.errors import PlaybookError
from noetl_actors.playbook import parse_playbook, playbook_schema
from noetl_actors.runners import KubeSettings, find_plugins, kube_problems

FILE = "pb.yaml"
HEAD = """\
apiVersion: noetl.io/v1
kind: Playbook
name: pb
tasks:
  - name: t
    steps:
      - name: s
        plugin: http
        with: {url: "http://example"}
"""  # the step's keys are at column 9; `kubernetes:` below is line 10


def with_kubernetes(block: str) -> str:
    return HEAD + textwrap.indent(textwrap.dedent(block), " " * 8)


GOOD = """\
kubernetes:
  resources:
    requests: {cpu: 250m, memory: 64Mi}
    limits: {memory: 128Mi}
  env: {MODE: fast, RETRIES: 3}
  service_account: fetcher
  node_selector: {pool: io}
  tolerations:
    - {key: dedicated, operator: Equal, value: io, effect: NoSchedule}
"""


def test_a_steps_kubernetes_settings_are_kept_and_round_trip() -> None:
    playbook = parse_playbook(with_kubernetes(GOOD), FILE)
    step = playbook.task("t").step("s")
    assert step.kubernetes["service_account"] == "fetcher"
    settings = KubeSettings.from_mapping(step.kubernetes)
    assert settings.env == {"MODE": "fast", "RETRIES": "3"}
    assert parse_playbook(yaml.safe_dump(playbook.to_dict()), FILE) == playbook


def test_the_schema_knows_the_kubernetes_key() -> None:
    step = playbook_schema()["$defs"]["step"]["properties"]["kubernetes"]
    assert sorted(step["properties"]) == ["env", "node_selector", "resources", "service_account",
                                          "tolerations"]


CASES = [
    ("not a mapping", "kubernetes: [1]\n",
     [(10, 21, "kubernetes must be a mapping of resources, env, service_account, "
                "node_selector, tolerations (got list)")]),
    ("an unknown key points at the key", "kubernetes:\n  replicas: 2\n",
     [(11, 11, "unknown key 'replicas' in kubernetes; allowed: resources")]),
    ("a quantity that is not one", "kubernetes:\n  resources:\n    limits: {memory: 1GB}\n",
     [(12, 30, "kubernetes.resources.limits.memory must be a quantity such as 500m, 1Gi "
               "or 2 (got '1GB')")]),
    ("requests is not a mapping", "kubernetes:\n  resources: {requests: 1}\n",
     [(11, 33, "kubernetes.resources.requests must be a mapping of resource to quantity")]),
    ("an unknown resources key", "kubernetes:\n  resources: {request: {cpu: 1}}\n",
     [(11, 23, "unknown key 'request' in kubernetes.resources; allowed: requests, limits")]),
    ("a reserved variable", "kubernetes:\n  env: {NOETL_NATS_URL: x}\n",
     [(11, 17, "kubernetes.env: NOETL_NATS_URL is set by the runner (NOETL_* are reserved)")]),
    ("a variable name with a space", "kubernetes:\n  env: {'A B': x}\n",
     [(11, 17, "kubernetes.env: 'A B' is not a variable name")]),
    ("a variable that is a mapping", "kubernetes:\n  env: {A: {b: 1}}\n",
     [(11, 20, "kubernetes.env.A must be a string, number or boolean (got dict)")]),
    ("a service account that is not DNS-1123", "kubernetes:\n  service_account: My_SA\n",
     [(11, 28, "kubernetes.service_account must be a DNS-1123 name")]),
    ("a node selector value too long",
     "kubernetes:\n  node_selector: {pool: " + "x" * 64 + "}\n",
     [(11, 33, "kubernetes.node_selector.pool must be a label value: at most 63")]),
    ("a node selector key that is not a label key",
     "kubernetes:\n  node_selector: {'a b': x}\n",
     [(11, 27, "kubernetes.node_selector: 'a b' is not a label key")]),
    ("tolerations not a list", "kubernetes:\n  tolerations: {key: x}\n",
     [(11, 24, "kubernetes.tolerations must be a list (got dict)")]),
    ("a toleration with a wrong operator and an unknown key",
     "kubernetes:\n  tolerations:\n    - {key: x, operator: Is, effects: NoSchedule}\n",
     [(12, 34, "kubernetes.tolerations[0].operator must be one of Exists, Equal (got 'Is')"),
      (12, 38, "unknown key 'effects' in kubernetes.tolerations[0]; allowed: key, operator")]),
    ("an Exists toleration with a value",
     "kubernetes:\n  tolerations:\n    - {operator: Exists, value: y}\n",
     [(12, 41, "kubernetes.tolerations[0].value must be empty when operator is Exists")]),
]


@pytest.mark.parametrize(("block", "expected"), [pytest.param(b, e, id=i) for i, b, e in CASES])
def test_a_bad_kubernetes_value_is_refused_at_its_line_and_column(
        block: str, expected: list[tuple[int, int, str]]) -> None:
    with pytest.raises(PlaybookError) as caught:
        parse_playbook(with_kubernetes(block), FILE)
    got = [(p.line, p.col, p.message) for p in caught.value.problems]
    assert len(got) == len(expected), got
    for (line, col, message), (want_line, want_col, fragment) in zip(got, expected, strict=True):
        assert (line, col) == (want_line, want_col), (got, fragment)
        assert fragment in message, message
        assert str(caught.value).startswith(f"{FILE}:")


def doc_yaml_blocks() -> list[str]:
    text = (Path(__file__).resolve().parents[1] / "docs" / "kubernetes.md").read_text()
    return [block.split("```", 1)[0] for block in text.split("```yaml\n")[1:]]


def test_the_docs_examples_of_kubernetes_settings_are_valid() -> None:
    blocks = doc_yaml_blocks()
    plugin_block = next(b for b in blocks if b.startswith("name: "))  # a plugin.yaml
    step_block = next(b for b in blocks if b.startswith("- name: "))  # a step
    assert kube_problems(yaml.safe_load(plugin_block)["kubernetes"]) == []
    playbook = parse_playbook(HEAD.replace("      - name: s\n        plugin: http\n"
                                           "        with: {url: \"http://example\"}\n",
                                           textwrap.indent(step_block, " " * 6)), FILE)
    step = playbook.task("t").step("crunch")
    assert step.timeout == 600
    assert KubeSettings.from_mapping(step.kubernetes).over(
        find_plugins()["python"].kubernetes).resources == {
        "requests": {"cpu": "100m", "memory": "128Mi"},
        "limits": {"memory": "4Gi", "nvidia.com/gpu": "1"}}
