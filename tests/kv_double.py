"""`MemoryKeyValue`: a test double of the bridge's `KeyValue`, in memory, with faults.

It keeps JetStream key-value's revision rules, the ones the leases and the
records rely on: one sequence for the whole bucket (every write, a delete
too, takes the next number); `create` fails if the key has a record;
`update` fails unless the key is still at the revision given; `delete` with
a revision fails unless it matches; a deleted key reads as absent but keeps
its place among `keys()`. Records are stored as JSON text, so a reader
never shares a dict with the writer.

Several nodes share one bucket, each through its own `MemoryKeyValue`
(`connection()`), so that NATS can fail for one of them and not the others:
`fault = DOWN` refuses every call before it reaches the bucket
(`ConnectError`); `fault = LOST_REPLY` applies every write, then loses its
answer (`BridgeTimeout`), as when NATS goes away between the two. And
`in_flight`, if set, runs once just before the next write reaches the bucket:
what others do while that write travels.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from noetl_actors.bridge import Entry
from noetl_actors.errors import BridgeTimeout, ConnectError, NoetlError

DOWN = "down"
LOST_REPLY = "lost-reply"


class _Bucket:
    def __init__(self) -> None:
        self.sequence = 0
        self.last: dict[str, tuple[int, str | None]] = {}
        """Per key: the revision of its last message, and its JSON (None: deleted)."""
        self.records: dict[str, tuple[Any, int]] = {}
        """Per live key: its record as decoded once, and its revision (for `peek`)."""

    def write(self, key: str, text: str | None) -> int:
        self.sequence += 1
        self.last[key] = (self.sequence, text)
        if text is None:
            self.records.pop(key, None)
        else:
            self.records[key] = (json.loads(text), self.sequence)
        return self.sequence


class MemoryKeyValue:
    """Test double of `noetl_actors.bridge.KeyValue` (same methods, same answers)."""

    def __init__(self, bucket: _Bucket | None = None, *, name: str = "test") -> None:
        self._bucket = bucket or _Bucket()
        self.bucket = name
        self.fault: str | None = None
        """None, DOWN or LOST_REPLY: see the module docstring."""
        self.in_flight: Callable[[], object] | None = None

    def connection(self) -> MemoryKeyValue:
        """Another client of the same bucket, with faults of its own."""
        return MemoryKeyValue(self._bucket, name=self.bucket)

    # -- reads -------------------------------------------------------------------------

    def get(self, key: str) -> Entry | None:
        self._reach()
        revision, text = self._bucket.last.get(key, (0, None))
        return None if text is None else Entry(key, json.loads(text), revision)

    def entries(self) -> dict[str, Entry]:
        self._reach()
        return {key: Entry(key, json.loads(text), revision)
                for key, (revision, text) in self._bucket.last.items() if text is not None}

    def keys(self, prefix: str = "") -> list[str]:
        self._reach()
        return [key for key in self._bucket.last
                if not prefix or key.startswith(prefix + ".")]

    def peek(self, key: str) -> tuple[Any, int]:
        """Not a `KeyValue` method: for tests to look without a fault, a copy or a cost.
        The record under `key` (not to be changed) and its revision; (None, 0) if none."""
        return self._bucket.records.get(key, (None, 0))

    def state(self, *, leave_out: tuple[str, ...] = ()) -> tuple[Any, ...]:
        """Not a `KeyValue` method: the whole bucket as a hashable value (its sequence, and
        each key's revision and record, deleted ones as None), without the record fields
        named in `leave_out`."""
        keys = []
        for key, (revision, text) in sorted(self._bucket.last.items()):
            record = None if text is None else self._bucket.records[key][0]
            frozen = None if record is None else tuple(sorted(
                (name, repr(value)) for name, value in record.items() if name not in leave_out))
            keys.append((key, revision, frozen))
        return (self._bucket.sequence, *keys)

    # -- writes ------------------------------------------------------------------------

    def put(self, key: str, data: Mapping[str, Any]) -> int:
        self._travel()
        return self._answer(self._bucket.write(key, json.dumps(dict(data))))

    def create(self, key: str, data: Mapping[str, Any]) -> int | None:
        self._travel()
        if self._bucket.last.get(key, (0, None))[1] is not None:
            return self._answer(None)
        return self._answer(self._bucket.write(key, json.dumps(dict(data))))

    def update(self, key: str, data: Mapping[str, Any], revision: int) -> int | None:
        self._travel()
        if self._bucket.last.get(key, (0, None))[0] != revision:
            return self._answer(None)
        return self._answer(self._bucket.write(key, json.dumps(dict(data))))

    def update_many(self, updates: list[tuple[str, Mapping[str, Any], int]],
                    ) -> list[int | NoetlError | None]:
        """One `update` after another (one order the real one's may take), each's error
        in its place; DOWN refuses the whole batch, as NATS gone does."""
        self._reach()
        results: list[int | NoetlError | None] = []
        for key, data, revision in updates:
            try:
                results.append(self.update(key, data, revision))
            except NoetlError as error:
                results.append(error)
        return results

    def delete(self, key: str, *, revision: int | None = None) -> bool:
        self._travel()
        last = self._bucket.last.get(key)
        if revision is not None and (last[0] if last else 0) != revision:
            return self._answer(False)
        if last is not None and last[1] is not None:
            self._bucket.write(key, None)
        return self._answer(True)

    # -- faults ------------------------------------------------------------------------

    def _reach(self) -> None:
        if self.fault == DOWN:
            raise ConnectError("the test double's NATS is down")

    def _travel(self) -> None:
        self._reach()
        meanwhile, self.in_flight = self.in_flight, None
        if meanwhile is not None:
            meanwhile()

    def _answer(self, result: Any) -> Any:
        if self.fault == LOST_REPLY:
            raise BridgeTimeout("the test double lost the answer (the write was made)")
        return result
