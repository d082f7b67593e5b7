"""greet: an example service plugin (see plugin.yaml)."""

from __future__ import annotations

import os
import socket
from typing import Any

from noetl_actors.runners import Context


def run(input: dict[str, Any], ctx: Context) -> dict[str, Any]:
    where = f"{socket.gethostname()}:{os.getpid()}"
    print(f"greeting {input['who']} from {where}")  # a line of `noetl logs`
    return {"greeting": f"hello {input['who']}", "by": where}
