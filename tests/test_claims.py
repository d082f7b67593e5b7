"""Claims in the `noetl-claims` bucket, fenced by the workflow's lease (real nats-server).

A worker refuses a command whose epoch is not its workflow's lease's. When the
workflow's owner is in the worker's process, its own fence stands for the
lease read once the claim is stored (one round trip instead of two); when
that fence does not allow the command's epoch, the lease is read from the
bucket, as for a command of another node's workflow (docs/durability.md).
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from noetl_actors.bridge import Bridge, ConnectOptions, EmbeddedNatsServer
from noetl_actors.runtime import Command
from noetl_actors.services._claims import BucketClaims, Claim, LocalClaims
from noetl_actors.services._lease import LeaseRecord
from noetl_actors.supervision import SupervisorFlags, start_supervisor
from tests.node_helpers import Cli, claimed_keys, running_node
from tests.run_helpers import write_playbook

WAIT = 10.0
CLAIMS, LEASES = "claims", "leases"


class ScriptedFence:
    """A workflow's fence whose `allows()` answers in turn from `answers` (then the last)."""

    def __init__(self, epoch: int, *answers: bool) -> None:
        self.epoch = epoch
        self.lost = False
        self._answers = list(answers)
        self.asked = 0

    def allows(self) -> bool:
        self.asked += 1
        return self._answers.pop(0) if len(self._answers) > 1 else self._answers[0]


@pytest.fixture
def bridge(nats_server: EmbeddedNatsServer) -> Iterator[Bridge]:
    bridge = Bridge(ConnectOptions(servers=(nats_server.url,)))
    root = start_supervisor(SupervisorFlags(), [bridge.child_spec()], id="claims-test")
    try:
        assert bridge.wait_connected(WAIT)
        bridge.ensure_bucket(CLAIMS, ttl=60)
        bridge.ensure_bucket(LEASES, ttl=None)
        yield bridge
    finally:
        root.stop(timeout=10)


def command(epoch: int, attempt: int = 1, workflow: str = "wf-1") -> Command:
    return Command(workflow_id=workflow, task="t", step="s", attempt=attempt, plugin="echo",
                   input={}, heartbeat=1.0, epoch=epoch)


def claim(claims: BucketClaims, cmd: Command) -> Claim | Exception:
    found: concurrent.futures.Future[Claim | Exception] = concurrent.futures.Future()
    claims.claim(cmd, found.set_result)
    return found.result(WAIT)


def lease(bridge: Bridge, owner: str, epoch: int) -> None:
    bridge.bucket(LEASES).put("wf-1", LeaseRecord(owner, epoch).to_data())


def test_a_command_of_a_workflow_owned_here_is_checked_against_its_owners_fence(
        bridge: Bridge) -> None:
    """No lease in the bucket (a read would refuse it): the owner's fence, which allows
    the command's epoch after the claim is stored, makes it the claimer's; once."""
    fence = ScriptedFence(1, True)
    claims = BucketClaims(bridge, CLAIMS, leases=LEASES, owned={"wf-1": fence})

    assert claim(claims, command(epoch=1)) is Claim.MINE
    assert fence.asked == 2, "asked before the claim is sent and after it is stored"
    assert claim(claims, command(epoch=1)) is Claim.TAKEN
    assert bridge.claim(CLAIMS, "wf-1.t=s.1") is False, "the claim is in the bucket"


def test_a_fence_that_lapses_while_the_claim_travels_falls_back_to_the_bucket(
        bridge: Bridge) -> None:
    """The fence allowed when the claim was sent, not once it was stored (the owner
    could not renew; another node took the lease, epoch 2): the lease is read, the
    command refused, its claim released."""
    lease(bridge, "b", 2)
    claims = BucketClaims(bridge, CLAIMS, leases=LEASES,
                          owned={"wf-1": ScriptedFence(1, True, False)})

    assert claim(claims, command(epoch=1)) is Claim.REFUSED
    _eventually_released(bridge, "wf-1.t=s.1")


def test_a_fence_that_does_not_allow_leaves_the_judgement_to_the_lease_in_the_bucket(
        bridge: Bridge) -> None:
    """A lapsed fence (NATS away a while) refuses nothing by itself: the bucket's lease
    decides, as for a workflow owned elsewhere."""
    lease(bridge, "a", 1)
    lapsed = BucketClaims(bridge, CLAIMS, leases=LEASES,
                          owned={"wf-1": ScriptedFence(1, False)})
    assert claim(lapsed, command(epoch=1, attempt=1)) is Claim.MINE

    lease(bridge, "b", 2)
    assert claim(lapsed, command(epoch=1, attempt=2)) is Claim.REFUSED


def test_a_command_of_an_older_epoch_than_the_fence_here_is_refused_by_the_bucket(
        bridge: Bridge) -> None:
    """This process owns the workflow at epoch 2 (it took it over from its former self):
    a command of epoch 1 is not checked against that fence but against the bucket."""
    lease(bridge, "a", 2)
    fence = ScriptedFence(2, True)
    claims = BucketClaims(bridge, CLAIMS, leases=LEASES, owned={"wf-1": fence})

    assert claim(claims, command(epoch=1)) is Claim.REFUSED
    assert fence.asked == 0
    assert claim(claims, command(epoch=2, attempt=2)) is Claim.MINE


def test_owner_here_only_for_the_epoch_this_process_holds_while_its_fence_allows(
        bridge: Bridge) -> None:
    """What lets a worker skip the claim of an idempotent instant plugin: its command's
    owner is here, at the command's epoch, and allows now; anything else is claimed."""
    claims = BucketClaims(bridge, CLAIMS, leases=LEASES,
                          owned={"wf-1": ScriptedFence(2, True), "wf-2": ScriptedFence(1, False)})

    assert claims.owner_here(command(epoch=2)) is True
    assert claims.owner_here(command(epoch=1)) is False, "a former owner's epoch"
    assert claims.owner_here(command(epoch=0)) is False, "sent by no owner"
    assert claims.owner_here(command(workflow="wf-2", epoch=1)) is False, "lapsed fence"
    assert claims.owner_here(command(workflow="wf-3", epoch=1)) is False, "owned elsewhere"
    assert LocalClaims().owner_here(command(epoch=2)) is False


def _eventually_released(bridge: Bridge, key: str) -> None:
    """The attempt can be claimed again (its owner may send it now)."""
    deadline = time.monotonic() + WAIT
    while not bridge.claim(CLAIMS, key):
        assert time.monotonic() < deadline, f"the claim {key} was not released"
        time.sleep(0.02)


def test_a_served_node_claims_its_shell_attempts_and_runs_echo_and_sleep_unclaimed(
        tmp_path: Path) -> None:
    """A real `noetl node start`: echo (instant, idempotent) and sleep (waits,
    idempotent) of its own workflow run with no claim stored; shell (not idempotent)
    is claimed before it runs."""
    path = write_playbook(tmp_path, "mixed", """
        tasks:
          - name: t
            steps:
              - {name: say, plugin: echo, with: {msg: hi}}
              - {name: nap, plugin: sleep, with: {seconds: 0.1}}
              - {name: run, plugin: shell, with: {command: ["true"]}}
        """)
    with running_node(tmp_path, "alpha") as node:
        waited = Cli(node.url)("submit", path, "--wait", "--json")
        assert waited.returncode == 0, waited.stderr
        record = waited.document()
        assert record["status"] == "succeeded", record["error"]
        keys = claimed_keys(node.url)
        workflow = record["workflow_id"]
        assert f"{workflow}.t=run.1" in keys, keys
        assert not [key for key in keys if key.startswith((f"{workflow}.t=say.",
                                                           f"{workflow}.t=nap."))], keys
