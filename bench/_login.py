"""nats-py's connect arguments for a server of this user's: the benchmarks that
connect raw (next to the node's own connections) log in as the server's admin."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from noetl_actors.bridge import find_context


def login(url: str, seed: Path | None = None) -> dict[str, Any]:
    """`seed` if given, else the admin seed of `url`'s context; nothing for a server
    that has no users (or none of ours)."""
    if seed is not None:
        return {"nkeys_seed": str(seed)}
    context = find_context(url)
    return {"nkeys_seed": context.admin} if context is not None and context.admin else {}
