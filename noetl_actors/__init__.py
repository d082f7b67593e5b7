"""noetl-actors: an Erlang-style supervision runtime for NoETL playbooks.

The layers, bottom up: `supervision` (the kernel, no I/O), then the NATS
bridge, the playbook language, the runtime actors, the node services, the
runners and the console. `errors` holds every error raised on purpose.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
