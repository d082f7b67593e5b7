"""NoETL's own 2023-24 (NATS era) playbooks: translated to the native model, with warnings.

The files under tests/playbooks/legacy/ are modelled on the shapes the NoETL
repository used in 2023-24 (tasks keyed by name or listed with taskName,
``plugin: "<name>:<version>"`` with the plugin's fields beside it, ``switch``
branches, ``{{ spec.vars.X }}`` and ``{{ tasks.T.steps.S.response }}``).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from noetl_actors.errors import PlaybookError
from noetl_actors.playbook import Playbook, Problem, parse_playbook, parse_yaml
from noetl_actors.playbook._legacy import is_legacy

LEGACY = Path(__file__).parent / "playbooks" / "legacy"


def load(name: str, **overrides: str) -> Playbook:
    path = LEGACY / name
    return parse_playbook(path.read_text(encoding="utf-8"), name, overrides=overrides)


def text(source: str) -> str:
    return textwrap.dedent(source).lstrip("\n")


def flow(playbook: Playbook) -> list[tuple[str, object, object]]:
    """Each task's name, `next` routes (target, when) and own `when` (None: runs)."""
    return [(t.name, [(r.task, r.when) for r in t.next], t.when) for t in playbook.tasks]


def warning_at(playbook: Playbook, line: int, col: int, fragment: str) -> Problem:
    found = [w for w in playbook.warnings if (w.line, w.col) == (line, col)
             and fragment in w.message]
    assert found, (f"no warning at {line}:{col} with {fragment!r}; got:\n"
                   + "\n".join(str(w) for w in playbook.warnings))
    return found[0]


def errors(source: str, file: str = "old.yaml") -> list[tuple[int, int, str]]:
    """The errors of an invalid file (the translation's warnings come with them)."""
    with pytest.raises(PlaybookError) as caught:
        parse_playbook(text(source), file)
    problems = caught.value.problems
    assert any(p.warning and "translated to noetl.io/v1" in p.message for p in problems)
    return [(p.line, p.col, p.message) for p in problems if not p.warning]


# -- the four example playbooks --------------------------------------------------------


def test_world_clock_tasks_and_steps_keyed_by_name():
    playbook = load("world_clock.yaml", ZONE="Europe/Paris")

    assert playbook.name == "world-clock-notify"
    assert dict(playbook.vars) == {
        "CLOCK_API": "https://clock.example.org/api/zone",
        "HOOK_URL": "https://hooks.example.org/T000/B000",
        "FIRST_TASK": "read-clock",
        "NEXT_TASK": "post-time",
        "ZONE": "Europe/Paris",
    }
    assert [t.name for t in playbook.tasks] == ["read-clock", "post-time"]
    read, post = playbook.tasks
    assert read.needs == post.needs == ()
    # The step's next: "{{ spec.vars.NEXT_TASK }}"
    assert flow(playbook) == [("read-clock", [("post-time", None)], None),
                              ("post-time", [], None)]
    fetch = read.step("fetch-now")
    assert fetch.plugin == "http"
    assert dict(fetch.with_) == {"method": "GET",
                                 "url": "{{ vars.CLOCK_API }}/{{ vars.ZONE }}"}
    # A task with a plugin and no steps is one step named after the task.
    (send,) = post.steps
    assert send.name == "post-time"
    assert send.plugin == "http"
    assert dict(send.with_) == {
        "method": "POST",
        "url": "{{ vars.HOOK_URL }}",
        # The old http handler's response was the body text.
        "body": {"text": "It is now {{ tasks['read-clock'].steps['fetch-now'].output.body }} "
                         "in {{ vars.ZONE }}"},
    }

    first = playbook.warnings[0]
    assert (first.file, first.line, first.col, first.warning) == ("world_clock.yaml", 2, 1, True)
    assert first.message == ("NoETL 2023-24 playbook (metadata and spec): translated to "
                             "noetl.io/v1; see docs/playbooks.md")
    warning_at(playbook, 8, 11, "vars.ZONE took the run input (ZONE)")
    warning_at(playbook, 8, 11, "--set ZONE=VALUE")
    warning_at(playbook, 13, 3, "spec.timeout dropped")
    warning_at(playbook, 23, 7, "nats of task 'read-clock' dropped")
    warning_at(playbook, 29, 19, "plugin 'http-handler:0_1_0': translated to 'http'; its "
                                 "version '0_1_0' is ignored")
    warning_at(playbook, 34, 7, "task 'post-time' has no steps")
    warning_at(playbook, 38, 7, "'data' of plugin 'http' becomes 'body'")
    # An empty spec.input drops quietly; transitions and state are the old runtime's own.
    assert not [w for w in playbook.warnings if "input dropped" in w.message
                or "transitions" in w.message or "state" in w.message]


def test_artifact_repo_switch_router_and_shell_steps():
    playbook = load("artifact_repo.yaml")

    assert playbook.name == "ensure-artifact-repo"
    # The start task 'begin' only routed: it is gone, 'check-repo' starts.
    # The old dialect's comparison outside the braces is one native expression, and
    # the shell's exitCode is its exit_code now.
    assert flow(playbook) == [
        ("check-repo", [("create-repo", "(tasks['check-repo'].steps['describe-repo'].output"
                                        ".exit_code) != 0")], None),
        ("create-repo", [], None),
    ]
    check = playbook.task("check-repo")
    assert [s.plugin for s in check.steps] == ["shell", "shell"]
    assert check.step("describe-repo").with_["command"] == [
        "gcloud", "artifacts", "repositories", "describe", "{{ vars.REPO }}",
        "--location={{ vars.REGION }}",
    ]
    assert "exitCode" not in check.step("describe-repo").with_
    # Its exit code is read by the switch: a non-zero exit is an output, not a failure.
    assert check.step("describe-repo").with_["check"] is False
    assert "check" not in check.step("log-result").with_
    # An argument with a shell operator: one command line for sh.
    assert check.step("log-result").with_["command"] == (
        "echo exit status {{ steps['describe-repo'].output.exit_code }} | tee -a /tmp/repo.log"
    )

    warning_at(playbook, 2, 1, "(apiVersion: workflow.noetl.io/v1): translated to noetl.io/v1")
    warning_at(playbook, 13, 3, "spec.schedule dropped")
    warning_at(playbook, 18, 5, "task 'begin' has no steps, it only chose the next task")
    warning_at(playbook, 33, 11, "exitCode 0 dropped")
    warning_at(playbook, 37, 11, "command and args joined into one shell command line")
    assert not [w for w in playbook.warnings if (w.line, w.col) == (42, 22)]
    warning_at(playbook, 44, 22, "condition dropped with its branch, which ended the workflow")
    warning_at(playbook, 53, 18, "route from task 'create-repo' back to task 'check-repo' "
                                 "dropped with its condition")


def test_city_report_list_form_with_task_and_step_names():
    playbook = load("city_report.yaml")

    assert playbook.name == "city_report"
    assert playbook.description == "Fetch a city's forecast, summarise it, publish it."
    assert flow(playbook) == [
        ("forecast", [("publish", "tasks.forecast.steps.summarise.output.ok"),
                      ("archive", None)], None),
        ("archive", [], None),
        ("publish", [], None),
    ]
    forecast = playbook.task("forecast")
    assert [s.name for s in forecast.steps] == ["fetch_raw", "summarise"]
    assert [s.plugin for s in forecast.steps] == ["http", "python"]
    # steps.S.response inside a task, with the old dotted name renamed too.
    assert forecast.step("summarise").with_ == {
        "function": "reports.weather:summarise",
        "args": {"raw": "{{ steps.fetch_raw.output.body }}"},
    }
    assert playbook.task("archive").steps[0].with_ == {"command": "cp /tmp/forecast.json "
                                                                  "/archive/"}
    assert playbook.task("publish").steps[0].with_ == {
        "method": "POST",
        "url": "{{ vars.API }}/publish",
        "body": "{{ tasks.forecast.steps.summarise.output }}",
    }

    first = playbook.warnings[0]
    assert (first.line, first.col) == (2, 1)
    assert first.message.startswith("NoETL 2023-24 playbook (type: Playbook): translated to "
                                    "noetl.io/v1")
    warning_at(playbook, 5, 17, "playbook name 'city report' may hold only letters, digits, "
                                "'_' and '-': translated to 'city_report'")
    warning_at(playbook, 16, 19, "step name 'fetch.raw'")
    warning_at(playbook, 21, 17, "plugin 'python:0.3': its version '0.3' is ignored")
    assert not [w for w in playbook.warnings if "condition" in w.message]
    # The branch's params: the inputs of the task it routes to.
    assert playbook.task("forecast").next[0].with_ == {"channel": "weather"}
    assert not [w for w in playbook.warnings if "params" in w.message]


def test_fan_in_loop_and_stray_task():
    playbook = load("fan_in.yaml")

    assert flow(playbook) == [
        ("extract", [("clean-a", None), ("clean-b", None)], None),
        ("clean-a", [("load", None)], None),
        ("clean-b", [("load", None)], None),
        ("load", [], None),
        ("report", [], False),  # reached by no route from the start: it does not run
    ]
    assert playbook.task("load").steps[0].with_["msg"] == (
        "{{ tasks['clean-a'].steps.run.output }} {{ tasks['clean-b'].steps.run.output }}"
    )
    warning_at(playbook, 32, 15, "task 'load' is reached from tasks 'clean-a', 'clean-b': it "
                                 "now waits for all of them")
    warning_at(playbook, 38, 19, "route from task 'load' back to task 'extract' dropped with "
                                 "its condition: needs and next cannot form a cycle")
    assert not [w for w in playbook.warnings if "report" in w.message]


@pytest.mark.parametrize("name", sorted(p.name for p in LEGACY.glob("*.yaml")))
def test_every_warning_is_located_and_marked(name):
    playbook = load(name, ZONE="UTC")
    assert playbook.warnings
    assert "translated to noetl.io/v1" in playbook.warnings[0].message
    lines = len((LEGACY / name).read_text(encoding="utf-8").splitlines())
    for warning in playbook.warnings:
        assert warning.warning is True
        assert warning.file == name
        assert 1 <= warning.line <= lines and warning.col >= 1
        assert str(warning).startswith(f"{name}:{warning.line}:{warning.col}: warning: ")
    positions = [(w.line, w.col) for w in playbook.warnings[1:]]
    assert positions == sorted(positions)


@pytest.mark.parametrize("name", sorted(p.name for p in LEGACY.glob("*.yaml")))
def test_translation_round_trips_through_the_native_format(name):
    playbook = load(name, ZONE="UTC")
    native = parse_playbook(yaml.safe_dump(playbook.to_dict(), sort_keys=False), "native.yaml")
    assert native == playbook
    assert native.warnings == ()


# -- errors point into the original file -------------------------------------------------


def test_run_input_var_not_given_is_an_error_at_its_use():
    source = (LEGACY / "world_clock.yaml").read_text(encoding="utf-8")
    with pytest.raises(PlaybookError) as caught:
        parse_playbook(source, "world_clock.yaml")
    problems = caught.value.problems
    assert [(p.line, p.col, p.message) for p in problems if not p.warning] == [
        (31, 16, "vars.ZONE is not defined in vars (nor given with --set)"),
        (39, 15, "vars.ZONE is not defined in vars (nor given with --set)"),
    ]
    assert any(p.warning and "--set ZONE=" in p.message for p in problems), \
        "the warning that says how to give the var comes with the error"


ERRORS = [
    pytest.param(
        """
        type: Playbook
        metadata:
          playbookName: load
        tasks:
          - taskName: a
            steps:
              - stepName: s
                plugin: "kafka-producer:0_2_0"
                topic: events
        """,
        [(8, 17, "unknown plugin 'kafka-producer'")],
        id="unknown-plugin",
    ),
    pytest.param(
        """
        type: Playbook
        metadata:
          playbookName: load
        spec:
          vars:
            HOST: db
        tasks:
          - taskName: a
            steps:
              - stepName: s
                plugin: "shell:1"
                command: "psql -h {{ spec.vars.HOTS }}"
        """,
        [(12, 18, "vars.HOTS is not defined in vars")],
        id="misspelt-var",
    ),
    pytest.param(
        """
        type: Playbook
        metadata:
          playbookName: load
        tasks:
          - taskName: a
            steps:
              - stepName: s
                plugin: "echo:1"
                msg: "{{ tasks.b.steps.t.response }}"
          - taskName: b
            steps:
              - stepName: t
                plugin: "echo:1"
                msg: hi
        """,
        [(9, 14, "tasks.b does not run before task 'a': add it to needs")],
        id="output-of-a-task-not-run-before",
    ),
    pytest.param(
        """
        type: Playbook
        metadata:
          playbookName: load
        tasks:
          - taskName: a
            steps:
              - stepName: s
                plugin: "echo:1"
              - stepName: s
                plugin: "echo:1"
        """,
        [(9, 19, "duplicate step name 's' (first at line 7)")],
        id="duplicate-step",
    ),
    pytest.param(
        """
        type: Playbook
        metadata:
          playbookName: load
        spec:
          tasks:
            a:
              description: nothing to do
        """,
        [(7, 7, "a task needs 'steps'")],
        id="task-without-steps",
    ),
    pytest.param(
        """
        type: Playbook
        spec:
          tasks:
            a:
              steps:
                s:
                  plugin: "echo:1"
        """,
        [(1, 1, "a playbook needs 'name'")],
        id="no-playbook-name",
    ),
    pytest.param(
        """
        type: Playbook
        metadata:
          playbookName: load
        tasks:
          - taskName: a
            steps:
              - stepName: [s]
                plugin: "echo:1"
        """,
        [(7, 19, "step name must be a string")],
        id="step-name-not-a-string",
    ),
    pytest.param(
        """
        type: Playbook
        metadata:
          playbookName: load
        tasks:
          - taskName: a
            steps:
              - stepName: s
                plugin: "echo:1"
                msg: "{{ steps.s.response }}"
        """,
        [(9, 14, "steps.s refers to this step itself")],
        id="step-refers-to-itself",
    ),
]


@pytest.mark.parametrize(("source", "expected"), ERRORS)
def test_errors_in_a_legacy_file_point_at_the_original_place(source, expected):
    found = errors(source)
    assert len(found) == len(expected), found
    for (line, col, message), (want_line, want_col, fragment) in zip(found, expected,
                                                                     strict=True):
        assert (line, col) == (want_line, want_col), found
        assert fragment in message, found


# -- placeholders ---------------------------------------------------------------------------


def one_step(template: str) -> str:
    """The rewritten `msg` of step 'late' in a two-task legacy playbook."""
    source = text(f"""
        type: Playbook
        metadata:
          playbookName: refs
        spec:
          vars:
            A: 1
            B-C: 2
          initialSettings:
            start: [first-task]
        tasks:
          - taskName: first-task
            steps:
              - stepName: get-it
                plugin: "echo:1"
                msg: hi
              - stepName: call
                plugin: "http-handler:0_1_0"
                url: "https://example.org"
            switch:
              - nextTask: second
          - taskName: second
            steps:
              - stepName: early
                plugin: "echo:1"
                msg: hi
              - stepName: late
                plugin: "echo:1"
                msg: {template!r}
        """)
    playbook = parse_playbook(source, "refs.yaml")
    return str(playbook.task("second").step("late").with_["msg"])


@pytest.mark.parametrize(("legacy", "native"), [
    ("{{ spec.vars.A }}", "{{ vars.A }}"),
    ("{{ spec.vars['B-C'] }}", "{{ vars['B-C'] }}"),
    ("{{ tasks.first-task.steps.get-it.response }}",
     "{{ tasks['first-task'].steps['get-it'].output }}"),
    ("{{ tasks.first-task.steps.get-it.response.x }}",
     "{{ tasks['first-task'].steps['get-it'].output.x }}"),
    ("{{ tasks.first-task.steps.get-it.output }}",
     "{{ tasks['first-task'].steps['get-it'].output }}"),
    ("{{ tasks.first-task.steps.call.response }}",
     "{{ tasks['first-task'].steps.call.output.body }}"),
    ("{{ tasks.first-task.steps.call.output.status }}",
     "{{ tasks['first-task'].steps.call.output.status }}"),
    # An echo step has no exit code: one that ran succeeded (a warning says so).
    ("{{ $.tasks.first-task.steps.get-it.exitCode }}", "{{ 0 }}"),
    ("{{ data.first-task.get-it.output.exitCode }}", "{{ 0 }}"),
    ("{{ tasks.second.steps.early.response }}", "{{ steps.early.output }}"),
    ("{{ steps.early.response }}", "{{ steps.early.output }}"),
    ("{{ metadata.playbookName }}", "{{ workflow.name }}"),
    ("{% if spec.vars.A %}{{ spec.vars.A | string }}{% endif %}",
     "{% if vars.A %}{{ vars.A | string }}{% endif %}"),
    ("plain spec.vars.A text", "plain spec.vars.A text"),
])
def test_placeholders_are_rewritten(legacy, native):
    assert one_step(legacy) == native


def test_run_input_in_a_step_becomes_a_var_with_a_warning():
    source = text("""
        type: Playbook
        metadata:
          playbookName: refs
        tasks:
          - taskName: a
            steps:
              - stepName: s
                plugin: "echo:1"
                msg: "{{ input.WHO }}"
        """)
    playbook = parse_playbook(source, "refs.yaml", overrides={"WHO": "me"})
    assert playbook.tasks[0].steps[0].with_ == {"msg": "{{ vars.WHO }}"}
    warning_at(playbook, 9, 14, "input.WHO (the run input) becomes vars.WHO: give it with "
                                "--set WHO=VALUE")


# -- flow edge cases ----------------------------------------------------------------------------


def test_start_list_with_inputs_and_next_tasks_with_args():
    source = text("""
        apiVersion: noetl.io/v1
        kind: Playbook
        metadata:
          name: twice
        spec:
          initialSettings:
            start: [fetch:{input: 1}, fetch:{input: 2}]
          tasks:
            fetch:
              steps:
                now:
                  plugin: "echo:1"
                  msg: now
              switch:
                - condition: "{{ now.output.exitCode }} != 0"
                  next:
                    - task: notify
                      args:
                        ref: "{{ now.ref }}"
            notify:
              steps:
                send:
                  plugin: "echo:1"
                  msg: "{{ tasks.fetch.steps.now.response }}"
        """)
    playbook = parse_playbook(source, "twice.yaml")
    # now.output: a step of the task whose switch it is; an echo step's exitCode is 0.
    assert flow(playbook) == [
        ("fetch", [("notify", "(0) != 0")], None),
        ("notify", [], None)]
    warning_at(playbook, 7, 13, "input for start task 'fetch' dropped")
    warning_at(playbook, 7, 31, "start names task 'fetch' again: it runs once")
    # args of a next task: its inputs, read from the task the route leaves.
    assert playbook.task("fetch").next[0].with_ == {"ref": "{{ tasks.fetch.steps.now.output.ref }}"}


def test_unknown_next_and_start_tasks_are_warned_and_ignored():
    source = text("""
        type: Playbook
        metadata:
          playbookName: lost
        spec:
          initialSettings:
            start: [nowhere, a]
        tasks:
          - taskName: a
            steps:
              - stepName: s
                plugin: "echo:1"
                next: s2
              - stepName: s2
                plugin: "echo:1"
            switch:
              - nextTask: b-typo
        """)
    playbook = parse_playbook(source, "lost.yaml")
    assert [(t.name, t.needs) for t in playbook.tasks] == [("a", ())]
    warning_at(playbook, 6, 13, "spec.initialSettings.start names 'nowhere', which is not a "
                                "task here: ignored")
    warning_at(playbook, 16, 19, "next task 'b-typo' of task 'a' is not a task here: ignored")
    # A step's next naming a later step of the same task says nothing: steps run in order.
    assert not [w for w in playbook.warnings if "'s2'" in w.message]


def test_without_a_start_every_root_task_starts():
    source = text("""
        type: Playbook
        metadata:
          playbookName: roots
        tasks:
          - taskName: b
            steps: [{stepName: s, plugin: "echo:1"}]
          - taskName: a
            steps: [{stepName: s, plugin: "echo:1"}]
            switch: [{nextTask: b}]
        """)
    playbook = parse_playbook(source, "roots.yaml")
    assert flow(playbook) == [("b", [], None), ("a", [("b", None)], None)]
    assert not [w for w in playbook.warnings if "not reached" in w.message]


def test_task_names_that_are_not_subject_tokens_are_renamed_everywhere():
    source = text("""
        type: Playbook
        metadata:
          playbookName: renames
        spec:
          initialSettings:
            start: ["get data"]
        tasks:
          - taskName: get data
            steps:
              - stepName: s
                plugin: "echo:1"
            switch:
              - nextTask: "use.data"
          - taskName: use.data
            steps:
              - stepName: s
                plugin: "echo:1"
                msg: "{{ tasks['get data'].steps.s.response }}"
        """)
    playbook = parse_playbook(source, "renames.yaml")
    assert flow(playbook) == [("get_data", [("use_data", None)], None),
                              ("use_data", [], None)]
    assert playbook.tasks[1].steps[0].with_["msg"] == "{{ tasks.get_data.steps.s.output }}"
    warning_at(playbook, 8, 15, "task name 'get data' may hold only letters, digits, '_' and "
                                "'-': translated to 'get_data'")
    warning_at(playbook, 14, 15, "task name 'use.data'")


def test_a_name_ending_in_a_newline_is_renamed_not_refused():
    # `$` also matches before a final newline: "fetch\n" once passed as a name
    # here, and the loader then refused the file.
    source = text("""
        type: Playbook
        metadata:
          playbookName: newline
        tasks:
          - taskName: "fetch\\n"
            steps:
              - stepName: s
                plugin: "echo:1"
        """)
    playbook = parse_playbook(source, "newline.yaml")
    assert [t.name for t in playbook.tasks] == ["fetch"]
    warning_at(playbook, 5, 15, "task name 'fetch\\n' may hold only letters, digits, '_' and "
                                "'-': translated to 'fetch'")


# -- detection ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("source", "legacy"), [
    ("apiVersion: noetl.io/v1\nkind: Playbook\nname: p\ntasks: []\n", False),
    ("apiVersion: noetl.io/v1\nkind: Playbook\nname: p\nmetadata: {}\ntasks: []\n", False),
    ("apiVersion: noetl.io/v1\nkind: Playbook\nname: p\ntype: Playbook\n", False),
    ("apiVersion: noetl.io/v1\nkind: Playbook\ntasks: []\n", False),
    ("- a\n- b\n", False),
    ("just text\n", False),
    ("type: Playbook\nmetadata: {playbookName: p}\n", True),
    ("apiVersion: noetl.io/v1\nkind: Playbook\nmetadata: {name: p}\nspec: {}\n", True),
    ("apiVersion: workflow.noetl.io/v1\nkind: Workflow\n", True),
    ("kind: Workflow\n", True),
    ("tasks:\n  - taskName: a\n", True),
])
def test_detection(source, legacy):
    root, problems = parse_yaml(source, "x.yaml")
    assert root is not None and not problems
    assert is_legacy(root) is legacy


def test_a_native_playbook_is_not_translated():
    source = text("""
        apiVersion: noetl.io/v1
        kind: Playbook
        name: native
        vars: {A: 1}
        tasks:
          - name: t
            steps:
              - name: s
                plugin: echo
                with: {msg: "{{ vars.A }}"}
        """)
    playbook = parse_playbook(source, "native.yaml")
    assert playbook.warnings == ()
    assert playbook.tasks[0].steps[0].with_ == {"msg": "{{ vars.A }}"}


def test_a_native_playbook_with_legacy_keys_gets_the_native_errors():
    with pytest.raises(PlaybookError) as caught:
        parse_playbook(text("""
        apiVersion: noetl.io/v1
        kind: Playbook
        name: native
        metadata: {playbookName: native}
        tasks:
          - name: t
            steps: [{name: s, plugin: echo}]
        """), "old.yaml")
    found = [(p.line, p.col, p.message) for p in caught.value.problems]
    assert not any(p.warning for p in caught.value.problems), "no translation happened"
    assert [(line, col) for line, col, _ in found] == [(4, 1)]
    assert "unknown key 'metadata' in a playbook" in found[0][2]


# -- conditions and unreached tasks, run -------------------------------------------------------

SWITCH = """
    type: Playbook
    metadata:
      playbookName: switch
    spec:
      vars: {WORD: hello, MARK: /nonexistent/mark}
      initialSettings:
        start: say
    tasks:
      - taskName: say
        steps:
          - stepName: speak
            type: shell
            command: echo
            args: ["{{ spec.vars.WORD }}"]
        switch:
          - nextTask: after-say
            condition: "{{ $.tasks.say.steps.speak.exitCode }} == 0"
          - nextTask: on-silence
            condition: "{{ speak.output.stdout }} == ''"
      - taskName: after-say
        steps:
          - {stepName: done, plugin: "echo:1", msg: "{{ tasks.say.steps.speak.response }}"}
      - taskName: on-silence
        steps:
          - {stepName: done, plugin: "echo:1", msg: silence}
      - taskName: never
        steps:
          - {stepName: oops, type: shell, command: "touch", args: ["{{ spec.vars.MARK }}"]}
"""


def test_a_switch_runs_as_its_author_wrote_it(tmp_path: Path) -> None:
    """The issue's case: the condition decides, the unreached task does not run."""
    from tests.run_helpers import run_playbook

    mark = tmp_path / "never-ran"
    path = tmp_path / "switch.yaml"
    path.write_text(text(SWITCH))
    playbook = parse_playbook(path.read_text(encoding="utf-8"), path.name)
    assert not [w for w in playbook.warnings if "condition" in w.message
                or "reached" in w.message], playbook.warnings
    result, document = run_playbook(path, tmp_path / "state", "--set", "WORD=hi",
                                    "--set", f"MARK={mark}")
    assert result.returncode == 0, result.stderr
    assert {name: task["status"] for name, task in document["tasks"].items()} == {
        "say": "succeeded", "after-say": "succeeded", "on-silence": "skipped",
        "never": "skipped"}
    assert document["tasks"]["after-say"]["steps"]["done"]["output"]["msg"]["stdout"] == "hi\n"
    assert document["tasks"]["never"]["skipped"] == "when: false", "unreached from the start"
    assert not mark.exists(), "the unreached task ran"


def test_a_condition_that_is_no_expression_is_dropped_with_a_warning_at_it():
    source = text("""
        type: Playbook
        metadata:
          playbookName: odd
        tasks:
          - taskName: a
            steps: [{stepName: s, plugin: "echo:1"}]
            switch:
              - nextTask: b
                condition: "{% if x %}yes{% endif %}"
              - nextTask: c
                condition: "{{ tasks.a.steps.s.output }} =="
          - taskName: b
            steps: [{stepName: s, plugin: "echo:1"}]
          - taskName: c
            steps: [{stepName: s, plugin: "echo:1"}]
        """)
    playbook = parse_playbook(source, "odd.yaml")
    assert flow(playbook)[0] == ("a", [("b", None), ("c", None)], None)
    warning_at(playbook, 9, 20, "condition with a {% %} block dropped, the route is always "
                                "taken")
    warning_at(playbook, 11, 20, "condition '{{ tasks.a.steps.s.output }} ==' dropped, the "
                                 "route is always taken: it is not one expression")


EXIT_CODES = """
    type: Playbook
    metadata:
      playbookName: exit-codes
    spec:
      vars: {GO: 1}
      initialSettings:
        start: begin
    tasks:
      - taskName: begin
        switch:
          - nextTask: fetch
            condition: "{{ spec.vars.GO }} == 1"
      - taskName: fetch
        steps:
          - {stepName: get, plugin: "echo:1", msg: hi}
        switch:
          - nextTask: notify
            condition: "{{ get.output.exitCode }} != 0"
          - nextTask: done
            condition: "{{ $.tasks.fetch.steps.get.exitCode }} == 0"
      - taskName: notify
        steps: [{stepName: s, plugin: "echo:1", msg: failed}]
      - taskName: done
        steps: [{stepName: s, plugin: "echo:1", msg: ok}]
"""


def test_the_exit_code_of_a_step_that_is_not_a_shell_step_is_0_with_a_warning_at_it(
        tmp_path: Path) -> None:
    """NoETL's fetch-world-time read an http step's exitCode: native http steps have
    none, so the route's condition failed the workflow; a step that ran has succeeded."""
    from tests.run_helpers import run_playbook

    path = tmp_path / "exits.yaml"
    path.write_text(text(EXIT_CODES))
    playbook = parse_playbook(path.read_text(encoding="utf-8"), path.name)
    assert flow(playbook) == [
        ("fetch", [("notify", "(0) != 0"), ("done", "(0) == 0")], None),
        ("notify", [], None), ("done", [], None)]
    for line in (18, 20):
        warning_at(playbook, line, 20, "exitCode of echo step 'get' becomes 0: a native echo "
                                       "step has no exit code, and one that failed fails its "
                                       "task before a later step or a route reads it")
    # The start task that only routed: its condition cannot hold back a start task.
    warning_at(playbook, 12, 20, "condition dropped: start task 'begin' (no steps) chose task "
                                 "'fetch' on it; 'fetch' is a start task now and always starts")
    result, document = run_playbook(path, tmp_path / "state")
    assert result.returncode == 0, result.stderr
    assert {name: task["status"] for name, task in document["tasks"].items()} == {
        "fetch": "succeeded", "notify": "skipped", "done": "succeeded"}
    assert document["tasks"]["notify"]["skipped"] == (
        "not reached: no route to it was taken (from fetch)")


NOT_FOUND = """
    type: Playbook
    metadata:
      playbookName: ensure
    spec:
      vars: {CODE: 0}
      initialSettings:
        start: check
    tasks:
      - taskName: check
        steps:
          - stepName: describe
            type: shell
            command: sh
            args: ["-c", "exit {{ spec.vars.CODE }}"]
            exitCode: 0
        switch:
          - nextTask: create
            condition: "{{ $.tasks.check.steps.describe.exitCode }} != 0"
          - nextTask: found
            condition: "{{ describe.exitCode }} == 0"
      - taskName: create
        steps: [{stepName: make, plugin: "echo:1", msg: created}]
      - taskName: found
        steps: [{stepName: say, plugin: "echo:1", msg: found}]
"""


@pytest.mark.parametrize(("code", "ran", "skipped"), [("1", "create", "found"),
                                                      ("0", "found", "create")])
def test_a_switch_on_a_non_zero_exit_code_takes_its_branch(
        tmp_path: Path, code: str, ran: str, skipped: str) -> None:
    """NoETL's create-artifact-repository shape: describe a thing, create it if that
    exited non-zero. The shell step whose exitCode a switch reads gets check: false."""
    from tests.run_helpers import run_playbook

    path = tmp_path / "ensure.yaml"
    path.write_text(text(NOT_FOUND))
    playbook = parse_playbook(path.read_text(encoding="utf-8"), path.name)
    assert playbook.task("check").step("describe").with_ == {
        "command": ["sh", "-c", "exit {{ vars.CODE }}"], "check": False}
    assert not [w for w in playbook.warnings if "condition" in w.message]
    result, document = run_playbook(path, tmp_path / "state", "--set", f"CODE={code}")
    assert result.returncode == 0, result.stderr
    describe = document["tasks"]["check"]["steps"]["describe"]
    assert (describe["status"], describe["attempts"]) == ("succeeded", 1)
    assert describe["output"]["exit_code"] == int(code)
    assert document["tasks"][ran]["status"] == "succeeded"
    assert document["tasks"][skipped]["status"] == "skipped"
