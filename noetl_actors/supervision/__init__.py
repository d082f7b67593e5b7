"""The supervision kernel: supervised actors, supervisors, policies.

Erlang/OTP's supervisor contract on pykka actors (see docs/supervision.md).
This package imports nothing from NATS, YAML, the CLI or the console: every
other layer is built on what it exports here.
"""

from noetl_actors.clock import Clock as Clock
from noetl_actors.clock import ManualClock as ManualClock
from noetl_actors.clock import MonotonicClock as MonotonicClock
from noetl_actors.clock import TimerHandle as TimerHandle
from noetl_actors.errors import InjectedCrash as InjectedCrash
from noetl_actors.supervision._actor import Crash as Crash
from noetl_actors.supervision._actor import SupervisedActor as SupervisedActor
from noetl_actors.supervision._actor import tell_if_alive as tell_if_alive
from noetl_actors.supervision._address import Address as Address
from noetl_actors.supervision._child import Child as Child
from noetl_actors.supervision._events import EventKind as EventKind
from noetl_actors.supervision._events import LifecycleEvent as LifecycleEvent
from noetl_actors.supervision._events import Observer as Observer
from noetl_actors.supervision._intensity import RestartIntensity as RestartIntensity
from noetl_actors.supervision._loop_host import LoopHost as LoopHost
from noetl_actors.supervision._monitor import Down as Down
from noetl_actors.supervision._monitor import Monitor as Monitor
from noetl_actors.supervision._monitor import monitor as monitor
from noetl_actors.supervision._reasons import ExitKind as ExitKind
from noetl_actors.supervision._reasons import ExitReason as ExitReason
from noetl_actors.supervision._ref import SupervisorRef as SupervisorRef
from noetl_actors.supervision._ref import start_root as start_root
from noetl_actors.supervision._ref import start_supervisor as start_supervisor
from noetl_actors.supervision._ref import supervisor_spec as supervisor_spec
from noetl_actors.supervision._specs import BRUTAL_KILL as BRUTAL_KILL
from noetl_actors.supervision._specs import INFINITY as INFINITY
from noetl_actors.supervision._specs import AutoShutdown as AutoShutdown
from noetl_actors.supervision._specs import Backoff as Backoff
from noetl_actors.supervision._specs import ChildSpec as ChildSpec
from noetl_actors.supervision._specs import ChildType as ChildType
from noetl_actors.supervision._specs import Restart as Restart
from noetl_actors.supervision._specs import Strategy as Strategy
from noetl_actors.supervision._specs import SupervisorFlags as SupervisorFlags
from noetl_actors.supervision._state import ActorState as ActorState
from noetl_actors.supervision._state import ChildCounts as ChildCounts
from noetl_actors.supervision._state import ChildInfo as ChildInfo
from noetl_actors.supervision._supervisor import Supervisor as Supervisor

__all__ = [
    "BRUTAL_KILL",
    "INFINITY",
    "ActorState",
    "Address",
    "AutoShutdown",
    "Backoff",
    "Child",
    "ChildCounts",
    "ChildInfo",
    "ChildSpec",
    "ChildType",
    "Clock",
    "Crash",
    "Down",
    "EventKind",
    "ExitKind",
    "ExitReason",
    "InjectedCrash",
    "LifecycleEvent",
    "LoopHost",
    "ManualClock",
    "Monitor",
    "MonotonicClock",
    "Observer",
    "Restart",
    "RestartIntensity",
    "Strategy",
    "SupervisedActor",
    "Supervisor",
    "SupervisorFlags",
    "SupervisorRef",
    "TimerHandle",
    "monitor",
    "start_root",
    "start_supervisor",
    "supervisor_spec",
    "tell_if_alive",
]
