"""Claims: one worker per attempt, across every worker that may take its command.

A worker claims an attempt's id before it runs it, so a command sent again
(its step heard nothing yet), or delivered again, is never run twice. A
claim never blocks the worker: `Claims.claim` returns a future, settled at
once in process (`LocalClaims`) or on the bridge's loop when NATS has
answered (`BucketClaims`), so a busy worker has many claims in flight at
once instead of waiting out one round trip per command.
"""

from __future__ import annotations

import concurrent.futures
import enum
import functools
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Protocol

from noetl_actors._refusals import RefusalLog, short
from noetl_actors.bridge import Bridge, Entry
from noetl_actors.errors import NoetlError
from noetl_actors.runtime import Command, Fence, command_fields
from noetl_actors.services._lease import LeaseRecord

__all__ = ["CLAIMS_BUCKET", "CLAIMS_TTL", "BucketClaims", "Claim", "Claims", "LocalClaims",
           "Settled"]

CLAIMS_BUCKET = "noetl-claims"
CLAIMS_TTL = 24 * 3600.0
"""Seconds a claim is kept: far longer than a command is ever sent again."""

logger = logging.getLogger("noetl_actors.services")
_REFUSALS = RefusalLog(logger)


class Claim(enum.Enum):
    """What a claim of an attempt found."""

    MINE = "mine"
    """The claimer has the attempt: it runs it, and no one else will."""
    TAKEN = "taken"
    """Another claim has it (another worker's, or an earlier one that died with its worker)."""
    REFUSED = "refused"
    """Its sender no longer owns the workflow (a former owner's command): no one runs it."""


Settled = Callable[[Claim | Exception], object]
"""Called with what a claim found, or the NoetlError that kept NATS from answering (then
nobody may assume the claim)."""


class Claims(Protocol):
    """Who runs which attempt: a claim finds MINE for exactly one caller per attempt,
    and only while the command's sender owns its workflow (see `BucketClaims`)."""

    local: bool
    """True when `claim` settles at once, without I/O."""

    def claim(self, command: Command, settled: Settled) -> None:
        """Never blocks: `settled` is called at once, on this thread, or later on the
        bridge's loop thread (it must not block either)."""
        ...

    def owner_here(self, command: Command) -> bool:
        """True if `command`'s workflow is owned in this process by the owner that sent
        it, and its fence allows now (no other node can have taken the workflow)."""
        ...


class LocalClaims:
    """Claims kept in this process (the last `size` ids), shared by its workers.

    Enough while every worker of the node's NATS is in this process (an
    embedded server); with other workers about, use `BucketClaims`.
    """

    local = True

    def __init__(self, size: int = 100_000) -> None:
        self._size = size
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, command: Command) -> Claim:
        """Claim `command`'s attempt: MINE for the first caller, TAKEN for the others."""
        with self._lock:
            if command.claim_key in self._seen:
                return Claim.TAKEN
            self._seen[command.claim_key] = None
            if len(self._seen) > self._size:
                self._seen.popitem(last=False)
            return Claim.MINE

    def claim(self, command: Command, settled: Settled) -> None:
        settled(self.take(command))

    def owner_here(self, command: Command) -> bool:
        return False  # every claim settles at once: none is worth skipping


class BucketClaims:
    """Claims kept in a JetStream key-value bucket: one owner per attempt across every
    worker on this NATS, whatever process or node it runs in. One round trip each, and
    one more for a fenced command (one from a served node: its epoch is not 0) unless
    its owner is in this process (`owned`).

    A fenced command is claimed, then its workflow's lease is read, in the same call:
    a command whose epoch is not the lease's (a former owner's, sent after it lost
    the workflow) is refused, and its claim released so the owner now can send that
    attempt. Claim first, then read: a stale command claimed after the new owner
    listed the workflow's claims is read after the takeover (docs/durability.md).

    With `unfenced` False, a command with no epoch (0: sent by no owner) is refused
    at once, with no round trip: the workers of a served node run only its owners'
    commands (`noetl run`, which holds no lease, sends epoch 0 to its own workers).

    With `owned` (the fences of the workflows this process owns, by id), a command
    of one of them is checked against its owner's own fence instead, once its
    claim is stored: one round trip instead of two. If the fence holds that
    epoch and allows (by the owner's clock, its last renewal was sent less than
    a lease ago), no other node can have taken the lease yet, so a taker lists
    the claims after this one is stored: the same guarantee as the read. If it
    does not (any more), the lease is read from the bucket as above.
    """

    local = False

    def __init__(self, bridge: Bridge, bucket: str = CLAIMS_BUCKET, *,
                 leases: str | None = None, owned: Mapping[str, Fence] | None = None,
                 unfenced: bool = True) -> None:
        self._bridge = bridge
        self._bucket = bucket
        self._leases = leases
        self._owned = owned
        self._unfenced = unfenced

    def claim(self, command: Command, settled: Settled) -> None:
        if command.epoch == 0 and not self._unfenced:
            # No owner sent it: a served node's workflows all hold leases, so a command
            # with no epoch comes from a private run (`noetl run --nats`) or a forger.
            _REFUSALS.refused(f"unfenced:{command.plugin}",
                              "refused %s: it carries no owner epoch (epoch 0), and these "
                              "workers run only commands of a workflow's owner",
                              short(command.id, 120))
            settled(Claim.REFUSED)
            return
        fenced = self._leases is not None and command.epoch != 0
        own = self._own_fence(command) if fenced else None
        then_read = (self._leases, command.workflow_id) \
            if fenced and own is None and self._leases else None
        future = self._bridge.claim_soon(self._bucket, command.claim_key, then_read=then_read)
        future.add_done_callback(functools.partial(self._settle, command, settled, fenced,
                                                   own))

    def owner_here(self, command: Command) -> bool:
        return command.epoch != 0 and self._own_fence(command) is not None

    def _own_fence(self, command: Command) -> Fence | None:
        """This process's fence of `command`'s workflow, if it allows `command`'s epoch now."""
        fence = self._owned.get(command.workflow_id) if self._owned is not None else None
        if fence is None or fence.epoch != command.epoch or not fence.allows():
            return None
        return fence

    def _settle(self, command: Command, settled: Settled, fenced: bool, own: Fence | None,
                done: concurrent.futures.Future[tuple[bool, Entry | None]]) -> None:
        # exception(), not a raising result(): a traceback through this frame, which
        # holds `done`, would keep the future and its error in a reference cycle.
        error = done.exception()
        if error is not None:
            settled(error if isinstance(error, Exception) else RuntimeError(repr(error)))
            return
        claimed, entry = done.result()
        if not fenced:
            settled(Claim.MINE if claimed else Claim.TAKEN)
            return
        if own is not None and claimed:
            # The claim is stored: the owner's fence, asked now, stands for the read.
            if own.epoch == command.epoch and own.allows():
                settled(Claim.MINE)
                return
            self._read_lease(command, settled)
            return
        settled(self._fenced(command, claimed, entry))

    def _read_lease(self, command: Command, settled: Settled) -> None:
        """The lease from the bucket, after the claim: its owner's fence lapsed meanwhile."""
        assert self._leases is not None
        future = self._bridge.bucket(self._leases).get_soon(command.workflow_id)

        def read(done: concurrent.futures.Future[Entry | None]) -> None:
            error = done.exception()
            if error is not None:
                settled(error if isinstance(error, Exception) else RuntimeError(repr(error)))
            else:
                settled(self._fenced(command, True, done.result()))

        future.add_done_callback(read)

    def _fenced(self, command: Command, claimed: bool, entry: Entry | None) -> Claim:
        if not claimed:
            return Claim.TAKEN
        lease = LeaseRecord.from_data(entry.data) if entry is not None else None
        if lease is not None and lease.epoch == command.epoch:
            return Claim.MINE
        now = f"epoch {lease.epoch} (node {lease.owner})" if lease else "no lease (it ended)"
        _REFUSALS.refused(f"fenced:{command.plugin}",
                          "refused %s: sent by the owner of epoch %d; workflow %s has %s",
                          short(command.id, 120), command.epoch,
                          short(command.workflow_id, 80), now)
        self._bridge.bucket(self._bucket).delete_soon(command.claim_key).add_done_callback(
            lambda done: _log_release(command, done))
        return Claim.REFUSED


def _log_release(command: Command, done: concurrent.futures.Future[bool]) -> None:
    error = done.exception()
    if error is not None:
        why = error if isinstance(error, NoetlError) else repr(error)
        logger.warning("could not release the claim of %s: %s", command.id, why,
                       extra=command_fields(command))
