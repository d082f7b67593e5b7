"""Hostile templates: the sandbox's escapes are refused, and what a template may compute
is bounded (size of what it makes, time it takes), each with a `template` error."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from noetl_actors.errors import TemplateError
from noetl_actors.playbook import TemplateLimits, render_value
from tests.run_helpers import run_playbook, steps_of, write_playbook


def context() -> dict[str, Any]:
    return {"vars": {"region": "eu", "n": 3}, "x": 1,
            "steps": {"fetch": {"output": {"rows": [1, 2]}}}}


# -- escapes --------------------------------------------------------------------------------


@pytest.mark.parametrize("template", [
    "{{ x.__class__ }}",
    "{{ vars.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ joiner.__init__.__globals__['os'] }}",
    "{{ '{0.__class__}'.format(x) }}",
    "{{ '{0.__class__.__mro__}'.format(vars) }}",
    "{{ '{a.__globals__}'.format_map({'a': cycler.__init__}) }}",
    "{{ '%s' | format(x.__class__) }}",
    "{{ '%s' % x.__class__ }}",
    "{{ (x|attr('__class__')) }}",
    "{{ steps.fetch.output.rows.__len__ }}",
    "text {{ x.__class__ }} around",
])
def test_the_known_sandbox_escapes_are_refused_with_a_template_error(template: str) -> None:
    with pytest.raises(TemplateError, match=r"unsafe|not allowed") as refused:
        render_value(template, context())
    assert refused.value.error_type == "template"


# -- what a template may compute --------------------------------------------------------------


@pytest.mark.parametrize(("template", "says"), [
    ("{{ 'x' * 10**9 }}", "str * 1000000000 would be 1,000,000,000 long"),
    ("{{ [0] * 10**9 }}", "list * 1000000000"),
    ("{{ 7 ** (10 ** 8) }}", "7 ** 100000000 has about"),
    ("{{ (10 ** 20000) * (10 ** 20000) }}", "a product of"),
    ("{{ '%1000000000s' | format(1) }}", "a formatted field would be 1,000,000,000 long"),
    ("{{ '%*d' % (10**9, 1) }}", "'*' width"),
    ("{{ '{:>2000000000}'.format(1) }}", "a formatted field"),
    ("{{ 'a'.center(10**9) }}", "center was given 1,000,000,000"),
    ("{{ 'a' | center(10**9) }}", "'center' filter was given"),
    ("{{ lipsum(10**9) }}", "was given 1,000,000,000"),
    ("{{ ('x' * 1000) | replace('', 'y' * 1000) }}", "'replace' filter would be 1,002,000"),
    ("{{ ('x' * 1000).replace('', 'y' * 1000) }}", "replace would be 1,002,000"),
    ("{% set ns = namespace(s='x') %}{% for i in range(60) %}"
     "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}", "'~' concatenation"),
    ("{% set ns = namespace(l=[1]) %}{% for i in range(60) %}"
     "{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l | length }}", "a concatenation"),
    ("{% for i in range(100000) %}{{ 'x' * 100000 }}{% endfor %}", "its output is past"),
])
def test_a_template_that_would_make_something_huge_is_refused_before_it_is_made(
        template: str, says: str) -> None:
    with pytest.raises(TemplateError, match="template limits") as refused:
        render_value(template, context())
    assert says in str(refused.value)


def test_a_template_that_computes_past_its_time_is_stopped() -> None:
    template = ("{% for i in range(100000) %}{% for j in range(100000) %}"
                "{% endfor %}{% endfor %}")
    with pytest.raises(TemplateError, match=r"took longer than its 0\.5 s"):
        render_value(template, context(), limits=TemplateLimits(seconds=0.5))
    with pytest.raises(TemplateError, match="step's timeout came first"):
        render_value(template, context(), timeout=0.3)


def test_ordinary_templates_still_render() -> None:
    assert render_value("{{ 'ab' * 3 }}", context()) == "ababab"
    assert render_value("{{ 2 ** 64 }}", context()) == 2 ** 64
    assert render_value("{{ '%s-%03d' % (vars.region, vars.n) }}", context()) == "eu-003"
    assert render_value("{{ '{:>5}'.format(x) }}", context()) == "    1"
    assert render_value("{{ [0] * 3 + [1] }}", context()) == [0, 0, 0, 1]
    assert render_value("{{ range(3) | list }}", context()) == [0, 1, 2]
    assert render_value("a{{ vars.region ~ '-' ~ x }}b", context()) == "aeu-1b"
    assert render_value("{{ ', '.join(['a', 'b']) }} {{ 'a' | center(5) }}",
                        context()) == "a, b   a  "
    assert render_value("{{ steps.fetch.output.rows | join(',') }}", context()) == "1,2"
    assert render_value("{{ '%d' | format(10**12) }} {{ '{}'.format(10**12) }}",
                        context()) == "1000000000000 1000000000000"
    assert render_value("{{ {'a': 1}.get('b', 10**12) }}", context()) == 10**12
    assert render_value("{{ 'ab'.ljust(4, '.') }}", context()) == "ab.."


def test_a_huge_template_fails_its_step_at_once_and_the_run_goes_on(tmp_path: Path) -> None:
    """`{{ 'x' * 10**9 }}` took 27 s and 3.95 GB; `7 ** 10**8` froze the node for minutes.

    Each is refused (or stopped at its timeout) and the run ends."""
    path = write_playbook(tmp_path, "huge", """
        tasks:
          - name: huge
            supervision: {max_restarts: 0}
            steps:
              - {name: big, plugin: echo, timeout: 2s, with: {text: "{{ 'x' * 10**9 }}"}}
          - name: power
            supervision: {max_restarts: 0}
            steps:
              - {name: pow, plugin: echo, timeout: 2s, with: {n: "{{ 7 ** (10 ** 8) }}"}}
          - name: slow
            supervision: {max_restarts: 0}
            steps:
              - name: loops
                plugin: echo
                timeout: 1s
                with:
                  n: "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}\\
                    {% endfor %}"
        """)
    began = time.monotonic()
    result, report = run_playbook(path, tmp_path / "nats")
    took = time.monotonic() - began
    assert result.returncode == 1, result.stderr
    for task, step in (("huge", "big"), ("power", "pow"), ("slow", "loops")):
        error = steps_of(report, task)[step]["error"]
        assert error["type"] == "template", error
    assert "template limits" in steps_of(report, "huge")["big"]["error"]["message"]
    assert "step's timeout came first" in steps_of(report, "slow")["loops"]["error"]["message"]
    assert "Traceback" not in result.stderr
    print(f"the run took {took:.1f} s")
