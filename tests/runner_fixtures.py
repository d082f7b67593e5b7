"""Runner fixtures for the plugin and runner tests (loaded through `pytest_plugins`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from noetl_actors.runners import InprocRunner, ProcessRunner, Runner


@pytest.fixture
def inproc() -> Iterator[InprocRunner]:
    runner = InprocRunner(max_workers=4, cancel_grace=0.3)
    yield runner
    runner.close(timeout=5)


@pytest.fixture
def process() -> Iterator[ProcessRunner]:
    runner = ProcessRunner(term_grace=0.5)
    yield runner
    runner.close(timeout=5)


@pytest.fixture(params=["inproc", "process"])
def any_runner(request: pytest.FixtureRequest) -> Iterator[Runner]:
    runner: Runner = (InprocRunner(max_workers=4, cancel_grace=0.3) if request.param == "inproc"
                      else ProcessRunner(term_grace=0.5))
    yield runner
    runner.close(timeout=5)
