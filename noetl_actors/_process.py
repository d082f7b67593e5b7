"""Processes of this machine: is one alive, and is it still the one we knew.

A pid alone does not name a process for long: once it exits, the kernel may
give the number to another. A process is named here by its pid *and* the
moment it started (`started`): the pair outlives neither the process nor a
reboot, so a record that keeps both can tell a dead process from a live
stranger that reuses its pid. Used by a node restarting under its own name
(its former self's presence record) and by the embedded nats-server coming
back on its store (the former server's pid).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from functools import cache

__all__ = ["alive", "host", "is_process", "started", "wait_gone"]


def host() -> str:
    """This machine's name, as presence records give it."""
    return socket.gethostname()


def alive(pid: int) -> bool:
    """True while `pid` runs; a zombie (exited, not yet reaped) counts as gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[-1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False
    except (OSError, IndexError):
        pass  # no /proc: ask the kernel instead
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def started(pid: int) -> str | None:
    """When process `pid` started, as an opaque text; None if it is gone or unknown.

    On Linux: the boot's id and the start time in clock ticks since boot
    (exact, and different after a reboot). Elsewhere: what `ps -o lstart`
    says (to the second).
    """
    try:
        with open(f"/proc/{pid}/stat") as stat:
            ticks = stat.read().rsplit(")", 1)[-1].split()[19]
        return f"{_boot_id()}:{ticks}"
    except FileNotFoundError:
        return None
    except (OSError, IndexError):
        pass
    try:
        said = subprocess.run(["ps", "-o", "lstart=", "-p", str(pid)], capture_output=True,
                              text=True, timeout=5, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return said or None


def is_process(pid: int, start: object) -> bool:
    """True if `pid` runs and is the process that started at `start` (`started`'s text).

    A `start` that is not a text (a record from a version that kept none)
    cannot tell a stranger from the process: any live `pid` counts.
    """
    if not alive(pid):
        return False
    if not isinstance(start, str):
        return True
    now = started(pid)
    return alive(pid) if now is None else now == start


def wait_gone(pid: int, start: object, timeout: float) -> bool:
    """Wait up to `timeout` seconds for the process (`pid`, `start`) to end; True if it did."""
    deadline = time.monotonic() + timeout
    while is_process(pid, start):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


@cache
def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as boot:
            return boot.read().strip()
    except OSError:
        return "boot"
