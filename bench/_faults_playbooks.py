"""The fault suite's playbooks: four shapes of shell steps that leave a trace.

Every step is a `shell` step whose command first appends one line,
``<workflow id> <task>.<step> <attempt>``, to the run's lines file, then
sleeps `pause` seconds, then prints ``done <task>.<step>``. A flaky step
fails (exit 1) while its attempt is below 2, after its line and its pause:
its first attempt fails, its first restart succeeds.

Shapes (each `WorkflowShape.attempts` is what a run without faults costs):

- ``fanout``: 4 parallel tasks of 2 steps;
- ``sequence``: 1 task of 8 steps; the last one's command holds the first
  one's output (``{{ steps.s0.output.stdout }}``): a step replayed without its
  output makes it fail;
- ``flaky``: task ``a`` (3 steps, ``s1`` flaky), then task ``b`` (2 steps,
  ``s0`` flaky), one_for_one with a short backoff;
- ``one_for_all``: task ``all`` (3 steps, one_for_all, ``s2`` flaky: the task
  runs again from ``s0``, on purpose), then task ``after`` (1 step).

Tasks may restart a step 6 times in 5 minutes: enough for a step to outlive
its own flakiness and every fault of the suite, so a workflow that does not
succeed was lost to a fault. The workflow's own policy is the default (a
task that gives up is not restarted): no task runs again but a one_for_all
task's, which its journal says.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SHAPES = ("fanout", "sequence", "flaky", "one_for_all")
RESILIENT = "{strategy: %s, max_restarts: 6, within: 5m, backoff: {initial: 200ms, max: 1s}}"


@dataclass(frozen=True)
class WorkflowShape:
    """One playbook of the suite."""

    shape: str
    text: str
    attempts: int
    """Shell attempts a run without faults makes."""


def _step(lines: Path, pause: float, task: str, step: str, *, flaky: bool = False,
          extra: str = "") -> str:
    """A step's YAML (under a task's ``steps:``)."""
    command = (f"echo {{{{ workflow.id }}}} {task}.{step} {{{{ attempt }}}} >> {lines}"
               f" && sleep {pause:g}")
    if flaky:
        command += " && test {{ attempt }} -ge 2"
    command += f" && echo done {task}.{step}{extra}"
    return (f"      - name: {step}\n        plugin: shell\n"
            f"        with: {{command: \"{command}\"}}\n")


def _task(name: str, strategy: str, steps: list[str], needs: str | None = None) -> str:
    head = f"  - name: {name}\n"
    if needs is not None:
        head += f"    needs: [{needs}]\n"
    return head + f"    supervision: {RESILIENT % strategy}\n    steps:\n" + "".join(steps)


def playbook(shape: str, lines: Path, pause: float) -> WorkflowShape:
    """The playbook of `shape` (one of `SHAPES`), its steps appending to `lines`."""
    tasks: list[str]
    if shape == "fanout":
        tasks = [_task(f"t{t}", "one_for_one", [_step(lines, pause, f"t{t}", f"s{s}")
                                                 for s in range(2)]) for t in range(4)]
        attempts = 8
    elif shape == "sequence":
        steps = [_step(lines, pause, "t0", f"s{s}") for s in range(7)]
        steps.append(_step(lines, pause, "t0", "s7",
                           extra=" after {{ steps.s0.output.stdout | trim }}"))
        tasks, attempts = [_task("t0", "one_for_one", steps)], 8
    elif shape == "flaky":
        tasks = [
            _task("a", "one_for_one", [_step(lines, pause, "a", f"s{s}", flaky=s == 1)
                                       for s in range(3)]),
            _task("b", "one_for_one", [_step(lines, pause, "b", f"s{s}", flaky=s == 0)
                                       for s in range(2)], needs="a"),
        ]
        attempts = 7
    elif shape == "one_for_all":
        tasks = [
            _task("all", "one_for_all", [_step(lines, pause, "all", f"s{s}", flaky=s == 2)
                                         for s in range(3)]),
            _task("after", "one_for_one", [_step(lines, pause, "after", "s0")], needs="all"),
        ]
        attempts = 7
    else:
        raise ValueError(f"shape must be one of {', '.join(SHAPES)} (got {shape!r})")
    text = (f"apiVersion: noetl.io/v1\nkind: Playbook\nname: faults-{shape.replace('_', '-')}\n"
            "tasks:\n" + "".join(tasks))
    return WorkflowShape(shape, text, attempts)
