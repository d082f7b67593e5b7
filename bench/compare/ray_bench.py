"""A and B on Ray, as tasks or as actors; run by bench/compare/run.py in its venv.

    python ray_bench.py --mode tasks|actors [--rounds N] [--tasks N] [--steps N] [--sequence N]

`ray.init` local with `num_cpus=2`, on 127.0.0.1 (not the host's address).
A step is a no-op that returns what it is given; a task's steps are chained
(each step takes the previous step's output, an ObjectRef, so it runs after it).

- tasks: each step is a remote task.
- actors: one actor per task; its steps are method calls on it, in sequence.
  The actors (one process each) are created and answer once before the clock
  starts; their creation time is printed (`actors_start_s`), not counted.

A workflow's time: from the first submission to `ray.get` of every task's
last step. The last line is `_shapes.measure`'s `result ...`.
"""

from __future__ import annotations

import os
import time

# Ray's local mode on Linux registers its services on the host's address;
# this switch (Ray's own, for laptops) keeps them on 127.0.0.1.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import ray
from _shapes import measure, parser


@ray.remote
def step(previous: object) -> object:
    return previous


@ray.remote
class Task:
    def step(self, previous: object) -> object:
        return previous


def chain_tasks(steps: int) -> ray.ObjectRef:
    ref = step.remote(None)
    for _ in range(steps - 1):
        ref = step.remote(ref)
    return ref


def chain_actor(actor: ray.actor.ActorHandle, steps: int) -> ray.ObjectRef:
    ref = actor.step.remote(None)
    for _ in range(steps - 1):
        ref = actor.step.remote(ref)
    return ref


def main() -> None:
    options = parser(__doc__.split("\n")[0])
    options.add_argument("--mode", choices=("tasks", "actors"), required=True)
    args = options.parse_args()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level="ERROR", _node_ip_address="127.0.0.1")
    extra = {"version": f"ray-{ray.__version__}"}
    try:
        if args.mode == "tasks":
            def fanout() -> float:
                start = time.perf_counter()
                ray.get([chain_tasks(args.steps) for _ in range(args.tasks)])
                return time.perf_counter() - start

            def sequence() -> float:
                start = time.perf_counter()
                ray.get(chain_tasks(args.sequence))
                return time.perf_counter() - start
        else:
            begun = time.perf_counter()
            actors = [Task.remote() for _ in range(args.tasks)]
            ray.get([actor.step.remote(None) for actor in actors])
            extra["actors_start_s"] = f"{time.perf_counter() - begun:.2f}"

            def fanout() -> float:
                start = time.perf_counter()
                ray.get([chain_actor(actor, args.steps) for actor in actors])
                return time.perf_counter() - start

            def sequence() -> float:
                start = time.perf_counter()
                ray.get(chain_actor(actors[0], args.sequence))
                return time.perf_counter() - start

        measure(args, fanout, sequence, **extra)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
