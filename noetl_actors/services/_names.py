"""A node's name is its own while it lives, and free again once it is gone.

Two live nodes of one name would both answer its subjects and renew each
other's leases, so a served node refuses to start under a name whose
presence record is recent. A recent record does not always mean a live
node: after a `kill -9` the record stays fresh for a few heartbeats, and
the restart that follows (same `--name`, same `--state-dir`) must not be
turned away. A record written on this machine names its process (pid and
start time, `noetl_actors._process`): if that process is gone, or the pid
now belongs to another process, the name is free.
"""

from __future__ import annotations

import logging
import time

from noetl_actors._process import host, is_process
from noetl_actors.bridge import KeyValue
from noetl_actors.errors import NoetlError
from noetl_actors.services._presence import LOST_AFTER_BEATS

__all__ = ["check_name_is_free"]

logger = logging.getLogger("noetl_actors.services")


def check_name_is_free(nodes: KeyValue, name: str) -> None:
    """Refuse `name` if a live node has it; a dead one's name is free.

    Raises:
        NoetlError: a node of that name has beaten recently and is not known
            to be gone (it runs here, or on another machine).
    """
    entry = nodes.get(name)
    if entry is None:
        return
    record = entry.data
    beat = record.get("heartbeat")
    beat = beat if isinstance(beat, (int, float)) else 1.0
    if time.time() - float(record.get("at") or 0) >= LOST_AFTER_BEATS * beat + 1.0:
        return  # its presence is stale: other nodes judge it lost
    pid = record.get("pid")
    if record.get("host") == host() and isinstance(pid, int) \
            and not is_process(pid, record.get("process")):
        logger.info("node %s (pid %d on this machine) is gone: starting in its place", name, pid)
        return
    raise NoetlError(f"a node named {name} already runs (on {record.get('host')}, pid "
                     f"{pid}); give this one another --name")
