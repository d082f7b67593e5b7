"""`HealthServer`: the node's ``/livez`` and ``/readyz`` over HTTP, for Kubernetes' probes.

Off unless the node's configuration gives ``health.port`` (docs/node.md).
HTTP and not an exec probe of `noetl`: a probe every few seconds that
starts a Python interpreter costs a second of CPU each time, inside the
node's own limits; a GET costs next to nothing and is what probes expect.

- ``GET /livez``: 200 while the node's root supervisor is alive, else 503.
  A node whose root gave up is dead to Kubernetes, which restarts the pod.
- ``GET /readyz``: 200 while it is alive and connected to NATS, else 503.
  A node cut off from NATS is not restarted (it reconnects by itself), only
  shown as not ready.

Anything else is 404. The answers are one line of text saying why.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from noetl_actors.services._node import Node

__all__ = ["HealthServer", "serve_health"]

logger = logging.getLogger("noetl_actors.services")

Check = Callable[[], tuple[bool, str]]
"""Says (healthy, why) when asked; must not block."""


class HealthServer:
    """Serves the two checks on `host`:`port` from a thread of its own until `stop()`."""

    def __init__(self, host: str, port: int, *, live: Check, ready: Check) -> None:
        checks = {"/livez": live, "/readyz": ready}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                check = checks.get(self.path.split("?", 1)[0])
                if check is None:
                    code, text = 404, "not found: /livez or /readyz"
                else:
                    try:
                        ok, text = check()
                    except Exception as error:  # a check must answer, not kill the thread
                        ok, text = False, f"the check failed: {error!r}"
                    code = 200 if ok else 503
                body = f"{text}\n".encode()
                self.send_response(code)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                logger.debug("health: " + format, *args)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="noetl-health", daemon=True)

    @property
    def port(self) -> int:
        """The port it listens on (the one given, or the one chosen for port 0)."""
        return int(self._server.server_address[1])

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket. Idempotent."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()


def serve_health(node: Node, host: str, port: int) -> HealthServer:
    """Start serving `node`'s checks on `host`:`port` (a started node).

    Raises:
        OSError: the address cannot be bound (in use, not ours).
    """

    def live() -> tuple[bool, str]:
        if node.root.is_alive():
            return True, f"node {node.name}: its root supervisor is alive"
        return False, f"node {node.name}: its root supervisor has stopped"

    def ready() -> tuple[bool, str]:
        alive, why = live()
        if not alive:
            return False, why
        if node.bridge is None or not node.bridge.link().up:
            return False, f"node {node.name}: not connected to NATS"
        return True, f"node {node.name}: alive and connected to NATS at {node.url}"

    return HealthServer(host, port, live=live, ready=ready).start()
