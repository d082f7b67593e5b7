"""`SupervisedActor`: a pykka actor whose every exit is seen, with why.

pykka is the engine (inbox, futures, proxies, registry), but its error flow
does not fit supervision, so this class is a new pykka actor type that owns
its loop (pykka's documented extension point: `_start_actor_loop`):

- an exception while handling any message, told, asked or by proxy, is a
  crash: the actor exits (pykka keeps running after a failed ask); the
  caller of an ask still gets the exception;
- an exception in `on_start` is a start failure, reported to the supervisor;
- a `BaseException` (SystemExit, KeyboardInterrupt, ...) crashes only this
  actor (pykka stops every actor in the process); an ask caller gets an
  `ActorDeadError` caused by it, so the caller's thread is not taken down;
- every exit, normal or not, is recorded in `exit_reason` and reported to
  the parent supervisor and to every monitor.

An actor whose class sets `hosted = True` has no thread of its own under a
supervisor: it runs on its supervisor's thread, between the supervisor's
own messages (see docs/supervision.md, "Hosted children").

Threads are daemon threads: a child that ignores stop is abandoned after its
grace period, and must not hold the process open. The supervision tree, not
the interpreter's exit, is what stops actors cleanly.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import queue
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, ClassVar

import attrs
import pykka
from pykka._envelope import Envelope

from noetl_actors.errors import ActorDeadError, InjectedCrash
from noetl_actors.supervision._address import dead_letter
from noetl_actors.supervision._reasons import ExitKind, ExitReason

__all__ = ["Crash", "Down", "LoopHost", "Monitor", "SupervisedActor",
           "monitor", "tell_if_alive"]

logger = logging.getLogger("noetl_actors.supervision")


class _Wake:
    """Put in a killed actor's inbox so that an idle loop notices the kill."""


_WAKE = _Wake()


@attrs.frozen
class Crash:
    """Tell it to any supervised actor to make it crash, as if its code had raised.

    For operators and tests that want to watch a supervisor act (`noetl kill`).
    """

    why: str = "killed by request"


ExitListener = Callable[[ExitReason], None]


@attrs.frozen(eq=False)
class _RunHosted:
    """Put in a host's inbox: run the hosted actor's messages (`_run_hosted`)."""

    actor: SupervisedActor


HOSTED_BATCH = 64
"""Messages a hosted actor handles in one turn before its host's other messages."""


Post = Callable[[Envelope[Any]], None]
"""How a hosted actor's turn reaches its host: the host runs `envelope.message`
(a `_RunHosted`) on its thread, after what it was given before."""


class _Inbox(queue.SimpleQueue[Envelope[Any]]):
    """An actor's inbox: unbounded FIFO like pykka's `queue.Queue`, but in C, and,
    once the actor is hosted, a put also tells its host to run it.

    `put` and `get` skip `queue.Queue`'s Python-level condition variable
    (put + get: 2.0 us -> 0.3 us); pykka and this module use only `put`,
    `get`, `get_nowait` and `empty`.

    At most one `_RunHosted` of an actor waits at its host: `_scheduled` is set
    by the put that posts it and cleared (under the lock, when the inbox is
    found empty) by the turn that runs it, so no wake-up is lost or doubled.
    Until `host(...)` is called (or when the actor runs on a thread of its own)
    it is a plain inbox. Every actor has one: whether it will be hosted (on a
    loop, `run_on`) is decided after it is built.
    """

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._scheduled = False
        self._post: Post | None = None
        self._run: Envelope[Any] | None = None

    def host(self, post: Post | None, run: Envelope[Any] | None) -> None:
        with self._lock:
            self._post, self._run, self._scheduled = post, run, False

    def put(self, item: Envelope[Any], block: bool = True, timeout: float | None = None) -> None:
        super().put(item)
        self.wake()

    def wake(self) -> None:
        """Post a turn to the host, unless one is posted or running."""
        with self._lock:
            if self._scheduled or self._run is None:
                return
            self._scheduled = True
            run, post = self._run, self._post
        assert post is not None
        post(run)

    def idle(self) -> bool:
        """End a turn if nothing is left (True); else the turn goes on."""
        with self._lock:
            if not self.empty():
                return False
            self._scheduled = False
            return True

    def repost(self) -> None:
        """End a turn that left messages: the host runs the actor again later."""
        with self._lock:
            run, post = self._run, self._post
        if run is not None and post is not None:
            post(run)


class LoopHost:
    """Runs hosted actors on an asyncio loop's thread, as callbacks between its own.

    Give it with `SupervisedActor.run_on(host)` to an actor (a supervisor,
    say, with its hosted children) that waits on the same loop's I/O: its
    turns then run where its messages arrive, with no hand-over between
    threads. The bridge's loop hosts the node's workflows this way
    (docs/supervision.md, "Hosted on a loop"). What it runs must never
    block, and must never wait for the loop itself (`Connection.call`).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
        self.loop = loop
        self.thread = thread
        self._guests: weakref.WeakSet[SupervisedActor] = weakref.WeakSet()
        self._guests_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<LoopHost on {self.thread.name}>"

    def alive(self) -> bool:
        return self.thread.is_alive() and not self.loop.is_closed()

    def _post_turn(self, run: Envelope[Any]) -> None:
        try:
            self.call_soon(run.message.actor._run_hosted)
        except RuntimeError:  # closed: its owner killed what ran here before closing it
            logger.debug("%r is closed: a turn of %s is dropped", self, run.message.actor.path)

    def call_soon(self, callback: Callable[[], object]) -> None:
        """Run `callback` on the loop's thread, after what was posted before.

        Raises:
            RuntimeError: the loop is closed.
        """
        if threading.current_thread() is self.thread:
            self.loop.call_soon(callback)
        else:
            self.loop.call_soon_threadsafe(callback)

    def _runner_thread(self) -> threading.Thread | None:
        return self.thread

    def _adopt(self, actor: SupervisedActor) -> None:
        with self._guests_lock:
            self._guests.add(actor)

    def hosting(self) -> bool:
        """Whether an actor still runs here."""
        with self._guests_lock:
            return any(actor.exit_reason is None for actor in self._guests)

    def kill_guests(self, *, at_once: bool = False) -> None:
        """Kill every actor still running here: an actor left on a stopped loop would
        never run again, and its supervisor would wait for it.

        The kills are posted (they happen on the loop's next turns, before a stop
        posted after them), or, `at_once`, run right here: for the loop's own
        thread once its loop has died.
        """
        with self._guests_lock:
            guests = list(self._guests)
        for actor in guests:
            if actor.exit_reason is None:
                actor._kill()
                if at_once:
                    actor._run_hosted()


class _Latch:
    """A one-way `threading.Event`: `set()` once, then every `wait()` returns at once.

    An actor has two (started, exited), and a step's attempt sets both within a
    millisecond: a `threading.Event` costs a `Condition` to make and a
    `notify_all` to set. This is one lock, held until set.
    """

    __slots__ = ("_flag", "_lock")

    def __init__(self) -> None:
        self._flag = False
        self._lock = threading.Lock()
        self._lock.acquire()

    def set(self) -> None:
        if not self._flag:
            self._flag = True
            self._lock.release()

    def is_set(self) -> bool:
        return self._flag

    def wait(self, timeout: float | None = None) -> bool:
        if self._flag:
            return True
        if not self._lock.acquire(timeout=-1 if timeout is None else max(timeout, 0)):
            return False
        self._lock.release()  # and the next waiter passes too
        return True


class SupervisedActor(pykka.ThreadingActor):
    """Base class for every actor in a noetl-actors supervision tree.

    Subclass it as you would `pykka.ThreadingActor` (`on_start`,
    `on_receive`, `on_stop`, `on_failure`, public methods for proxies).
    Put it under a supervisor with a `ChildSpec`; started alone with
    `start()`, it behaves the same minus the restarts.
    """

    use_daemon_thread = True

    hosted: ClassVar[bool] = False
    """True: under a supervisor, run on the supervisor's thread, not on a thread of
    its own. Only for actors whose every handler returns at once (never blocks,
    never asks its supervisor); see docs/supervision.md, "Hosted children"."""

    def _create_actor_inbox(self) -> Any:  # type: ignore[override]
        return _Inbox()

    path: str
    """Where the actor sits in its tree, e.g. ``/node/workflows/wf-1``."""
    exit_reason: ExitReason | None
    """Why the actor exited; None while it runs. Set before monitors hear of it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.path = f"/{type(self).__name__}-{self.actor_urn[-8:]}"
        self.exit_reason = None
        self._thread: threading.Thread | None = None
        self._started = _Latch()
        self._exited = _Latch()
        self._registered = False
        """In pykka's `ActorRegistry`: not when hosted in place (it lives a few ms)."""
        self._exit_lock = threading.Lock()
        self._watchers: dict[int, ExitListener] = {}
        self._parent: ExitListener | None = None
        self._requested_exit: ExitReason | None = None
        self._start_failure: ExitReason | None = None
        self._stop_reply: pykka.Future[Any] | None = None
        self._killed = False
        self._host: SupervisedActor | LoopHost | None = None
        """What runs this one: its supervisor (hosted), or a loop (`run_on`)."""
        self._home: LoopHost | None = None
        _live_actors.add(self)

    def run_on(self, home: LoopHost) -> None:
        """Run on `home`, an asyncio loop's thread, whoever supervises it.

        Call it before the actor is started. Its hosted children run there
        with it. Every rule of hosted actors applies (docs/supervision.md):
        no handler may block.
        """
        self._home = home

    def mailbox_depth(self) -> int:
        """Messages waiting in its inbox (approximate while others send)."""
        inbox: Any = self.actor_inbox
        return int(inbox.qsize())

    # -- hooks for subclasses ------------------------------------------------

    def _exit(self, reason: ExitReason) -> None:
        """Exit with `reason` once the current message (or `on_start`) is done.

        Called from the actor's own thread only.
        """
        self._requested_exit = reason

    def _before_exit(self, reason: ExitReason, exc_info: Any) -> None:
        """Run pykka's hooks: `on_failure` after a crash, `on_stop` otherwise."""
        try:
            if reason.kind is ExitKind.CRASH:
                self.on_failure(*exc_info)
            elif reason.kind is not ExitKind.START_FAILURE:
                self.on_stop()
        except BaseException:
            logger.exception("%s: exception in on_stop/on_failure (ignored)", self.path)

    # -- the loop ------------------------------------------------------------

    def _start_actor_loop(self) -> None:
        self._thread = threading.Thread(
            target=self._actor_loop, name=f"noetl{self.path}", daemon=True
        )
        self._thread.start()

    def _actor_loop(self) -> None:
        reason = self._run_on_start()
        exc_info: Any = (None, None, None)
        if reason is None:
            reason, exc_info = self._receive_until_exit()
        try:
            self._teardown(reason, exc_info)
        finally:
            # The traceback holds this frame, which holds it: break the cycle so
            # a dead incarnation is freed at once, not by a full GC pass later.
            del exc_info

    def _run_on_start(self) -> ExitReason | None:
        """Run `on_start`; the reason to exit at once, if any (a start failure)."""
        reason: ExitReason | None
        try:
            self.on_start()
        except BaseException as error:
            logger.debug("%s: on_start raised", self.path, exc_info=True)
            reason = ExitReason.from_exception(ExitKind.START_FAILURE, error, path=self.path)
            self._start_failure = reason
        else:
            reason = self._requested_exit
            if reason is not None and reason.is_abnormal:
                self._start_failure = reason  # e.g. a supervisor that gave up while starting
        self._started.set()
        return reason

    def _receive_until_exit(self) -> tuple[ExitReason, Any]:
        inbox = self.actor_inbox
        while not self._killed:
            envelope = inbox.get()
            if self._killed:
                if envelope.message is not _WAKE:
                    _put_back(inbox, envelope)
                break
            ended = self._handle_envelope(envelope)
            if ended is not None:
                try:
                    return ended
                finally:
                    del ended  # it holds the traceback, which holds this frame
        return ExitReason(ExitKind.KILLED, path=self.path), (None, None, None)

    def _handle_envelope(self, envelope: Envelope[Any]) -> tuple[ExitReason, Any] | None:
        """Handle one message; why and how the actor exits after it, or None."""
        message = envelope.message
        if message is _WAKE:
            return None
        if type(message) is _RunHosted:
            message.actor._run_hosted()
            return None
        if isinstance(message, pykka.messages._ActorStop):
            self._stop_reply = envelope.reply_to  # answered once fully stopped
            return ExitReason(ExitKind.NORMAL, path=self.path), (None, None, None)
        try:
            if isinstance(message, Crash):
                raise InjectedCrash(message.why)
            result = self._handle_receive(message)
        except BaseException as error:
            logger.debug("%s: crashed on %r", self.path, message, exc_info=True)
            if envelope.reply_to is not None:
                _reply_with_error(envelope, error, self.path)
            reason = ExitReason.from_exception(ExitKind.CRASH, error, path=self.path)
            return reason, (type(error), error, error.__traceback__)
        if envelope.reply_to is not None:
            envelope.reply_to.set(result)
        if self._requested_exit is not None:
            return self._requested_exit, (None, None, None)
        return None

    # -- hosted: the loop, one turn at a time, on the host's thread ------------

    def _post_turn(self, run: Envelope[Any]) -> None:
        """Run a hosted child's turn (`run`) on this actor's thread, between its messages."""
        self.actor_inbox.put(run)

    def _start_hosted(self, host: SupervisedActor | LoopHost) -> None:
        """Run `on_start` here (the host's thread); later turns come as `_RunHosted`."""
        inbox = self.actor_inbox
        assert isinstance(inbox, _Inbox)
        self._host = host
        inbox.host(host._post_turn, Envelope(_RunHosted(self)))
        reason = self._run_on_start()
        if reason is None and self._killed:  # killed while it started: its turn may never come
            reason = ExitReason(ExitKind.KILLED, path=self.path)
        if reason is not None:
            self._teardown(reason, (None, None, None))
        elif not inbox.empty():
            inbox.wake()  # what its address held, or what on_start told itself

    def _run_hosted(self) -> None:
        """One turn: handle waiting messages (up to `HOSTED_BATCH`) on the host's thread.

        The same steps as `_receive_until_exit`, without the blocking get: a
        hosted actor that exits is torn down here, and its supervisor hears of
        it as of any other child.
        """
        if self.exit_reason is not None or self._host is None:
            return  # a turn posted before it exited
        inbox = self.actor_inbox
        assert isinstance(inbox, _Inbox)
        for _ in range(HOSTED_BATCH):
            if self._killed:
                self._teardown(ExitReason(ExitKind.KILLED, path=self.path), (None, None, None))
                return
            try:
                envelope = inbox.get_nowait()
            except queue.Empty:
                if inbox.idle():
                    return
                continue
            ended = self._handle_envelope(envelope)
            if ended is not None:
                reason, exc_info = ended
                try:
                    self._teardown(reason, exc_info)
                finally:
                    del exc_info, ended
                return
        inbox.repost()

    def _runner_thread(self) -> threading.Thread | None:
        """The thread that runs this actor: its own, or (hosted) its host's."""
        host = self._host
        return self._thread if host is None else host._runner_thread()

    def _on_host_thread(self) -> bool:
        return self._host is not None and self._runner_thread() is threading.current_thread()

    def _teardown(self, reason: ExitReason, exc_info: Any) -> None:
        self._unregister()
        self.actor_stopped.set()
        self._before_exit(reason, exc_info)
        with self._exit_lock:
            self.exit_reason = reason
            watchers = list(self._watchers.values())
            self._watchers.clear()
        inbox = self.actor_inbox
        assert isinstance(inbox, _Inbox)
        inbox.host(None, None)  # its turn envelope holds this actor: let go
        if self._parent is None:
            # Nobody will carry what is left over to a next incarnation.
            dead_letter(self.path, drain(self.actor_inbox), None)
        for listener in ([self._parent] if self._parent else []) + watchers:
            try:
                listener(reason)
            except Exception:
                logger.exception("%s: exit listener failed (ignored)", self.path)
        self._parent = None  # its closure holds this actor: no cycle once exited
        self._exited.set()
        if self._stop_reply is not None:
            self._stop_reply.set(None)

    # -- used by supervisors (another thread) --------------------------------

    def _launch(
        self, path: str, parent: ExitListener | None, host: SupervisedActor | None = None
    ) -> ExitReason | None:
        """Start the loop and wait for `on_start`; return its failure, if any.

        A `hosted` actor given a `host` (its supervisor, calling from its own
        thread) starts right here and runs on that thread from then on.
        """
        self.path = path
        self._parent = parent
        if self.hosted and host is not None and self._home is None:
            self._start_hosted(host)
            return self._start_failure
        pykka.ActorRegistry.register(self.actor_ref)
        self._registered = True
        if self._home is not None:
            return self._start_at_home(self._home)
        self._start_actor_loop()
        self._started.wait()
        return self._start_failure

    def _unregister(self) -> None:
        if self._registered:
            self._registered = False
            pykka.ActorRegistry.unregister(self.actor_ref)

    def _start_at_home(self, home: LoopHost) -> ExitReason | None:
        """Start on `home`'s loop and wait for `on_start` there (`run_on`)."""
        home._adopt(self)
        if threading.current_thread() is home.thread:  # waiting here would stall the loop
            self._start_hosted(home)
            return self._start_failure
        try:
            home.call_soon(lambda: self._start_hosted(home))
        except RuntimeError:
            pass  # the loop is closed: said below
        while not self._started.wait(0.1):
            if not home.alive():
                self._unregister()
                return ExitReason(ExitKind.START_FAILURE, path=self.path,
                                  message=f"its loop ({home.thread.name}) is not running")
        return self._start_failure

    def _kill(self) -> None:
        """Make the loop exit before its next message; wakes it if idle."""
        self._killed = True
        self.actor_stopped.set()
        self.actor_inbox.put(Envelope(_WAKE))

    def _wait_exit(self, timeout: float | None) -> bool:
        """Wait until the actor's thread has finished; False on timeout.

        On its host's thread, a hosted actor is run instead (it could not
        run while its host waits): its stop or kill is handled at once.
        """
        if self._on_host_thread():
            while not self._exited.is_set() and not self.actor_inbox.empty():
                self._run_hosted()
            if self._killed and not self._exited.is_set():
                self._run_hosted()
            return self._exited.is_set()
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._exited.wait(timeout):
            return False
        if self._thread is not None:
            self._thread.join(None if deadline is None else max(deadline - time.monotonic(), 0))
            return not self._thread.is_alive()
        return True

    def _add_watcher(self, key: int, listener: ExitListener) -> bool:
        """Register `listener`; False (and not registered) if already exited."""
        with self._exit_lock:
            if self.exit_reason is not None:
                return False
            self._watchers[key] = listener
            return True

    def _remove_watcher(self, key: int) -> None:
        with self._exit_lock:
            self._watchers.pop(key, None)


def tell_if_alive(ref: pykka.ActorRef[Any], message: Any) -> bool:
    """Tell `ref` the message unless the actor is gone; True if it was told.

    For timers, callbacks and exit notices, whose target may have exited in
    the meantime: that is not an error, there is just nobody left to tell.
    """
    try:
        ref.tell(message)
    except pykka.ActorDeadError:
        return False
    return True


def drain(inbox: Any) -> list[Envelope[Any]]:
    """Take every message still in an exited actor's inbox.

    Stop requests are settled here (the actor has stopped: a `stop()` ask
    gets None) and kill wake-ups dropped, so neither reaches a next
    incarnation.
    """
    envelopes = []
    while not inbox.empty():
        envelope = inbox.get_nowait()
        if isinstance(envelope.message, pykka.messages._ActorStop):
            if envelope.reply_to is not None:
                envelope.reply_to.set(None)
        elif envelope.message is not _WAKE and type(envelope.message) is not _RunHosted:
            envelopes.append(envelope)
    return envelopes


def _put_back(inbox: Any, first: Envelope[Any]) -> None:
    """Return an envelope taken too early to the front of the inbox."""
    rest = drain(inbox)
    inbox.put(first)
    for envelope in rest:
        inbox.put(envelope)


def _reply_with_error(envelope: Envelope[Any], error: BaseException, path: str) -> None:
    assert envelope.reply_to is not None
    if isinstance(error, Exception):
        envelope.reply_to.set_exception((type(error), error, error.__traceback__))
        return
    # SystemExit and friends must not travel into the caller's thread.
    dead = ActorDeadError(f"{path} exited with {error!r} while handling the message")
    dead.__cause__ = error
    envelope.reply_to.set_exception((ActorDeadError, dead, None))


# -- monitors -----------------------------------------------------------------


class _LiveActors:
    """Every SupervisedActor not yet garbage-collected, by URN.

    The one module-level registry here; `monitor()` needs it to reach the
    actor behind an `ActorRef`. Locked, and weak, so it keeps nothing alive.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_urn: weakref.WeakValueDictionary[str, SupervisedActor] = (
            weakref.WeakValueDictionary()
        )

    def add(self, actor: SupervisedActor) -> None:
        with self._lock:
            self._by_urn[actor.actor_urn] = actor

    def get(self, urn: str) -> SupervisedActor | None:
        with self._lock:
            return self._by_urn.get(urn)


_live_actors = _LiveActors()
_monitor_ids = itertools.count(1)


@attrs.frozen
class Down:
    """Told to a watcher when the actor it monitors exits (OTP's 'DOWN')."""

    monitor_id: int
    actor_urn: str
    path: str
    reason: ExitReason


class Monitor:
    """A watch on one actor, returned by `monitor()`; `cancel()` ends it."""

    def __init__(self, monitor_id: int, target: SupervisedActor | None) -> None:
        self.id = monitor_id
        self._target = weakref.ref(target) if target is not None else None

    def cancel(self) -> None:
        """Stop watching (OTP's demonitor); a Down already sent stays sent."""
        target = self._target() if self._target is not None else None
        if target is not None:
            target._remove_watcher(self.id)


def monitor(
    target: pykka.ActorRef[Any], notify: pykka.ActorRef[Any] | Callable[[Down], None]
) -> Monitor:
    """Watch `target`; when it exits, `notify` gets a `Down` with the reason.

    `notify` is an actor (told the `Down`) or a callable (called on the
    exiting actor's thread: be quick). Watching an actor that has already
    exited sends the `Down` at once, as OTP does for a dead pid.

    Raises:
        TypeError: `target` is not a `SupervisedActor`.
    """
    if not issubclass(target.actor_class, SupervisedActor):
        raise TypeError(
            f"monitor() needs a SupervisedActor, got an actor of class "
            f"{target.actor_class.__name__}"
        )
    monitor_id = next(_monitor_ids)
    actor = _live_actors.get(target.actor_urn)

    def deliver(reason: ExitReason) -> None:
        down = Down(monitor_id, target.actor_urn, reason.path, reason)
        if callable(notify) and not isinstance(notify, pykka.ActorRef):
            notify(down)
        else:
            tell_if_alive(notify, down)

    if actor is not None and actor._add_watcher(monitor_id, deliver):
        return Monitor(monitor_id, actor)
    if actor is not None and actor.exit_reason is not None:
        reason = actor.exit_reason
    else:
        reason = ExitReason(ExitKind.NORMAL, message="noproc: the actor had already exited")
    deliver(reason)
    return Monitor(monitor_id, None)
