"""The command API from a program: submit, watch and steer workflows and actors.

Async, on nats-py: the CLI runs it with `asyncio.run`, the console on
Textual's own loop. It needs only a NATS address; any node answers.
"""

from noetl_actors.client._client import Client as Client
from noetl_actors.errors import ApiError as ApiError
from noetl_actors.errors import ErrorKind as ErrorKind

__all__ = ["ApiError", "Client", "ErrorKind"]
