"""`SupervisedActor`: a pykka actor whose every exit is seen, with why.

pykka is the engine (inbox, futures, proxies, registry), but its error flow
does not fit supervision, so this class is a new pykka actor type that owns
its own loop, on a thread it starts itself (pykka's internals it relies on
are in `_pykka.py`):

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

import logging
import queue
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, ClassVar

import attrs
import pykka

from noetl_actors.errors import ActorDeadError, InjectedCrash
from noetl_actors.supervision._address import dead_letter
from noetl_actors.supervision._inbox import (
    HOSTED_BATCH,
    WAKE,
    Inbox,
    RunHosted,
    drain,
    put_back,
)
from noetl_actors.supervision._latch import Latch
from noetl_actors.supervision._loop_host import LoopHost
from noetl_actors.supervision._pykka import (
    Entry,
    handle_receive,
    inbox_hook_works,
    is_stop,
    make_envelope,
    put,
    send_stop,
)
from noetl_actors.supervision._reasons import ExitKind, ExitReason

__all__ = ["Crash", "SupervisedActor", "tell_if_alive"]

logger = logging.getLogger("noetl_actors.supervision")


@attrs.frozen
class Crash:
    """Tell it to any supervised actor to make it crash, as if its code had raised.

    For operators and tests that want to watch a supervisor act (`noetl kill`).
    """

    why: str = "killed by request"


ExitListener = Callable[[ExitReason], None]


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

    @staticmethod
    def _create_actor_inbox() -> Any:
        return Inbox()

    path: str
    """Where the actor sits in its tree, e.g. ``/node/workflows/wf-1``."""
    exit_reason: ExitReason | None
    """Why the actor exited; None while it runs. Set before monitors hear of it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not inbox_hook_works:  # pykka built its own: swap ours in, by public names
            inbox: Any = Inbox()
            self.actor_inbox = self.actor_ref.actor_inbox = inbox
        self.path = f"/{type(self).__name__}-{self.actor_urn[-8:]}"
        self.exit_reason = None
        self._thread: threading.Thread | None = None
        self._started = Latch()
        self._exited = Latch()
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

    def detail(self) -> dict[str, Any] | None:
        """What its supervisor's snapshot shows of it beside its state (a hook: None by
        default). Called on the supervisor's thread while the actor may run: read only
        what a snapshot may see half-changed (one attribute, say), never block."""
        return None

    # -- hooks for subclasses ------------------------------------------------

    def exit_with(self, reason: ExitReason) -> None:
        """Exit with `reason` once the current message (or `on_start`) is done.

        Call it from the actor's own code (its thread, or its host's), e.g. in
        `on_receive`: the message in hand is finished, and its reply sent,
        first. A later call before then replaces the reason.
        """
        self._requested_exit = reason

    def stop(self) -> None:
        """Stop after the messages sent before (pykka's `stop()`): a normal exit."""
        send_stop(self.actor_ref)

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

    @classmethod
    def start(cls, *args: Any, **kwargs: Any) -> pykka.ActorRef[Any]:
        """Build and start the actor alone, with no supervisor (pykka's `start()`).

        It is in pykka's `ActorRegistry` until it exits. Returns at once; its
        `on_start` runs on its own thread.
        """
        actor = cls(*args, **kwargs)
        pykka.ActorRegistry.register(actor.actor_ref)
        actor._registered = True
        actor._start_thread()
        return actor.actor_ref

    def _start_thread(self) -> None:
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
                if envelope.message is not WAKE:
                    put_back(inbox, envelope)
                break
            ended = self._handle_envelope(envelope)
            if ended is not None:
                try:
                    return ended
                finally:
                    del ended  # it holds the traceback, which holds this frame
        return ExitReason(ExitKind.KILLED, path=self.path), (None, None, None)

    def _handle_envelope(self, envelope: Entry) -> tuple[ExitReason, Any] | None:
        """Handle one message; why and how the actor exits after it, or None."""
        message = envelope.message
        if message is WAKE:
            return None
        if type(message) is RunHosted:
            message.actor._run_hosted()
            return None
        if is_stop(message):
            self._stop_reply = envelope.reply_to  # answered once fully stopped
            return ExitReason(ExitKind.NORMAL, path=self.path), (None, None, None)
        try:
            if isinstance(message, Crash):
                raise InjectedCrash(message.why)
            result = handle_receive(self, message)
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

    def _post_turn(self, run: Entry) -> None:
        """Run a hosted child's turn (`run`) on this actor's thread, between its messages."""
        put(self.actor_inbox, run)

    def _start_hosted(self, host: SupervisedActor | LoopHost) -> None:
        """Run `on_start` here (the host's thread); later turns come as `RunHosted`."""
        inbox = self.actor_inbox
        assert isinstance(inbox, Inbox)
        self._host = host
        inbox.host(host._post_turn, self)
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
        assert isinstance(inbox, Inbox)
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
        assert isinstance(inbox, Inbox)
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
        self._start_thread()
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
        put(self.actor_inbox, make_envelope(WAKE))

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


def stop_if_alive(ref: pykka.ActorRef[Any]) -> bool:
    """Ask `ref` to stop (after what it was sent before) unless it is gone; True if asked."""
    try:
        send_stop(ref)
    except pykka.ActorDeadError:
        return False
    return True


def _reply_with_error(envelope: Entry, error: BaseException, path: str) -> None:
    assert envelope.reply_to is not None
    if isinstance(error, Exception):
        envelope.reply_to.set_exception((type(error), error, error.__traceback__))
        return
    # SystemExit and friends must not travel into the caller's thread.
    dead = ActorDeadError(f"{path} exited with {error!r} while handling the message")
    dead.__cause__ = error
    envelope.reply_to.set_exception((ActorDeadError, dead, None))


# -- every live actor, by URN (for monitors) ------------------------------------


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


