"""The node's own tree from YAML: `supervisors/node.yaml`, with a user's file merged over it.

Every error case is a small user file wrong in one way, with the exact
problems expected: the file, line and column (1-based, as an editor shows
them) and a fragment of the message. A case passes only if exactly those
problems are reported.
"""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import attrs
import pytest

from noetl_actors.errors import PlaybookError
from noetl_actors.playbook import TASK_DEFAULT, Catalog, Problem
from noetl_actors.services._node_config import (
    KubeConfig,
    NodeConfig,
    PartConfig,
    load_node_config,
)
from noetl_actors.supervision import Strategy, SupervisorFlags

PROJECT = Path(__file__).resolve().parents[1]
PRESET = PROJECT / "supervisors" / "node.yaml"


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.default()


@pytest.fixture
def write(tmp_path: Path):
    def write(text: str, name: str = "node.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path
    return write


def load(path: Path | None, catalog: Catalog) -> NodeConfig:
    return load_node_config(path, catalog=catalog)


def problems_of(path: Path, catalog: Catalog) -> list[Problem]:
    with pytest.raises(PlaybookError) as caught:
        load_node_config(path, catalog=catalog)
    return caught.value.problems


# -- the default preset ---------------------------------------------------------------------


def test_the_default_preset_holds_the_documented_values(catalog: Catalog) -> None:
    config = load_node_config(catalog=catalog)
    minute = SupervisorFlags(strategy=Strategy.ONE_FOR_ONE, max_restarts=10, within=60.0)
    assert config.root == minute
    assert config.services == PartConfig(flags=minute, shutdown=5.0)
    assert config.workers.flags == catalog.presets["resilient"]
    assert config.workers.shutdown == 10.0
    assert config.workers.default_concurrency == 64
    assert config.workers.concurrency == {  # sleep only waits: a timer each, no thread
        name: {"shell": 4, "sleep": 100_000}.get(name, 64) for name in catalog.plugins
    }
    assert config.workers.disabled == frozenset()
    assert config.workflows == PartConfig(
        flags=SupervisorFlags(strategy=Strategy.ONE_FOR_ONE, max_restarts=100, within=60.0),
        shutdown=30.0,
    )
    assert (config.heartbeat, config.log_level, config.log_format) == (1.0, "info", "text")
    assert (config.lease, config.worker_wait) == (5.0, 600.0)
    assert config.kubernetes == KubeConfig(
        enabled=False, kubeconfig="in-cluster", namespace="", job_ttl=3600.0,
        unschedulable_after=300.0, image_pull_after=120.0, container_error_after=60.0)


def test_a_user_file_turns_kubernetes_on_and_keeps_the_other_defaults(
        catalog: Catalog, write) -> None:
    path = write("kubernetes: {enabled: true, kubeconfig: ~/kind.yaml, namespace: jobs,\n"
                 "             image_pull_after: 30s, nats_secret: noetl-job-nkey}\n")
    assert load_node_config(path, catalog=catalog).kubernetes == KubeConfig(
        enabled=True, kubeconfig="~/kind.yaml", namespace="jobs", image_pull_after=30.0,
        nats_secret="noetl-job-nkey")


def test_the_default_catalog_is_used_when_none_is_given(catalog: Catalog) -> None:
    assert load_node_config() == load_node_config(catalog=catalog)


def test_the_node_preset_does_not_disturb_the_policy_catalog() -> None:
    """`Catalog.load` reads every *.yaml of supervisors/ but keeps only kind: Policies."""
    loaded = Catalog.load([], PROJECT / "supervisors")
    assert sorted(loaded.presets) == ["all-or-nothing", "fail-fast", "flaky-network",
                                      "resilient"]


# -- overrides ---------------------------------------------------------------------------------


def test_a_user_file_changes_one_field_and_keeps_the_rest(catalog: Catalog, write) -> None:
    default = load(None, catalog)
    config = load(write("""\
        workers:
          concurrency: 8
        """), catalog)
    assert config.workers.default_concurrency == 8
    assert config.workers.concurrency == {
        name: {"shell": 4, "sleep": 100_000}.get(name, 8) for name in catalog.plugins
    }
    assert config.workers.flags == default.workers.flags
    assert config.workers.shutdown == default.workers.shutdown
    assert attrs.evolve(config, workers=default.workers) == default


def test_a_user_file_may_say_its_kind_and_version(catalog: Catalog, write) -> None:
    config = load(write("""\
        apiVersion: noetl.io/v1
        kind: Node
        heartbeat: 250ms
        worker_wait: 90s
        logging: {level: DEBUG, format: json}
        """), catalog)
    assert (config.heartbeat, config.log_level, config.log_format) == (0.25, "debug", "json")
    assert config.worker_wait == 90.0


def test_per_plugin_overrides_merge_with_the_presets(catalog: Catalog, write) -> None:
    config = load(write("""\
        workers:
          plugins:
            http: {concurrency: 64}
            python: {enabled: false}
            echo: {enabled: true, concurrency: 1}
        """), catalog)
    assert config.workers.concurrency["http"] == 64
    assert config.workers.concurrency["shell"] == 4      # the preset's, kept
    assert config.workers.concurrency["echo"] == 1
    assert config.workers.concurrency["sleep"] == 100_000  # it only waits: no thread each
    assert config.workers.disabled == {"python"}
    assert set(config.workers.concurrency) == set(catalog.plugins)


def test_null_drops_a_default_key(catalog: Catalog, write) -> None:
    config = load(write("""\
        workers:
          supervision: {use: null, max_restarts: 5}
          plugins: {shell: null}
        """), catalog)
    assert config.workers.flags == attrs.evolve(TASK_DEFAULT, max_restarts=5)
    assert config.workers.concurrency["shell"] == 64


def test_use_of_a_named_policy_with_the_defaults_keys_on_top(
        catalog: Catalog, write) -> None:
    config = load(write("""\
        supervision: {use: all-or-nothing}
        workflows:
          supervision: {use: flaky-network}
        """), catalog)
    # The preset's own strategy, max_restarts and within stay, over the policy.
    assert config.workflows.flags == attrs.evolve(
        catalog.presets["flaky-network"], max_restarts=100, within=60.0)
    assert config.root == attrs.evolve(
        catalog.presets["all-or-nothing"], strategy=Strategy.ONE_FOR_ONE, max_restarts=10)


def test_a_policy_replaced_with_another_and_changed(catalog: Catalog, write) -> None:
    config = load(write("""\
        workers:
          supervision: {use: fail-fast, max_restarts: 2}
        """), catalog)
    assert config.workers.flags == attrs.evolve(catalog.presets["fail-fast"], max_restarts=2)


def test_concurrency_covers_exactly_the_catalogs_plugins(write) -> None:
    full = Catalog.default()
    small = Catalog(plugins={"echo": full.plugins["echo"]}, presets=full.presets)
    config = load(write("workers: {concurrency: 3}\n"), small)
    assert config.workers.concurrency == {"echo": 3}   # the preset's `shell` is not there


# -- errors in the user's file ------------------------------------------------------------------

Expected = tuple[int, int, str]


def case(case_id: str, text: str, *expected: Expected) -> object:
    return pytest.param(textwrap.dedent(text), list(expected), id=case_id)


CASES = [
    case("an unknown top-level key, with a suggestion",
         """\
         heartbaet: 2s
         """,
         (1, 1, "unknown key 'heartbaet' in the node configuration "
                "(did you mean 'heartbeat'?); allowed: apiVersion, kind")),
    case("an unknown key in workers",
         """\
         workers:
           concurency: 4
         """,
         (2, 3, "unknown key 'concurency' in workers (did you mean 'concurrency'?)")),
    case("an unknown key in a plugin's entry",
         """\
         workers:
           plugins:
             shell: {concurency: 2}
         """,
         (3, 13, "unknown key 'concurency' in workers.plugins.shell "
                 "(did you mean 'concurrency'?); allowed: concurrency, enabled")),
    case("an unknown plugin, with a suggestion",
         """\
         workers:
           plugins:
             shel: {concurrency: 2}
         """,
         (3, 5, "unknown plugin 'shel' in workers.plugins (did you mean 'shell'?); known: ")),
    case("a concurrency of 0",
         "workers: {concurrency: 0}\n",
         (1, 24, "workers.concurrency must be a whole number >= 1 (got 0)")),
    case("a negative concurrency",
         "workers: {concurrency: -2}\n",
         (1, 24, "workers.concurrency must be a whole number >= 1 (got -2)")),
    case("a fractional concurrency",
         "workers: {concurrency: 2.5}\n",
         (1, 24, "workers.concurrency must be a whole number >= 1 (got 2.5)")),
    case("a boolean concurrency",
         "workers: {concurrency: true}\n",
         (1, 24, "workers.concurrency must be a whole number >= 1 (got True)")),
    case("a quoted concurrency",
         "workers: {concurrency: '4'}\n",
         (1, 24, "workers.concurrency must be a whole number >= 1 (got '4')")),
    case("a plugin's concurrency of 0",
         """\
         workers:
           plugins:
             http: {concurrency: 0}
         """,
         (3, 25, "workers.plugins.http.concurrency must be a whole number >= 1 (got 0)")),
    case("enabled that is not a boolean",
         """\
         workers:
           plugins:
             http: {enabled: 1}
         """,
         (3, 21, "workers.plugins.http.enabled must be a boolean (got number 1)")),
    case("a plugin's entry that is not a mapping",
         """\
         workers:
           plugins:
             http: 8
         """,
         (3, 11, "workers.plugins.http must be a mapping (got number 8)")),
    case("a shutdown that is not a duration",
         "services: {shutdown: soon}\n",
         (1, 22, "services.shutdown: 'soon' is not a duration (use 250ms, 30s, 5m, 1h")),
    case("a negative shutdown",
         "workflows: {shutdown: -1}\n",
         (1, 23, "workflows.shutdown: -1 is not a duration: it must be finite and not negative")),
    case("a heartbeat of 0",
         "heartbeat: 0s\n",
         (1, 12, "heartbeat must be longer than 0")),
    case("a heartbeat that is not a duration",
         "heartbeat: often\n",
         (1, 12, "heartbeat: 'often' is not a duration")),
    case("a worker_wait of 0",
         "worker_wait: 0\n",
         (1, 14, "worker_wait must be longer than 0")),
    case("a worker_wait that is not a duration",
         "worker_wait: forever\n",
         (1, 14, "worker_wait: 'forever' is not a duration")),
    case("a negative worker_wait",
         "worker_wait: -5m\n",
         (1, 14, "worker_wait: '-5m' is not a duration")),
    case("a worker_wait dropped",
         "worker_wait: null\n",
         (1, 1, "the node configuration needs 'worker_wait'")),
    case("a supervision within that is not a duration",
         """\
         supervision:
           within: forever
         """,
         (2, 11, "within: 'forever' is not a duration")),
    case("an unknown strategy",
         "services: {supervision: {strategy: one_for_some}}\n",
         (1, 36, "strategy must be one of one_for_one, one_for_all, rest_for_one "
                 "(got 'one_for_some') (did you mean 'one_for_one'?)")),
    case("an unknown named policy, with a suggestion",
         "workers: {supervision: {use: resilent}}\n",
         (1, 30, "unknown policy 'resilent' (did you mean 'resilient'?); known: all-or-nothing")),
    case("an unknown key in a supervision",
         "workflows: {supervision: {max_restart: 5}}\n",
         (1, 27, "unknown key 'max_restart' in workflows.supervision "
                 "(did you mean 'max_restarts'?)")),
    case("an unknown log level, with a suggestion",
         "logging: {level: warn}\n",
         (1, 18, "logging.level must be one of debug, info, warning, error, critical "
                 "(got 'warn') (did you mean 'warning'?)")),
    case("an unknown log format",
         "logging: {format: yaml}\n",
         (1, 19, "logging.format must be one of text, json (got 'yaml')")),
    case("a list replaces a default mapping, and is refused",
         "workers: [shell]\n",
         (1, 10, "workers must be a mapping (got a list)")),
    case("a null drops a required default",
         "heartbeat: null\n",
         (1, 1, "the node configuration needs 'heartbeat'")),
    case("another kind of file is refused as a whole, not key by key",
         """\
         apiVersion: noetl.io/v1
         kind: Playbook
         name: pb
         tasks: []
         """,
         (2, 7, "kind must be 'Node' (got string 'Playbook')")),
    case("another apiVersion",
         """\
         apiVersion: noetl.io/v2
         kind: Node
         """,
         (1, 13, "apiVersion must be 'noetl.io/v1' (got string 'noetl.io/v2')")),
    case("a list instead of a mapping",
         """\
         - workers
         - heartbeat
         """,
         (1, 1, "a node configuration must be a mapping (got a list)")),
    case("a scalar instead of a mapping",
         "heartbeat 2s\n",
         (1, 1, "a node configuration must be a mapping (got string 'heartbeat 2s')")),
    case("an empty file",
         "# nothing yet\n",
         (1, 1, "the file is empty")),
    case("a YAML syntax error",
         """\
         workers:
           concurrency: [4
         heartbeat: 1s
         """,
         (3, 10, "YAML syntax: while parsing a flow sequence")),
    case("a duplicate key",
         """\
         heartbeat: 1s
         heartbeat: 2s
         """,
         (2, 1, "duplicate key 'heartbeat' (first at line 1)")),
    case("what a stopped node does with its workflows, misspelt",
         """\
         on_stop: hand-over
         """,
         (1, 10, "on_stop must be one of cancel, hand_over (got 'hand-over')")),
    case("the kubernetes settings, each wrong",
         """\
         kubernetes:
           enabled: yes please
           kubeconfig: [a]
           namespace: My_Jobs
           unschedulable_after: soon
           replicas: 2
           nats_secret: Not/A/Name
         """,
         (2, 12, "kubernetes.enabled must be a boolean (got string 'yes please')"),
         (3, 15, "kubernetes.kubeconfig must be a string (got a list)"),
         (4, 14, "kubernetes.namespace must be a namespace name (lower-case letters, "
                 "digits and '-', at most 63) or \"\" for the default (got 'My_Jobs')"),
         (5, 24, "kubernetes.unschedulable_after: 'soon' is not a duration"),
         (6, 3, "unknown key 'replicas' in kubernetes"),
         (7, 16, "kubernetes.nats_secret must be a Secret's name or \"\" for none "
                 "(got 'Not/A/Name')")),
    case("every problem of a file at once",
         """\
         workers:
           concurrency: 0
           shutdown: later
         logging: {level: loud, format: json}
         """,
         (2, 16, "workers.concurrency must be a whole number >= 1 (got 0)"),
         (3, 13, "workers.shutdown: 'later' is not a duration"),
         (4, 18, "logging.level must be one of debug")),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_a_bad_user_file_is_refused_at_the_users_line_and_column(
        catalog: Catalog, write, text: str, expected: list[Expected]) -> None:
    path = write(text, "mine.yaml")
    problems = problems_of(path, catalog)
    got = [(p.file, p.line, p.col, p.message) for p in problems]
    assert len(got) == len(expected), "\n".join(str(p) for p in problems)
    for (file, line, col, message), (want_line, want_col, fragment) in zip(
            got, expected, strict=True):
        assert (file, line, col) == (str(path), want_line, want_col), message
        assert fragment in message, message


def test_the_error_message_is_one_file_line_col_line_per_problem(
        catalog: Catalog, write) -> None:
    path = write("heartbeat: 0s\nworkers: {concurrency: 0}\n", "mine.yaml")
    with pytest.raises(PlaybookError) as caught:
        load(path, catalog)
    assert str(caught.value).splitlines() == [
        f"{path}:1:12: heartbeat must be longer than 0",
        f"{path}:2:24: workers.concurrency must be a whole number >= 1 (got 0)",
    ]


def test_a_missing_user_file_is_an_os_error(catalog: Catalog, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "nope.yaml", catalog)


# -- errors in the preset ---------------------------------------------------------------------


@pytest.fixture
def preset_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A supervisors/ of our own with a copy of the shipped node.yaml."""
    folder = tmp_path / "supervisors"
    folder.mkdir()
    shutil.copy(PRESET, folder / "node.yaml")
    monkeypatch.setenv("NOETL_SUPERVISORS_DIR", str(folder))
    return folder


def test_a_bad_preset_value_points_at_the_preset(
        catalog: Catalog, write, preset_dir: Path) -> None:
    preset = preset_dir / "node.yaml"
    text = preset.read_text(encoding="utf-8")
    line = next(n for n, row in enumerate(text.splitlines(), 1)
                if row.startswith("  concurrency: 64"))
    preset.write_text(text.replace("  concurrency: 64", "  concurrency: none"),
                      encoding="utf-8")
    user = write("heartbeat: 0s\n", "mine.yaml")
    problems = problems_of(user, catalog)
    assert [(p.file, p.line, p.col) for p in problems] == [
        (str(user), 1, 12),         # the user's value, in the user's file
        (str(preset), line, 16),   # the preset's value, in the preset
    ]
    assert "workers.concurrency must be a whole number >= 1 (got 'none')" \
        in problems[1].message


def test_a_user_value_over_a_bad_preset_value_hides_it(
        catalog: Catalog, write, preset_dir: Path) -> None:
    preset = preset_dir / "node.yaml"
    preset.write_text(preset.read_text(encoding="utf-8").replace("heartbeat: 1s",
                                                                 "heartbeat: never"),
                      encoding="utf-8")
    with pytest.raises(PlaybookError, match=r"node.yaml:\d+:12: heartbeat: 'never'"):
        load(None, catalog)
    assert load(write("heartbeat: 3s\n", "mine.yaml"), catalog).heartbeat == 3.0


def test_preset_plugins_the_catalog_lacks_are_skipped_but_a_users_are_not(
        write) -> None:
    """The preset speaks of the built-ins; a node with its own plugin path may lack them."""
    full = Catalog.default()
    small = Catalog(plugins={"echo": full.plugins["echo"]}, presets=full.presets)
    assert "shell" not in load(None, small).workers.concurrency
    user = write("workers: {plugins: {http: {concurrency: 2}}}\n", "mine.yaml")
    problems = problems_of(user, small)
    assert [str(p) for p in problems] == [
        f"{user}:1:21: unknown plugin 'http' in workers.plugins; known: echo"]


def test_a_missing_preset_is_an_os_error(
        catalog: Catalog, preset_dir: Path) -> None:
    (preset_dir / "node.yaml").unlink()
    with pytest.raises(FileNotFoundError):
        load(None, catalog)


# -- the documentation ------------------------------------------------------------------------


def doc_yaml_blocks() -> list[str]:
    text = (PROJECT / "docs" / "node.md").read_text(encoding="utf-8")
    return [block.split("```", 1)[0] for block in text.split("```yaml\n")[1:]]


def test_the_docs_quote_the_preset_as_it_is() -> None:
    preset = PRESET.read_text(encoding="utf-8")
    assert doc_yaml_blocks()[0] == preset[preset.index("apiVersion:"):]


def test_the_docs_example_override_does_what_the_docs_say(catalog: Catalog, write) -> None:
    config = load(write(doc_yaml_blocks()[1]), catalog)
    assert config.workers.default_concurrency == 8
    assert config.workers.concurrency == {
        name: {"shell": 2, "sleep": 100_000}.get(name, 8) for name in catalog.plugins
    }
    assert config.workers.flags == SupervisorFlags(
        strategy=Strategy.ONE_FOR_ONE, max_restarts=3, within=10.0)
    assert config.workers.disabled == {"python"}
    assert (config.log_level, config.log_format) == ("info", "json")
    assert config.workflows == load(None, catalog).workflows
