"""Templating of a step's `with:`: sandboxed Jinja2 with strict undefined.

`render_value` renders every template string inside a value: a string that
is exactly one ``{{ expression }}`` becomes the expression's own value (a
list stays a list), any other template string becomes a string. Every way a
template can fail is a `TemplateError` (at run time a step failure of type
``template``). `references` tells the loader what a template uses.
"""

from __future__ import annotations

from typing import Any

import pytest

from noetl_actors.errors import TemplateError
from noetl_actors.playbook import render_value
from noetl_actors.playbook._templates import CONTEXT_NAMES, Reference, references


def context() -> dict[str, Any]:
    return {
        "vars": {"region": "eu", "days": ["mon", "tue"], "limit": 10, "ratio": 0.5,
                 "on": True, "nothing": None, "nested": {"a": {"b": 1}}},
        "workflow": {"id": "wf-123", "name": "nightly"},
        "steps": {"download": {"output": {"status": 200, "rows": [1, 2, 3]}}},
        "tasks": {"extract": {"steps": {"parse": {"output": {"count": 3}}}}},
        "attempt": 2,
    }


# -- native values and strings ------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ vars.days }}", ["mon", "tue"]),
        ("{{ vars.limit }}", 10),
        ("{{ vars.ratio }}", 0.5),
        ("{{ vars.on }}", True),
        ("{{ vars.nothing }}", None),
        ("{{ vars.nested }}", {"a": {"b": 1}}),
        ("{{ steps.download.output.rows }}", [1, 2, 3]),
        ("{{ steps.download.output }}", {"status": 200, "rows": [1, 2, 3]}),
        ("{{ tasks.extract.steps.parse.output.count }}", 3),
        ("{{ tasks['extract'].steps['parse'].output }}", {"count": 3}),
        ("{{ attempt }}", 2),
        ("{{ attempt + 1 }}", 3),
        ("{{ vars.limit * 2 }}", 20),
        ("{{ vars.days | length }}", 2),
        ("{{ vars.days + ['wed'] }}", ["mon", "tue", "wed"]),
        ("{{ attempt > 1 }}", True),
        ("  {{ vars.limit }}  ", 10),
        ("{{ vars.region }}", "eu"),
        ("{{ workflow.id }}", "wf-123"),
    ],
)
def test_a_string_that_is_one_whole_expression_keeps_the_native_type(
    template: str, expected: Any
) -> None:
    result = render_value(template, context())

    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("region={{ vars.region }}", "region=eu"),
        ("{{ vars.limit }} rows", "10 rows"),
        ("{{ vars.limit }}{{ attempt }}", "102"),
        ("{{ workflow.name }}/{{ workflow.id }}", "nightly/wf-123"),
        ("days: {{ vars.days }}", "days: ['mon', 'tue']"),
        ("try {{ attempt }} of 3", "try 2 of 3"),
        ("{% for d in vars.days %}{{ loop.index }}:{{ d }} {% endfor %}", "1:mon 2:tue "),
        ("{% set n = vars.limit * 2 %}{{ n }}", "20"),
        ("{{ vars.limit }} {# a comment #}", "10 "),
        ("{{ vars.region | upper }}-{{ 'x' if attempt > 1 else 'y' }}", "EU-x"),
    ],
)
def test_a_string_mixing_text_and_templates_renders_to_a_string(
    template: str, expected: str
) -> None:
    assert render_value(template, context()) == expected


def test_strings_without_templates_and_non_strings_are_left_as_they_are() -> None:
    value = {"plain": "no braces { here }", "n": 5, "f": 1.5, "b": False, "none": None}

    assert render_value(value, context()) == value
    assert render_value(7, context()) == 7


def test_templates_inside_nested_mappings_and_lists_are_all_rendered() -> None:
    value = {
        "url": "https://example.org/{{ vars.region }}",
        "rows": "{{ steps.download.output.rows }}",
        "headers": {"X-Attempt": "{{ attempt }}", "X-Id": "id-{{ workflow.id }}"},
        "list": ["{{ vars.limit }}", ["{{ vars.days }}", "static"], {"deep": "{{ attempt }}"}],
        "count": 3,
    }

    assert render_value(value, context()) == {
        "url": "https://example.org/eu",
        "rows": [1, 2, 3],
        "headers": {"X-Attempt": 2, "X-Id": "id-wf-123"},
        "list": [10, [["mon", "tue"], "static"], {"deep": 2}],
        "count": 3,
    }


def test_rendering_does_not_change_the_value_it_was_given() -> None:
    value = {"a": ["{{ attempt }}"]}

    render_value(value, context())

    assert value == {"a": ["{{ attempt }}"]}


# -- strict undefined -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "named"),
    [
        ("{{ vars.missing }}", "missing"),
        ("value: {{ vars.missing }}", "missing"),
        ("{{ foo }}", "'foo' is undefined"),
        ("{{ foo }} and more", "'foo' is undefined"),
        ("{{ steps.parse.output }}", "parse"),
        ("{{ steps.download.output.body }}", "body"),
        ("{{ tasks.load.steps.save.output }}", "load"),
        ("{{ vars.missing.deeper }}", "missing"),
        ("{% for d in vars.missing %}{{ d }}{% endfor %}", "missing"),
    ],
)
def test_an_undefined_name_raises_a_template_error_naming_it(template: str, named: str) -> None:
    with pytest.raises(TemplateError) as caught:
        render_value(template, context())

    assert named in str(caught.value)
    assert template in str(caught.value), "the message shows the template that failed"


def test_an_undefined_name_deep_inside_a_value_is_still_an_error() -> None:
    with pytest.raises(TemplateError, match="nope"):
        render_value({"a": [{"b": "{{ vars.nope }}"}]}, context())


def test_a_default_filter_makes_a_missing_var_optional() -> None:
    assert render_value("{{ vars.missing | default('none') }}", context()) == "none"
    assert render_value("{{ vars.missing is defined }}", context()) is False


@pytest.mark.parametrize("template", ["{{ vars.limit + }}", "{% if %}", "{{ vars.limit ",
                                      "{% for x in vars.days %}"])
def test_a_template_that_does_not_parse_raises_a_template_error(template: str) -> None:
    with pytest.raises(TemplateError):
        render_value(template, context())


@pytest.mark.parametrize(
    "template",
    [
        "{{ 1 / 0 }}",
        "x = {{ vars.limit / 0 }}",
        "{{ vars.limit + vars.region }}",
        "{{ range(10 ** 10) | list }}",
    ],
)
def test_any_failure_while_rendering_is_a_template_error_not_a_python_one(
    template: str,
) -> None:
    # At run time a render error is a step failure of type "template" with the
    # message, so every failure must arrive as TemplateError.
    with pytest.raises(TemplateError):
        render_value(template, context())


# -- the sandbox ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ vars.__class__.__mro__ }}",
        "{{ vars.days.__class__ }}",
        "x {{ ''.__class__ }} y",
        "{{ cycler.__init__.__globals__ }}",
        "{{ steps.download.output.__init__ }}",
        "{{ vars.region.format.__globals__ }}",
    ],
)
def test_the_sandbox_refuses_access_to_python_internals(template: str) -> None:
    with pytest.raises(TemplateError, match="unsafe"):
        render_value(template, context())


# -- references ----------------------------------------------------------------------------------


def refs(template: str) -> list[tuple[str, tuple[str, ...]]]:
    return [(r.root, r.path) for r in references(template)]


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ vars.region }}", [("vars", ("region",))]),
        ("{{ vars }}", [("vars", ())]),
        ("{{ attempt }}", [("attempt", ())]),
        ("{{ workflow.id }}-{{ workflow.name }}",
         [("workflow", ("id",)), ("workflow", ("name",))]),
        ("{{ steps.download.output.body }}", [("steps", ("download", "output", "body"))]),
        ("{{ steps['download'].output }}", [("steps", ("download", "output"))]),
        ("{{ tasks.extract.steps.x.output }}", [("tasks", ("extract", "steps", "x", "output"))]),
        ("{{ tasks['extract'].steps.x.output }}",
         [("tasks", ("extract", "steps", "x", "output"))]),
        ("{{ tasks['extract']['steps']['x']['output'] }}",
         [("tasks", ("extract", "steps", "x", "output"))]),
        ("{{ steps.a.output[0].b }}", [("steps", ("a", "output", "0", "b"))]),
        ("{{ vars['a.b'] }}", [("vars", ("a.b",))]),
        ("{{ foo }}", [("foo", ())]),
        ("{{ vars.x | default(vars.y) }}", [("vars", ("x",)), ("vars", ("y",))]),
        ("{{ vars.region | upper }} {{ attempt + 1 }}", [("vars", ("region",)), ("attempt", ())]),
        ("{% if attempt > 1 %}{{ steps.a.output }}{% endif %}",
         [("attempt", ()), ("steps", ("a", "output"))]),
        ("no template here", []),
        ("{{ 1 + 2 }}", []),
    ],
)
def test_references_finds_each_root_name_with_its_constant_attribute_path(
    template: str, expected: list[tuple[str, tuple[str, ...]]]
) -> None:
    assert refs(template) == expected


def test_a_computed_key_ends_the_known_path_and_its_own_references_count() -> None:
    assert sorted(refs("{{ vars[workflow.name].x }}")) == [
        ("vars", ()), ("workflow", ("name",)),
    ]


def test_references_ignores_the_target_of_a_for_loop() -> None:
    found = refs("{% for d in vars.days %}{{ d.name }}{% endfor %}")

    assert found == [("vars", ("days",))]


def test_references_ignores_both_targets_of_a_for_loop_over_pairs() -> None:
    found = refs("{% for k, v in steps.a.output.items() %}{{ k }}={{ v }}{% endfor %}")

    assert found == [("steps", ("a", "output", "items"))]


def test_references_ignores_the_loop_variable_jinja_gives_every_for_block() -> None:
    found = refs("{% for d in vars.days %}{{ loop.index }}{{ d }}{% endfor %}")

    assert found == [("vars", ("days",))]


def test_references_ignores_names_defined_with_set_and_with() -> None:
    assert refs("{% set y = steps.a.output %}{{ y.z }}") == [("steps", ("a", "output"))]
    assert refs("{% with q = vars.region %}{{ q }}{% endwith %}") == [("vars", ("region",))]


def test_references_ignores_jinja_globals_such_as_range() -> None:
    assert refs("{% for i in range(3) %}{{ i }}{% endfor %}") == []


def test_every_reference_is_a_reference_record() -> None:
    assert references("{{ vars.a }}") == [Reference("vars", ("a",))]


def test_the_names_a_template_may_use_are_the_six_of_the_playbook_language() -> None:
    assert set(CONTEXT_NAMES) == {"vars", "workflow", "steps", "tasks", "attempt", "inputs"}


@pytest.mark.parametrize("template", ["{{ vars.a ", "{% for %}", "{{ }}", "{% endif %}"])
def test_references_of_a_template_that_does_not_parse_raise_template_syntax(
    template: str,
) -> None:
    with pytest.raises(TemplateError, match=r"^template syntax: "):
        references(template)
