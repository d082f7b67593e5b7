"""Invalid playbooks: each is refused with `file:line:col: what is wrong`.

The table holds small YAML texts, each wrong in one way (a few in two
closely tied ways), and every problem the loader must report for it: the
exact line and column it points at and a fragment of the message. A case
passes only if the problems reported are exactly those, so an extra,
misplaced or missing problem fails it.

Lines and columns are 1-based, as an editor shows them. Most texts start
with the same three lines (apiVersion, kind, name), so `tasks:` is line 4.
"""

from __future__ import annotations

import textwrap

import pytest

from noetl_actors.errors import PlaybookError
from noetl_actors.playbook import Problem, parse_playbook
from tests.test_playbook_valid import chain_of_needs

FILE = "pb.yaml"

Expected = tuple[int, int, str]


def case(case_id: str, text: str, *expected: Expected) -> object:
    return pytest.param(textwrap.dedent(text), list(expected), id=case_id)


def problems_of(text: str) -> list[Problem]:
    with pytest.raises(PlaybookError) as caught:
        parse_playbook(text, FILE)
    return caught.value.problems


def describe(problems: list[Problem]) -> str:
    return "\n".join(str(p) for p in problems) or "(none)"


CASES = [
    # -- YAML syntax ----------------------------------------------------------------
    case(
        "a tab used for indentation is a YAML syntax error at the tab",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
        \t- name: a
        """,
        (5, 1, "YAML syntax: while scanning for the next token, found character '\\t'"),
    ),
    case(
        "a key indented deeper than its siblings is a YAML syntax error at that key",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - name: a
           steps: []
        """,
        (6, 4, "YAML syntax: while parsing a block collection"),
    ),
    case(
        "an unclosed bracket is a YAML syntax error where the parser gives up",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        vars: [1, 2
        tasks: []
        """,
        (5, 6, "YAML syntax: while parsing a flow sequence, expected ',' or ']'"),
    ),
    case(
        "an unclosed quote is a YAML syntax error",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: "pb
        """,
        (4, 1, "YAML syntax: while scanning a quoted scalar, found unexpected end of stream"),
    ),
    case(
        "a NUL character is a YAML syntax error at that character, not a crash",
        "apiVersion: noetl.io/v1\nkind: Playbook\nname: pb\ndescription: bad \x00 byte\n"
        "tasks: [{name: a, steps: [{name: s, plugin: echo}]}]\n",
        (4, 18, "YAML syntax"),
    ),
    case("an empty file says the file is empty", "", (1, 1, "the file is empty")),
    case(
        "a file of comments only says the file is empty",
        "# nothing here yet\n\n",
        (1, 1, "the file is empty"),
    ),
    # -- the top level ----------------------------------------------------------------
    case(
        "a list at the top level is not a playbook",
        """\
        - apiVersion: noetl.io/v1
        - kind: Playbook
        """,
        (1, 1, "a playbook must be a mapping (got a list"),
    ),
    case(
        "a plain string at the top level is not a playbook",
        "hello\n",
        (1, 1, "a playbook must be a mapping (got string 'hello')"),
    ),
    case(
        "a playbook without apiVersion says so",
        """\
        kind: Playbook
        name: pb
        tasks: [{name: a, steps: [{name: s, plugin: echo}]}]
        """,
        (1, 1, "a playbook needs 'apiVersion'"),
    ),
    case(
        "a playbook without kind says so",
        """\
        apiVersion: noetl.io/v1
        name: pb
        tasks: [{name: a, steps: [{name: s, plugin: echo}]}]
        """,
        (1, 1, "a playbook needs 'kind'"),
    ),
    case(
        "a playbook without a name says so",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        tasks: [{name: a, steps: [{name: s, plugin: echo}]}]
        """,
        (1, 1, "a playbook needs 'name'"),
    ),
    case(
        "a playbook without tasks says so",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        """,
        (1, 1, "a playbook needs 'tasks'"),
    ),
    case(
        "a playbook with only a description lacks all four required keys",
        "description: nothing else\n",
        (1, 1, "a playbook needs 'apiVersion'"),
        (1, 1, "a playbook needs 'kind'"),
        (1, 1, "a playbook needs 'name'"),
        (1, 1, "a playbook needs 'tasks'"),
    ),
    case(
        "a wrong apiVersion points at the value and names the right one",
        """\
        apiVersion: noetl.io/v2
        kind: Playbook
        name: pb
        tasks: [{name: a, steps: [{name: s, plugin: echo}]}]
        """,
        (1, 13, "apiVersion must be 'noetl.io/v1' (got 'noetl.io/v2')"),
    ),
    case(
        "a wrong kind points at the value",
        """\
        apiVersion: noetl.io/v1
        kind: Workflow
        name: pb
        tasks: [{name: a, steps: [{name: s, plugin: echo}]}]
        """,
        (2, 7, "kind must be 'Playbook' (got 'Workflow')"),
    ),
    # -- unknown keys, at every level -----------------------------------------------
    case(
        "an unknown playbook key suggests the near one",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        descripton: nightly
        tasks: [{name: a, steps: [{name: s, plugin: echo}]}]
        """,
        (4, 1, "unknown key 'descripton' in a playbook (did you mean 'description'?)"),
    ),
    case(
        "an unknown key far from every allowed one lists the allowed keys without a guess",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        zzz: 1
        tasks: [{name: a, steps: [{name: s, plugin: echo}]}]
        """,
        (4, 1, "unknown key 'zzz' in a playbook; allowed: apiVersion, kind, name, "
               "description, vars, policies, supervision, tasks"),
    ),
    case(
        "an unknown task key suggests the near one",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - name: a
            steps: [{name: s, plugin: echo}]
          - name: b
            need: [a]
            steps: [{name: s, plugin: echo}]
        """,
        (8, 5, "unknown key 'need' in a task (did you mean 'needs'?)"),
    ),
    case(
        "an unknown step key suggests the near one",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - name: a
            steps:
              - name: s
                plugin: echo
                timout: 5s
        """,
        (9, 9, "unknown key 'timout' in a step (did you mean 'timeout'?)"),
    ),
    case(
        "an unknown task supervision key suggests the near one",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - name: a
            supervision:
              max_restart: 5
            steps: [{name: s, plugin: echo}]
        """,
        (7, 7, "unknown key 'max_restart' in supervision (did you mean 'max_restarts'?)"),
    ),
    case(
        "an unknown workflow supervision key suggests the near one",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        supervision: {strategie: one_for_all}
        tasks: [{name: a, steps: [{name: s, plugin: echo}]}]
        """,
        (4, 15, "unknown key 'strategie' in supervision (did you mean 'strategy'?)"),
    ),
    case(
        "an unknown backoff key suggests the near one",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - name: a
            supervision:
              backoff:
                initial: 1s
                multiplyer: 3
            steps: [{name: s, plugin: echo}]
        """,
        (9, 9, "unknown key 'multiplyer' in backoff (did you mean 'multiplier'?)"),
    ),
    case(
        "an unknown key in a named policy suggests the near one",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        policies:
          careful: {stratgy: one_for_all}
        tasks: [{name: a, steps: [{name: s, plugin: echo}]}]
        """,
        (5, 13, "unknown key 'stratgy' in policy 'careful' (did you mean 'strategy'?)"),
    ),
    # -- wrong types --------------------------------------------------------------------
    case(
        "tasks written as a mapping must be a list",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          a:
            steps: [{name: s, plugin: echo}]
        """,
        (5, 3, "tasks must be a list (got a mapping"),
    ),
    case(
        "steps written as a string must be a list",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - name: a
            steps: run everything
        """,
        (6, 12, "steps must be a list (got string 'run everything')"),
    ),
    case(
        "with written as a list must be a mapping",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - name: a
            steps:
              - name: s
                plugin: echo
                with: [hello, world]
        """,
        (9, 15, "with must be a mapping (got a list"),
    ),
    case(
        "vars written as a list must be a mapping",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        vars: [region, day]
        tasks: [{name: a, steps: [{name: s, plugin: echo}]}]
        """,
        (4, 7, "vars must be a mapping (got a list"),
    ),
    case(
        "supervision written as a string must be a mapping",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - name: a
            supervision: resilient
            steps: [{name: s, plugin: echo}]
        """,
        (6, 18, "supervision must be a mapping (got string 'resilient')"),
    ),
    case(
        "max_restarts given as a string is not a whole number",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        supervision: {max_restarts: "3"}
        tasks: [{name: a, steps: [{name: s, plugin: echo}]}]
        """,
        (4, 29, "max_restarts must be a whole number >= 0 (got '3')"),
    ),
    case(
        "a negative max_restarts is refused",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        supervision: {max_restarts: -1}
        tasks: [{name: a, steps: [{name: s, plugin: echo}]}]
        """,
        (4, 29, "max_restarts must be a whole number >= 0 (got -1)"),
    ),
    case(
        "a fractional max_restarts is refused",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - name: a
            supervision: {max_restarts: 2.5}
            steps: [{name: s, plugin: echo}]
        """,
        (6, 33, "max_restarts must be a whole number >= 0 (got 2.5)"),
    ),
    case(
        "a boolean max_restarts is refused although bool is an int in Python",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - name: a
            supervision: {max_restarts: true}
            steps: [{name: s, plugin: echo}]
        """,
        (6, 33, "max_restarts must be a whole number >= 0 (got True)"),
    ),
    case(
        "a numeric task name must be a string",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - name: 2024
            steps: [{name: s, plugin: echo}]
        """,
        (5, 11, "task name must be a string (got number 2024)"),
    ),
    case(
        "an unquoted date as a task name must be a string, not a crash",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - name: 2024-01-01
            steps: [{name: s, plugin: echo}]
        """,
        (5, 11, "task name must be a string (got "),
    ),
    case(
        "an unquoted date as a plugin must be a string, not a crash",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - name: a
            steps:
              - name: s
                plugin: 2024-01-01
        """,
        (8, 17, "plugin must be a string (got "),
    ),
    case(
        "an empty task list is refused",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks: []
        """,
        (4, 8, "tasks must list at least one task"),
    ),
    case(
        "a task with an empty step list is refused",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - name: a
            steps: []
        """,
        (6, 12, "steps must list at least one step"),
    ),
    case(
        "a task without steps says so at the task",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - name: a
        """,
        (5, 5, "a task needs 'steps'"),
    ),
    case(
        "a step without a plugin says so at the step",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - name: a
            steps:
              - name: s
                with: {msg: hi}
        """,
        (7, 9, "a step needs 'plugin'"),
    ),
    # -- durations ---------------------------------------------------------------------
    case(
        "a duration in an unknown unit says what is accepted",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        supervision: {within: 10 parsecs}
        tasks: [{name: a, steps: [{name: s, plugin: echo}]}]
        """,
        (4, 23, "within: '10 parsecs' is not a duration (use 250ms, 30s, 5m, 1h or seconds)"),
    ),
    case(
        "a negative timeout is not a duration",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - name: a
            steps:
              - {name: s, plugin: echo, timeout: -1s}
        """,
        (7, 42, "timeout: '-1s' is not a duration"),
    ),
    case(
        "a negative number of seconds is not a duration",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - name: a
            steps:
              - {name: s, plugin: echo, timeout: -5}
        """,
        (7, 42, "timeout: -5 is not a duration: it must be finite and not negative"),
    ),
    case(
        "days are not a duration unit",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - name: a
            supervision:
              within: 1d
            steps: [{name: s, plugin: echo}]
        """,
        (7, 15, "within: '1d' is not a duration (use 250ms, 30s, 5m, 1h or seconds)"),
    ),
    case(
        "an empty string is not a duration",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - name: a
            steps:
              - {name: s, plugin: echo, timeout: ""}
        """,
        (7, 42, "timeout: '' is not a duration"),
    ),
    case(
        "an infinite timeout is refused",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - name: a
            steps:
              - {name: s, plugin: echo, timeout: .inf}
        """,
        (7, 42, "timeout: inf is not a duration: it must be finite and not negative"),
    ),
    case(
        "within 0 would make every restart exceed the limit",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        supervision:
          within: 0
        tasks: [{name: a, steps: [{name: s, plugin: echo}]}]
        """,
        (5, 11, "within must be longer than 0"),
    ),
    case(
        "a zero timeout is refused",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - name: a
            steps:
              - {name: s, plugin: echo, timeout: 0ms}
        """,
        (7, 42, "timeout must be longer than 0"),
    ),
    case(
        "a bad backoff max is a bad duration named as backoff max",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - name: a
            supervision:
              backoff: {initial: 1s, max: soon}
            steps: [{name: s, plugin: echo}]
        """,
        (7, 35, "backoff max: 'soon' is not a duration"),
    ),
    # -- names that cannot be a NATS subject token ----------------------------------
    case(
        "a playbook name with a space is refused",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: nightly etl
        tasks: [{name: a, steps: [{name: s, plugin: echo}]}]
        """,
        (3, 7, "the playbook name 'nightly etl' may hold only letters, digits, '_' and '-'"),
    ),
    case(
        "a task name with a dot is refused",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - name: extract.csv
            steps: [{name: s, plugin: echo}]
        """,
        (5, 11, "task name 'extract.csv' may hold only letters, digits, '_' and '-' "
                "(it becomes a NATS subject token)"),
    ),
    case(
        "a step name that is a NATS wildcard star is refused",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - name: a
            steps:
              - name: "*"
                plugin: echo
        """,
        (7, 15, "step name '*' may hold only letters, digits, '_' and '-'"),
    ),
    case(
        "a step name holding the NATS full wildcard is refused",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - name: a
            steps:
              - name: post>all
                plugin: echo
        """,
        (7, 15, "step name 'post>all' may hold only letters, digits, '_' and '-'"),
    ),
    case(
        "a task name with a non-ASCII letter is refused",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - name: tâche
            steps: [{name: s, plugin: echo}]
        """,
        (5, 11, "task name 'tâche' may hold only letters, digits, '_' and '-'"),
    ),
    case(
        "an empty step name is refused",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - name: a
            steps:
              - {name: "", plugin: echo}
        """,
        (7, 16, "step name '' may hold only letters, digits, '_' and '-'"),
    ),
    case(
        "a playbook name ending in a newline is refused like any other white space",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: "pb\\n"
        tasks: [{name: a, steps: [{name: s, plugin: echo}]}]
        """,
        (3, 7, "the playbook name 'pb\\n' may hold only letters, digits, '_' and '-'"),
    ),
    case(
        "a policy name with a space is refused",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        policies:
          very careful: {max_restarts: 1}
        tasks: [{name: a, steps: [{name: s, plugin: echo}]}]
        """,
        (5, 3, "policy name 'very careful' may hold only letters, digits, '_' and '-'"),
    ),
    # -- duplicates -------------------------------------------------------------------
    case(
        "two tasks of the same name: the second points back at the first",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - name: load
            steps: [{name: s, plugin: echo}]
          - name: load
            steps: [{name: s, plugin: echo}]
        """,
        (7, 11, "duplicate task name 'load' (first at line 5)"),
    ),
    case(
        "two steps of the same name in a task: the second points back at the first",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - name: a
            steps:
              - name: fetch
                plugin: http
                with: {url: "https://example.org"}
              - name: fetch
                plugin: echo
        """,
        (10, 15, "duplicate step name 'fetch' (first at line 7)"),
    ),
    case(
        "a key written twice in one mapping is reported, not silently overwritten",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - name: a
            steps:
              - name: s
                plugin: echo
                plugin: http
        """,
        (9, 9, "duplicate key 'plugin' (first at line 8)"),
    ),
    # -- needs --------------------------------------------------------------------------
    case(
        "needs on an unknown task suggests the near one",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - name: extract
            steps: [{name: s, plugin: echo}]
          - name: load
            needs: [extrct]
            steps: [{name: s, plugin: echo}]
        """,
        (8, 13, "task 'load' needs 'extrct', which is not a task here "
                "(did you mean 'extract'?)"),
    ),
    case(
        "a task that needs itself is refused",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - name: a
            needs: [a]
            steps: [{name: s, plugin: echo}]
        """,
        (6, 13, "task 'a' needs itself"),
    ),
    case(
        "two tasks that need each other form a cycle",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - name: a
            needs: [b]
            steps: [{name: s, plugin: echo}]
          - name: b
            needs: [a]
            steps: [{name: s, plugin: echo}]
        """,
        (6, 13, "needs form a cycle: a -> b -> a"),
    ),
    case(
        "three tasks that need each other in a ring form a cycle",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - {name: a, needs: [c], steps: [{name: s, plugin: echo}]}
          - {name: b, needs: [a], steps: [{name: s, plugin: echo}]}
          - {name: c, needs: [b], steps: [{name: s, plugin: echo}]}
        """,
        (5, 23, "needs form a cycle: a -> c -> b -> a"),
    ),
    # -- plugins and policies -----------------------------------------------------------
    case(
        "an unknown plugin suggests the near one and lists the known",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - name: a
            steps:
              - name: s
                plugin: htpp
        """,
        (8, 17, "unknown plugin 'htpp' (did you mean 'http'?); "
                "known: echo, fail, http, python, shell, sleep"),
    ),
    case(
        "use of an unknown preset suggests the near one",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - name: a
            supervision: {use: resilent}
            steps: [{name: s, plugin: echo}]
        """,
        (6, 24, "unknown policy 'resilent' (did you mean 'resilient'?); known: "
                "all-or-nothing, fail-fast, flaky-network, resilient"),
    ),
    case(
        "use of a misspelled playbook policy suggests it and lists it among the known",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        policies:
          patient: {max_restarts: 20, within: 10m}
        supervision:
          use: patiant
        tasks: [{name: a, steps: [{name: s, plugin: echo}]}]
        """,
        (7, 8, "unknown policy 'patiant' (did you mean 'patient'?); known: "
               "all-or-nothing, fail-fast, flaky-network, patient, resilient"),
    ),
    # -- values from a fixed set ----------------------------------------------------------
    case(
        "an unknown strategy suggests the near one",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        supervision:
          strategy: one_for_al
        tasks: [{name: a, steps: [{name: s, plugin: echo}]}]
        """,
        (5, 13, "strategy must be one of one_for_one, one_for_all, rest_for_one "
                "(got 'one_for_al') (did you mean 'one_for_all'?)"),
    ),
    case(
        "an unknown restart type lists the three",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - name: a
            steps:
              - {name: s, plugin: echo, restart: always}
        """,
        (7, 42, "restart must be one of permanent, transient, temporary (got 'always')"),
    ),
    case(
        "an unknown runner lists the three",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - name: a
            steps:
              - {name: s, plugin: echo, runner: docker}
        """,
        (7, 41, "runner must be one of inproc, process, kubernetes (got 'docker')"),
    ),
    case(
        "an unknown on_error action suggests the near one",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - name: a
            steps:
              - name: s
                plugin: http
                with: {url: "https://example.org"}
                on_error:
                  timeout: retry
        """,
        (11, 20, "on_error 'timeout' must be one of restart, stop, escalate, continue "
                 "(got 'retry') (did you mean 'restart'?)"),
    ),
    case(
        "an on_error key that cannot be an error type name is refused",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - name: a
            steps:
              - name: s
                plugin: echo
                on_error:
                  time out: stop
        """,
        (10, 11, "on_error keys are error type names such as timeout, crash, template "
                 "(got 'time out')"),
    ),
    case(
        "on_error written as a list must be a mapping",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - name: a
            steps:
              - name: s
                plugin: echo
                on_error: [stop]
        """,
        (9, 19, "on_error must be a mapping (got a list"),
    ),
    # -- templates -------------------------------------------------------------------------
    case(
        "a template that does not parse is a template syntax error at the string",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - name: a
            steps:
              - name: s
                plugin: echo
                with: {msg: "{{ vars.region "}
        """,
        (9, 21, "template syntax: unexpected end of template"),
    ),
    case(
        "a template block that is never closed is a template syntax error",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - name: a
            steps:
              - name: s
                plugin: echo
                with:
                  msg: "{% for x in attempt %}{{ x }}"
        """,
        (10, 16, "template syntax: Unexpected end of template"),
    ),
    case(
        "a step that uses the output of a later step is refused",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - name: a
            steps:
              - name: first
                plugin: echo
                with: {msg: "{{ steps.second.output }}"}
              - name: second
                plugin: echo
        """,
        (9, 21, "steps.second runs after step 'first', so it has no output yet"),
    ),
    case(
        "a step that uses its own output is refused",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - name: a
            steps:
              - name: first
                plugin: echo
                with: {msg: "{{ steps.first.output }}"}
        """,
        (9, 21, "steps.first refers to this step itself"),
    ),
    case(
        "a step that uses a step of another task through steps. is refused",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - name: extract
            steps: [{name: download, plugin: echo}]
          - name: load
            needs: [extract]
            steps:
              - name: save
                plugin: echo
                with: {msg: "{{ steps.download.output }}"}
        """,
        (12, 21, "steps.download: task 'load' has no step 'download'"),
    ),
    case(
        "a step that uses a task it does not need is told to add it to needs",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - name: extract
            steps: [{name: download, plugin: echo}]
          - name: load
            steps:
              - name: save
                plugin: echo
                with: {msg: "{{ tasks.extract.steps.download.output }}"}
        """,
        (11, 21, "tasks.extract does not run before task 'load': add it to needs"),
    ),
    case(
        "a step that uses a task that does not exist is refused",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - name: load
            steps:
              - name: save
                plugin: echo
                with: {msg: "{{ tasks.extract.steps.download.output }}"}
        """,
        (9, 21, "tasks.extract: there is no task 'extract'"),
    ),
    case(
        "a step that uses a step its needed task does not have is refused",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - name: extract
            steps: [{name: download, plugin: echo}]
          - name: load
            needs: [extract]
            steps:
              - name: save
                plugin: echo
                with: {msg: "{{ tasks.extract.steps.parse.output }}"}
        """,
        (12, 21, "tasks.extract.steps.parse: task 'extract' has no step 'parse'"),
    ),
    case(
        "a step that uses its own task through tasks. is told to use steps.",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - name: a
            steps:
              - {name: first, plugin: echo}
              - name: second
                plugin: echo
                with: {msg: "{{ tasks.a.steps.first.output }}"}
        """,
        (10, 21, "tasks.a is this task: use steps.<step> for its earlier steps"),
    ),
    case(
        "an unknown name in a template lists the names a template may use",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - name: a
            steps:
              - name: s
                plugin: echo
                with: {msg: "hello {{ foo }}"}
        """,
        (9, 21, "unknown name 'foo' in a template (use vars, workflow, steps, tasks, attempt)"),
    ),
    case(
        "a template found deep inside with is checked and pointed at",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        vars: {region: eu}
        tasks:
          - name: a
            steps:
              - name: s
                plugin: http
                with:
                  url: "https://example.org/{{ vars.region }}"
                  headers:
                    X-Day: ["{{ vars.day }}"]
        """,
        (13, 21, "vars.day is not defined in vars (nor given with --set)"),
    ),
    case(
        "workflow has only id and name",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - name: a
            steps:
              - name: s
                plugin: echo
                with: {msg: "{{ workflow.bogus }}"}
        """,
        (9, 21, "workflow.bogus: workflow has only id and name"),
    ),
    # -- backoff ---------------------------------------------------------------------------
    case(
        "a backoff multiplier below 1 is refused at the multiplier",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - name: a
            supervision:
              backoff:
                initial: 1s
                multiplier: 0.5
            steps: [{name: s, plugin: echo}]
        """,
        (9, 21, "multiplier must be >= 1 (got 0.5)"),
    ),
    case(
        "a negative backoff jitter is refused at the jitter",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - name: a
            supervision:
              backoff:
                initial: 1s
                jitter: -0.5
            steps: [{name: s, plugin: echo}]
        """,
        (9, 17, "jitter must be >= 0 (got -0.5)"),
    ),
    case(
        "a non-numeric backoff jitter must be a number",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - name: a
            supervision:
              backoff: {initial: 1s, jitter: lots}
            steps: [{name: s, plugin: echo}]
        """,
        (7, 38, "backoff jitter must be a number (got 'lots')"),
    ),
    case(
        "a backoff without its initial delay says it needs one",
        """\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - name: a
            supervision:
              backoff:
                max: 10s
                multiplier: 3
            steps: [{name: s, plugin: echo}]
        """,
        (8, 9, "backoff needs 'initial' (the first delay)"),
    ),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_an_invalid_playbook_is_refused_with_exactly_its_problems_at_their_line_and_column(
    text: str, expected: list[Expected]
) -> None:
    problems = problems_of(text)

    report = describe(problems)
    assert len(problems) == len(expected), f"expected {len(expected)} problem(s), got:\n{report}"
    unmatched = list(problems)
    for line, col, fragment in expected:
        match = next(
            (p for p in unmatched if (p.line, p.col) == (line, col) and fragment in p.message),
            None,
        )
        assert match is not None, f"no problem {line}:{col} {fragment!r} among:\n{report}"
        unmatched.remove(match)
        assert str(match) == f"{FILE}:{line}:{col}: {match.message}"
        assert match.file == FILE
        assert not match.warning


def test_a_ring_of_3000_needs_is_one_cycle_problem() -> None:
    problems = problems_of(chain_of_needs(3000, ring=True))

    assert len(problems) == 1, describe(problems)
    assert problems[0].message.startswith("needs form a cycle: t0 -> t1 -> t2 -> ")
    assert problems[0].message.endswith(" -> t2999 -> t0")


def test_the_table_holds_at_least_45_invalid_playbooks() -> None:
    assert len(CASES) >= 45


# -- beyond one problem per file ---------------------------------------------------------


def test_the_error_prints_one_file_line_col_line_per_problem_in_file_order() -> None:
    text = textwrap.dedent("""\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: my pb
        supervision: {strategy: one_for_none}
        tasks:
          - name: a
            steps:
              - {name: s, plugin: ecko, timeout: 3 weeks}
        """)

    with pytest.raises(PlaybookError) as caught:
        parse_playbook(text, FILE)

    lines = str(caught.value).splitlines()
    assert [line.split(": ", 1)[0] for line in lines] == [
        "pb.yaml:3:7", "pb.yaml:4:25", "pb.yaml:8:27", "pb.yaml:8:42",
    ]
    assert "the playbook name 'my pb'" in lines[0]
    assert "strategy must be one of" in lines[1]
    assert "unknown plugin 'ecko'" in lines[2]
    assert "timeout: '3 weeks' is not a duration" in lines[3]


def test_problems_in_different_tasks_are_all_reported_in_one_pass() -> None:
    text = textwrap.dedent("""\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - name: a
            steps: [{name: s, plugin: ecko}]
          - name: b
            steps:
              - {name: t, plugin: echo, restart: sometimes}
        """)

    problems = problems_of(text)

    assert [(p.line, p.col) for p in problems] == [(6, 31), (9, 42)], describe(problems)


def test_a_template_problem_is_reported_even_when_another_step_is_invalid() -> None:
    # The module promises "every problem, with its file, line and column" so a
    # user fixes a file in one pass; template references must not be skipped
    # because some other step of the playbook has a problem.
    text = textwrap.dedent("""\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - name: a
            steps:
              - {name: s, plugin: ecko}
              - {name: t, plugin: echo, with: {msg: "{{ vars.nope }}"}}
        """)

    problems = problems_of(text)

    assert [(p.line, p.col, p.message.split(" (")[0]) for p in problems] == [
        (7, 27, "unknown plugin 'ecko'"),
        (8, 45, "vars.nope is not defined in vars"),
    ], describe(problems)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("- a\n- b\n", id="a list at the top level"),
        pytest.param(
            "apiVersion: noetl.io/v1\nkind: Playbook\nname: pb\ntasks: {a: {steps: []}}\n",
            id="tasks as a mapping",
        ),
        pytest.param(
            "apiVersion: noetl.io/v1\nkind: Playbook\nname: pb\nvars: [x, y]\n"
            "tasks: [{name: a, steps: [{name: s, plugin: echo}]}]\n",
            id="vars as a list",
        ),
        pytest.param(
            "apiVersion: noetl.io/v1\nkind: Playbook\nname: pb\n"
            "tasks: [{name: a, steps: [{name: s, plugin: echo, with: [1, 2]}]}]\n",
            id="with as a list",
        ),
    ],
)
def test_a_wrong_type_message_shows_the_value_as_written_not_loader_internals(
    text: str,
) -> None:
    problems = problems_of(text)

    assert len(problems) == 1, describe(problems)
    assert "Located" not in problems[0].message, problems[0].message
    assert "line=" not in problems[0].message, problems[0].message


def test_nothing_is_returned_when_any_problem_is_found() -> None:
    text = textwrap.dedent("""\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pb
        tasks:
          - name: a
            steps: [{name: s, plugin: echo}]
          - name: b
            needs: [a]
            steps: [{name: s, plugin: echo, with: {x: "{{ vars.missing }}"}}]
        """)

    with pytest.raises(PlaybookError) as caught:
        parse_playbook(text, FILE)

    assert [str(p) for p in caught.value.problems] == [
        "pb.yaml:9:47: vars.missing is not defined in vars (nor given with --set)"
    ]


def test_one_name_rule_makes_names_of_any_text() -> None:
    """What the legacy translator and a node's default name do with text a name cannot hold."""
    from noetl_actors.playbook import is_name, to_name

    assert to_name("fetch rows (v2)") == "fetch_rows_v2"
    assert to_name("my.host", fill="-") == "my-host"
    assert to_name("***") == ""
    assert is_name(to_name("any text at all: ok?"))
    assert not is_name("fetch\n")
