"""A pykka that lacks one of the internals the kernel uses still gives a working kernel.

Each case removes one internal (as a pykka release that renamed it would) in a
fresh interpreter, before noetl_actors is imported, then runs a supervised tree:
it starts, restarts a crashed child, answers a proxy call, and stops. The
kernel must say so once, with one warning.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pykka
import pytest

from noetl_actors.supervision import _pykka

REMOVALS = {
    "pykka._envelope.Envelope": "import pykka._envelope\ndel pykka._envelope.Envelope",
    "pykka.messages._ActorStop": "import pykka.messages\ndel pykka.messages._ActorStop",
    "pykka.Actor._handle_receive": "del pykka.Actor._handle_receive",
    "pykka.Actor._create_actor_inbox": textwrap.dedent("""
        import queue, threading, uuid
        def plain_init(self, *args, **kwargs):  # a pykka that builds its inbox itself
            self.actor_urn = uuid.uuid4().urn
            self.actor_inbox = queue.Queue()
            self.actor_stopped = threading.Event()
            self._actor_ref = pykka.ActorRef(self)
        pykka.Actor.__init__ = plain_init
    """),
}

TREE = textwrap.dedent("""
    import logging, time
    from noetl_actors.supervision import (
        ChildSpec, SupervisedActor, SupervisorFlags, Strategy, start_supervisor)

    class Echo(SupervisedActor):
        def on_receive(self, message):
            if message == "crash":
                raise ValueError("boom")
            return message

        def twice(self, value):
            return 2 * value

    root = start_supervisor(SupervisorFlags(strategy=Strategy.ONE_FOR_ONE, max_restarts=5),
                            [ChildSpec(id="echo", start=Echo)])
    address = root.address("echo")
    assert address.ask("hi", timeout=10) == "hi"
    first = root.which_children()[0].ref
    address.tell("crash")
    deadline = time.monotonic() + 10
    while root.which_children()[0].ref in (None, first):
        assert time.monotonic() < deadline, "the crashed child was not restarted"
        time.sleep(0.01)
    assert address.ask("again", timeout=10) == "again"
    assert root.which_children()[0].ref.proxy().twice(21).get(timeout=10) == 42
    alone = Echo.start()
    assert alone.ask("solo", timeout=10) == "solo"
    assert alone.stop(timeout=10) is True
    assert root.stop(timeout=10).kind.value == "normal"
    print("tree ok")
""")


def _run(removal: str) -> subprocess.CompletedProcess[str]:
    script = "import logging, pykka\nlogging.basicConfig(level=logging.WARNING)\n"
    script += removal + "\n" + TREE
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, check=False)


def test_the_installed_pykka_needs_no_fallback() -> None:
    assert _pykka.FALLBACKS == [], f"pykka {pykka.__version__} lacks {_pykka.FALLBACKS}"


@pytest.mark.parametrize("internal", sorted(REMOVALS))
def test_a_pykka_without_an_internal_still_runs_a_tree_and_says_so_once(internal: str) -> None:
    result = _run(REMOVALS[internal])
    assert result.returncode == 0 and "tree ok" in result.stdout, result.stderr
    warnings = [line for line in result.stderr.splitlines()
                if line.startswith("WARNING:noetl_actors.supervision")]
    assert len(warnings) == 1, result.stderr
    assert internal in warnings[0]


def test_with_every_internal_the_same_tree_runs_and_nothing_is_said() -> None:
    result = _run("")
    assert result.returncode == 0 and "tree ok" in result.stdout, result.stderr
    assert "WARNING:noetl_actors.supervision" not in result.stderr


def test_an_actor_started_alone_leaves_the_registry_when_it_stops() -> None:
    """pykka's registry held every `SupervisedActor.start()`ed actor for ever."""
    from noetl_actors.supervision import SupervisedActor

    ref = SupervisedActor.start()
    assert pykka.ActorRegistry.get_by_urn(ref.actor_urn) is ref
    ref.stop()
    assert pykka.ActorRegistry.get_by_urn(ref.actor_urn) is None


HANG = textwrap.dedent("""
    import pykka
    pykka.ActorRef.stop = lambda self, *, block=True, timeout=None: (
        None if block else pykka.ThreadingFuture())
    import noetl_actors.supervision
    print("imported")
""")

LOST_STOP = textwrap.dedent("""
    import time, pykka
    original = pykka.ActorRef.stop
    def stop(self, *, block=True, timeout=None):
        if pykka.ActorRegistry.get_by_urn(self.actor_urn) is None:
            raise pykka.ActorDeadError(f"{self} is not running")
        return original(self, block=block, timeout=timeout)
    pykka.ActorRef.stop = stop
    from noetl_actors.supervision import SupervisedActor
    class Echo(SupervisedActor):
        def on_receive(self, message): return message
    ref = Echo.start(); print("stop() says", ref.stop(timeout=5))
    deadline = time.monotonic() + 10
    while ref.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    print("alive", ref.is_alive())
""")


def _python(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=30, check=False)


def test_import_does_not_hang_when_stop_puts_nothing_in_an_unstarted_inbox() -> None:
    """The probe waited for ever on an inbox that pykka's `stop()` left empty."""
    try:
        result = _python(HANG)
    except subprocess.TimeoutExpired:
        pytest.fail("importing noetl_actors.supervision hung")
    assert "imported" in result.stdout, result.stderr


def test_pykkas_public_stop_is_not_lost_when_the_probe_could_not_see_it() -> None:
    """A probe that saw no stop message made the kernel deaf to pykka's `_ActorStop`."""
    result = _python(LOST_STOP)
    assert "alive False" in result.stdout, result.stdout + result.stderr
    assert "pykka.messages._ActorStop" not in result.stderr  # it is there: not missing
