"""Valid playbooks: they load into the model, with defaults filled in, and round-trip.

Round trip: ``parse_playbook(yaml.safe_dump(pb.to_dict()))`` equals ``pb``,
so the model's native form says everything the YAML said.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import attrs
import pytest
import yaml

from noetl_actors.errors import PlaybookError
from noetl_actors.playbook import (
    TASK_DEFAULT,
    WORKFLOW_DEFAULT,
    Catalog,
    ErrorAction,
    Playbook,
    Runner,
    load_playbook,
    parse_playbook,
)
from noetl_actors.supervision import Backoff, Restart, Strategy, SupervisorFlags

FILE = "pb.yaml"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(text: str, **kwargs: object) -> Playbook:
    return parse_playbook(textwrap.dedent(text), FILE, **kwargs)  # type: ignore[arg-type]


def round_trip(playbook: Playbook) -> Playbook:
    return parse_playbook(yaml.safe_dump(playbook.to_dict(), sort_keys=False), "again.yaml")


MINIMAL = """\
    apiVersion: noetl.io/v1
    kind: Playbook
    name: hello
    tasks:
      - name: greet
        steps:
          - name: say
            plugin: echo
            with: {msg: hello}
    """

DESIGN_EXAMPLE = """\
    apiVersion: noetl.io/v1
    kind: Playbook
    name: nightly-etl
    vars: {region: eu}
    supervision:                 # the workflow supervises its tasks
      strategy: one_for_one
      max_restarts: 3
      within: 60s
    tasks:
      - name: extract
        supervision: {strategy: one_for_all, max_restarts: 2, within: 30s,
                      backoff: {initial: 200ms, max: 5s}}
        steps:
          - name: download
            plugin: http
            with: {url: "https://example.org/{{ vars.region }}.csv"}
            timeout: 30s
            restart: transient
          - name: parse
            plugin: python
            with: {rows: "{{ steps.download.output.body }}"}
      - name: notify
        needs: [extract]
        steps:
          - {name: post, plugin: echo, with: {msg: "done {{ tasks.extract.steps.parse.output }}"}}
    """

POLICIES = """\
    apiVersion: noetl.io/v1
    kind: Playbook
    name: with-policies
    description: Named policies, presets and overrides.
    policies:
      patient:
        strategy: rest_for_one
        max_restarts: 20
        within: 10m
        backoff: {initial: 250ms, max: 1m, multiplier: 1.5, jitter: 0.1, reset_after: 2m}
      careful: {use: fail-fast, within: 5s}
    supervision: {use: patient, max_restarts: 4}
    tasks:
      - name: a
        supervision: {use: resilient}
        steps: [{name: s, plugin: echo}]
      - name: b
        supervision: {use: flaky-network, strategy: one_for_all}
        steps: [{name: s, plugin: echo}]
      - name: c
        supervision: {use: careful}
        steps: [{name: s, plugin: echo}]
      - name: d
        supervision: {use: all-or-nothing, backoff: {max: 2s}}
        steps: [{name: s, plugin: echo}]
    """

GRAPH = """\
    apiVersion: noetl.io/v1
    kind: Playbook
    name: diamond
    tasks:
      - name: source
        steps:
          - {name: read, plugin: echo, with: {msg: rows}}
      - name: left
        needs: [source]
        steps:
          - {name: l, plugin: echo, with: {msg: "{{ tasks.source.steps.read.output }}"}}
      - name: right
        needs: [source]
        steps:
          - {name: r, plugin: echo, with: {msg: "{{ tasks.source.steps.read.output }}"}}
      - name: join
        needs: [left, right]
        steps:
          - name: j
            plugin: echo
            with:
              left: "{{ tasks.left.steps.l.output }}"
              right: "{{ tasks['right'].steps['r'].output }}"
              source: "{{ tasks.source.steps.read.output }}"
      - name: report
        needs: [join]
        steps:
          - name: mail
            plugin: echo
            with: {msg: "{{ tasks.source.steps.read.output }} / {{ tasks.join.steps.j.output }}"}
    """

STEP_OPTIONS = """\
    apiVersion: noetl.io/v1
    kind: Playbook
    name: step-options
    tasks:
      - name: fetch
        supervision:
          strategy: one_for_all
          max_restarts: 0
          within: 1h
        steps:
          - name: get
            plugin: http
            with: {url: "https://example.org", method: GET}
            timeout: 250ms
            restart: permanent
            runner: kubernetes
            on_error: {timeout: restart, crash: escalate, HTTPError: stop, template: continue}
          - name: script
            plugin: shell
            with: {command: [ls, -l]}
            timeout: 1.5
            restart: temporary
            runner: process
            on_error: {http.Timeout: continue}
          - name: fn
            plugin: python
            with: {function: "pkg.mod:run", args: {n: 1}}
            timeout: 5m
            restart: transient
            runner: inproc
    """

TEMPLATES = """\
    apiVersion: noetl.io/v1
    kind: Playbook
    name: every-template
    vars:
      region: eu
      days: [mon, tue]
      limits: {rows: 10}
    tasks:
      - name: extract
        steps:
          - name: download
            plugin: http
            with:
              url: "https://example.org/{{ vars.region }}/{{ workflow.id }}"
              headers: {X-Workflow: "{{ workflow.name }}", X-Attempt: "{{ attempt }}"}
          - name: parse
            plugin: python
            with:
              function: "etl:parse"
              args:
                body: "{{ steps.download.output.body }}"
                first: "{{ steps['download'].output }}"
                days: "{{ vars.days }}"
                rows: "{{ vars.limits.rows * 2 }}"
                each: "{% for d in vars.days %}{{ d }}-{{ attempt }} {% endfor %}"
                named: "{% set n = vars.region | upper %}{{ n }}"
                retried: "{{ 'again' if attempt > 1 else 'first' }}"
                whole: "{{ vars }}"
      - name: load
        needs: [extract]
        steps:
          - name: save
            plugin: echo
            with:
              msg: "{{ tasks.extract.steps.parse.output }} in {{ vars['region'] }}"
    """

VALID = [
    pytest.param(MINIMAL, id="the smallest playbook"),
    pytest.param(DESIGN_EXAMPLE, id="the example of the design page"),
    pytest.param(POLICIES, id="named policies, presets and use with overrides"),
    pytest.param(GRAPH, id="needs in a diamond and a chain with transitive task references"),
    pytest.param(STEP_OPTIONS, id="timeouts, restart types, runners and on_error maps"),
    pytest.param(TEMPLATES, id="templates of every allowed kind"),
]


@pytest.mark.parametrize("text", VALID)
def test_a_valid_playbook_loads_and_round_trips_through_its_native_form(text: str) -> None:
    playbook = load(text)

    again = round_trip(playbook)

    assert again == playbook
    assert again.to_dict() == playbook.to_dict()
    assert playbook.file == FILE
    assert playbook.warnings == ()


def test_a_task_without_supervision_retries_a_step_three_times_a_minute_one_for_one() -> None:
    playbook = load(MINIMAL)

    flags = playbook.task("greet").supervision
    assert flags == TASK_DEFAULT
    assert (flags.strategy, flags.max_restarts, flags.within) == (Strategy.ONE_FOR_ONE, 3, 60.0)
    assert flags.backoff == Backoff()


def test_a_workflow_without_supervision_does_not_restart_a_task_that_gave_up() -> None:
    playbook = load(MINIMAL)

    assert playbook.supervision == WORKFLOW_DEFAULT
    assert playbook.supervision.max_restarts == 0
    assert playbook.supervision.strategy is Strategy.ONE_FOR_ONE


def test_a_step_without_options_is_transient_with_no_timeout_runner_or_on_error() -> None:
    step = load(MINIMAL).task("greet").step("say")

    assert step.plugin == "echo"
    assert step.with_ == {"msg": "hello"}
    assert step.timeout is None
    assert step.restart is Restart.TRANSIENT
    assert step.runner is None
    assert step.on_error == {}
    assert step.action_for("timeout") is ErrorAction.RESTART


def test_the_smallest_playbook_writes_back_only_what_it_said() -> None:
    assert load(MINIMAL).to_dict() == {
        "apiVersion": "noetl.io/v1",
        "kind": "Playbook",
        "name": "hello",
        "tasks": [{"name": "greet", "steps": [
            {"name": "say", "plugin": "echo", "with": {"msg": "hello"}},
        ]}],
    }


def test_the_design_example_means_what_the_design_page_says() -> None:
    playbook = load(DESIGN_EXAMPLE)

    assert playbook.name == "nightly-etl"
    assert playbook.vars == {"region": "eu"}
    assert playbook.supervision == SupervisorFlags(
        strategy=Strategy.ONE_FOR_ONE, max_restarts=3, within=60.0
    )
    extract = playbook.task("extract")
    assert extract.supervision == SupervisorFlags(
        strategy=Strategy.ONE_FOR_ALL, max_restarts=2, within=30.0,
        backoff=Backoff(initial=0.2, max=5.0),
    )
    assert [s.name for s in extract.steps] == ["download", "parse"]
    assert extract.step("download").timeout == 30.0
    assert playbook.task("notify").needs == ("extract",)
    assert playbook.task("notify").supervision == TASK_DEFAULT


# -- use: presets and named policies ------------------------------------------------------


def preset(name: str) -> SupervisorFlags:
    return Catalog.default().presets[name]


def test_the_shipped_presets_hold_what_supervisors_policies_yaml_says() -> None:
    assert preset("fail-fast") == SupervisorFlags(
        strategy=Strategy.ONE_FOR_ONE, max_restarts=0, within=1.0
    )
    assert preset("resilient") == SupervisorFlags(
        strategy=Strategy.ONE_FOR_ONE, max_restarts=10, within=60.0,
        backoff=Backoff(initial=0.5, max=30.0, multiplier=2.0, jitter=0.2),
    )
    assert preset("flaky-network") == SupervisorFlags(
        strategy=Strategy.ONE_FOR_ONE, max_restarts=5, within=30.0,
        backoff=Backoff(initial=1.0, max=20.0, multiplier=2.0, jitter=0.5),
    )
    assert preset("all-or-nothing") == SupervisorFlags(
        strategy=Strategy.ONE_FOR_ALL, max_restarts=2, within=60.0,
        backoff=Backoff(initial=1.0, max=10.0),
    )


def test_use_of_a_preset_as_is_gives_the_preset() -> None:
    playbook = load(POLICIES)

    assert playbook.task("a").supervision == preset("resilient")


def test_use_of_a_preset_with_an_override_changes_only_that_field() -> None:
    playbook = load(POLICIES)

    assert playbook.task("b").supervision == attrs.evolve(
        preset("flaky-network"), strategy=Strategy.ONE_FOR_ALL
    )


def test_an_override_of_one_backoff_field_keeps_the_presets_other_backoff_fields() -> None:
    playbook = load(POLICIES)

    expected = preset("all-or-nothing")
    expected = attrs.evolve(expected, backoff=attrs.evolve(expected.backoff, max=2.0))
    assert playbook.task("d").supervision == expected


def test_a_playbook_policy_is_usable_by_name_and_may_itself_use_a_preset() -> None:
    playbook = load(POLICIES)

    patient = SupervisorFlags(
        strategy=Strategy.REST_FOR_ONE, max_restarts=20, within=600.0,
        backoff=Backoff(initial=0.25, max=60.0, multiplier=1.5, jitter=0.1, reset_after=120.0),
    )
    assert playbook.policies["patient"] == patient
    assert playbook.policies["careful"] == attrs.evolve(preset("fail-fast"), within=5.0)
    assert playbook.task("c").supervision == playbook.policies["careful"]
    assert playbook.supervision == attrs.evolve(patient, max_restarts=4)


def test_a_playbook_policy_of_a_presets_name_takes_its_place_in_that_playbook() -> None:
    playbook = load("""\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        policies:
          resilient: {max_restarts: 1, within: 5s}
        tasks:
          - name: a
            supervision: {use: resilient}
            steps: [{name: s, plugin: echo}]
        """)

    assert playbook.task("a").supervision == attrs.evolve(
        TASK_DEFAULT, max_restarts=1, within=5.0
    )


# -- steps ------------------------------------------------------------------------------


def test_step_options_are_read_into_the_model() -> None:
    task = load(STEP_OPTIONS).task("fetch")

    get, script, fn = task.steps
    assert (get.timeout, get.restart, get.runner) == (0.25, Restart.PERMANENT, Runner.KUBERNETES)
    assert get.on_error == {
        "timeout": ErrorAction.RESTART,
        "crash": ErrorAction.ESCALATE,
        "HTTPError": ErrorAction.STOP,
        "template": ErrorAction.CONTINUE,
    }
    assert get.action_for("HTTPError") is ErrorAction.STOP
    assert get.action_for("SomethingElse") is ErrorAction.RESTART
    assert (script.timeout, script.restart, script.runner) == (1.5, Restart.TEMPORARY,
                                                               Runner.PROCESS)
    assert script.with_ == {"command": ["ls", "-l"]}
    assert (fn.timeout, fn.restart, fn.runner) == (300.0, Restart.TRANSIENT, Runner.INPROC)
    assert task.supervision == SupervisorFlags(
        strategy=Strategy.ONE_FOR_ALL, max_restarts=0, within=3600.0
    )


def test_a_timeout_of_700ms_survives_the_round_trip() -> None:
    playbook = load("""\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - name: a
            steps: [{name: s, plugin: echo, timeout: 700ms}]
        """)

    assert playbook.task("a").step("s").timeout == 0.7
    assert round_trip(playbook) == playbook


# -- needs and templates -----------------------------------------------------------------


def test_needs_keep_their_order_and_a_task_may_refer_to_tasks_it_needs_transitively() -> None:
    playbook = load(GRAPH)

    assert [t.name for t in playbook.tasks] == ["source", "left", "right", "join", "report"]
    assert playbook.task("join").needs == ("left", "right")
    assert playbook.task("report").needs == ("join",)
    assert playbook.task("report").step("mail").with_ == {
        "msg": "{{ tasks.source.steps.read.output }} / {{ tasks.join.steps.j.output }}"
    }


def chain_of_needs(count: int, *, ring: bool = False) -> str:
    """`count` tasks, each needing the next (the last one the first, in a ring).

    The first task reads the last one's output, through all the others.
    """
    lines = ["apiVersion: noetl.io/v1", "kind: Playbook", "name: chain", "tasks:"]
    for i in range(count):
        after = f"t{i + 1}" if i + 1 < count else ("t0" if ring else None)
        msg = f"'{{{{ tasks.t{count - 1}.steps.s.output }}}}'" if i == 0 else "hi"
        lines.append(f"  - name: t{i}")
        if after:
            lines.append(f"    needs: [{after}]")
        lines.append(f"    steps: [{{name: s, plugin: echo, with: {{msg: {msg}}}}}]")
    return "\n".join(lines) + "\n"


def test_a_chain_of_3000_needs_is_valid_and_its_first_task_may_read_the_last() -> None:
    # The check walks 3,000 needs deep: deeper than Python's stack.
    playbook = parse_playbook(chain_of_needs(3000), FILE)

    assert len(playbook.tasks) == 3000
    assert playbook.task("t0").needs == ("t1",)
    assert playbook.task("t0").step("s").with_ == {"msg": "{{ tasks.t2999.steps.s.output }}"}


def test_with_keeps_templates_as_written_and_other_values_as_their_types() -> None:
    playbook = load(TEMPLATES)

    args = playbook.task("extract").step("parse").with_["args"]
    assert args["days"] == "{{ vars.days }}"
    assert args["each"] == "{% for d in vars.days %}{{ d }}-{{ attempt }} {% endfor %}"
    assert playbook.vars == {"region": "eu", "days": ["mon", "tue"], "limits": {"rows": 10}}


def test_set_overrides_replace_vars_and_are_kept_in_the_model() -> None:
    playbook = load(TEMPLATES, overrides={"region": "us", "extra": 3})

    assert playbook.vars == {
        "region": "us", "days": ["mon", "tue"], "limits": {"rows": 10}, "extra": 3,
    }
    assert round_trip(playbook) == playbook


def test_a_set_override_makes_a_reference_to_an_otherwise_undefined_var_valid() -> None:
    text = """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - name: a
            steps: [{name: s, plugin: echo, with: {msg: "{{ vars.day }}"}}]
        """
    with pytest.raises(PlaybookError) as caught:
        load(text)
    assert [str(p) for p in caught.value.problems] == [
        "pb.yaml:6:49: vars.day is not defined in vars (nor given with --set)"
    ]

    playbook = load(text, overrides={"day": "2024-01-01"})

    assert playbook.vars == {"day": "2024-01-01"}



def test_the_loop_variable_of_a_for_block_is_not_an_unknown_name() -> None:
    playbook = load("""\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        vars: {days: [mon, tue]}
        tasks:
          - name: a
            steps:
              - name: s
                plugin: echo
                with: {msg: "{% for d in vars.days %}{{ loop.index }}={{ d }} {% endfor %}"}
        """)

    assert round_trip(playbook) == playbook

# -- YAML conveniences --------------------------------------------------------------------


def test_anchors_and_aliases_reuse_a_mapping() -> None:
    playbook = load("""\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        policies:
          quick: &quick {max_restarts: 1, within: 5s}
        supervision: *quick
        tasks:
          - name: a
            supervision: *quick
            steps: [{name: s, plugin: echo}]
        """)

    assert playbook.task("a").supervision == attrs.evolve(TASK_DEFAULT, max_restarts=1,
                                                          within=5.0)
    assert playbook.supervision == attrs.evolve(WORKFLOW_DEFAULT, max_restarts=1, within=5.0)


def test_a_yaml_merge_key_is_applied_as_any_yaml_loader_does() -> None:
    playbook = load("""\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        vars:
          base: &base {region: eu, day: mon}
          here:
            <<: *base
            day: tue
        tasks:
          - name: a
            steps: [{name: s, plugin: echo}]
        """)

    assert playbook.vars["here"] == {"region": "eu", "day": "tue"}


def test_a_custom_catalog_decides_which_plugins_and_presets_exist() -> None:
    catalog = Catalog(plugins={}, presets={"mine": attrs.evolve(TASK_DEFAULT, max_restarts=9)})
    text = """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - name: a
            supervision: {use: resilient}
            steps: [{name: s, plugin: echo}]
        """

    with pytest.raises(PlaybookError) as caught:
        load(text, catalog=catalog)

    assert [str(p) for p in caught.value.problems] == [
        "pb.yaml:6:24: unknown policy 'resilient'; known: mine",
        "pb.yaml:7:31: unknown plugin 'echo'; known: none",
    ]


def test_load_playbook_reads_a_file_and_names_it_in_problems(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(textwrap.dedent(MINIMAL), encoding="utf-8")
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: noetl.io/v1\nkind: Playbook\nname: x y\n"
                   "tasks: [{name: a, steps: [{name: s, plugin: echo}]}]\n", encoding="utf-8")

    assert load_playbook(good) == load(MINIMAL)
    assert load_playbook(good).file == str(good)
    with pytest.raises(PlaybookError) as caught:
        load_playbook(bad)
    assert str(caught.value).startswith(f"{bad}:3:7: the playbook name 'x y'")


# -- examples/ ------------------------------------------------------------------------------

EXAMPLE_FILES = sorted(EXAMPLES.glob("*.yaml")) + sorted(EXAMPLES.glob("*.yml"))


@pytest.mark.skipif(not EXAMPLE_FILES, reason="examples/ holds no playbook yet")
@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=[p.name for p in EXAMPLE_FILES])
def test_every_example_playbook_loads_and_round_trips(path: Path) -> None:
    playbook = load_playbook(path)

    assert round_trip(playbook) == playbook
