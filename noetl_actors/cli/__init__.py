"""The `noetl` command line: one module per kind of command.

- `_main`: the group, and what commands share (loading, NATS flags, exit codes);
- `_local`: commands on this machine (validate, schema, preview, lint, run,
  events, worker, demo, server);
- `_node`: `noetl node start`, a long-running supervisor node;
- `_cluster`: commands that talk to running nodes over NATS (submit, status,
  cancel, list, register, playbooks, tree, kill, console);
- `_logs`: `noetl logs`, steps' output lines;
- `_credentials`: `noetl credentials`, the users of an embedded server.
"""

from noetl_actors.cli import _cluster as _cluster
from noetl_actors.cli import _credentials as _credentials
from noetl_actors.cli import _local as _local
from noetl_actors.cli import _logs as _logs
from noetl_actors.cli import _node as _node
from noetl_actors.cli._main import main as main

__all__ = ["main"]
