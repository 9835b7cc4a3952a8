"""Running an app: its lifespan, background tasks, listener, signals and shutdown.

A mixin of :class:`~wsroute.App`. ``running_context`` is the one place an app comes
alive (broker session, hub pump, lifespan, background tasks); ``serve`` adds a TCP
listener to it, ``run`` adds signal handling, and ``wsroute.testing`` uses it without
any listener.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import signal
import ssl
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any

import cattrs
import trio

from .._config import Config
from .._errors import (
    AlreadyRunningError,
    HistoryUnsupported,
    NotRunningError,
    PresenceUnsupported,
    RegistrationError,
)
from .._http import HTTPRoutes
from .._logs import log_by_default, logging_configured
from .._metrics import Metrics
from .._routing import Handler, Route
from .._signatures import FrameHandler, Hook, describe
from .._util import check_task, collapse_exception_group
from ..brokers import Broker, BrokerState
from .admission import AcceptHook
from .coalesce import CoalesceStats, SingleFlight
from .hub import Hub
from .instruments import Instruments
from .presence import PresenceKeeper
from .probes import check_routes
from .runtime import Runtime
from .tcp import serve_tcp
from .workermetrics import WorkerMetrics

logger = logging.getLogger("wsroute")

Lifespan = Callable[..., Any]


class Serving:
    """The running state of an App and the ways to run it."""

    # Set by App.__init__; listed here for the type checker.
    config: Config
    converter: cattrs.Converter
    broker: Broker
    coalesce_stats: CoalesceStats
    metrics: Metrics
    _instruments: Instruments
    _routes: dict[str, Route]
    _info: dict[str, Handler]
    _on_connect: list[Hook]
    _on_disconnect: list[Hook]
    _on_broker_state: list[Callable[[BrokerState], Awaitable[Any]]]
    _lifespans: list[Lifespan]
    _accept_hook: AcceptHook | None
    _frame_handler: FrameHandler | None
    _http: HTTPRoutes
    _user_id: Callable[[Any], str | None]
    _started: bool
    _starting: bool
    _stop_requested: bool
    _restart_requested: bool = False  # with _stop_requested: shutdown(restart=True)
    #: The broker said it is lost, last (a cluster may start with a shard down).
    _broker_lost: bool = False
    _runtime: Runtime | None
    _tasks: trio.Nursery | None
    _pending_tasks: list[tuple[Callable[..., Awaitable[Any]], tuple[Any, ...]]]

    @property
    def running(self) -> bool:
        return self._runtime is not None

    def _require_runtime(self, what: str) -> Runtime:
        if self._runtime is None:
            raise NotRunningError(f"{what} needs a running app: call it while serving")
        return self._runtime

    @property
    def connections(self) -> list[Any]:
        """The connections currently open on this app (in this process)."""
        return self._runtime.connections if self._runtime is not None else []

    def start_soon(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Run ``fn(*args)`` in the background for as long as the app serves.

        Called during lifespan start-up, the task starts once start-up completes. It
        is cancelled before the lifespan's teardown; if it raises, the error is logged.

        Raises:
            TypeError: ``fn`` is not a function (a coroutine, say: ``start_soon(fn(x))``).
            NotRunningError: the app is not serving.
        """
        check_task("app.start_soon", fn)
        self._require_runtime("app.start_soon()")
        if self._tasks is None:
            self._pending_tasks.append((fn, args))
        else:
            self._tasks.start_soon(_guard_task, fn, args)

    def shutdown(self, *, restart: bool = False) -> None:
        """Stop serving gracefully: connections get 1001 after in-flight handlers finish.

        Called while the app is still starting, it takes effect as soon as it serves.

        Args:
            restart: close with 1012 (service restart) instead: this process is about
                to be replaced, and clients should reconnect (``wsroute run --reload``).
        """
        if self._runtime is not None:
            self._runtime.request_stop(restart=restart)
        elif self._starting:
            self._stop_requested = True
            self._restart_requested = restart

    @asynccontextmanager
    async def running_context(self) -> AsyncIterator[None]:
        """Run the app without a listener: broker session, lifespan and tasks.

        ``wsroute.testing`` uses it. Freezes the handler table.

        Raises:
            AlreadyRunningError: the app is running already.
        """
        async with self._running():
            yield

    @asynccontextmanager
    async def _running(
        self, metrics_page: Callable[[], Awaitable[str]] | None = None
    ) -> AsyncIterator[Runtime]:
        """``running_context``, yielding the serving's runtime (``serve`` listens with
        it); ``metrics_page`` replaces what ``/metrics`` answers."""
        if self._runtime is not None:
            raise AlreadyRunningError(
                "this App is already running; to simulate another process, create a"
                " second App on the same broker"
            )
        check_routes(self.config, self._http)  # the command line may have moved a probe
        self._started = True
        self._starting = True
        self._stop_requested = False
        self._broker_lost = False
        instruments = self._instruments
        try:
            with collapse_exception_group():
                async with (
                    trio.open_nursery() as system,
                    self.broker.connect(
                        on_state=lambda state: self._broker_state_changed(system, state)
                    ) as session,
                ):
                    instruments.broker_connected.set(0 if self._broker_lost else 1)
                    if self.config.history and not session.keeps_history:
                        raise HistoryUnsupported(
                            f"the broker {self.broker.describe()} keeps no history, which"
                            " App(history=...) needs: use the memory or Redis broker, or"
                            " leave history out"
                        )
                    presence = None
                    if self.config.presence:
                        if not session.keeps_presence:
                            raise PresenceUnsupported(
                                f"the broker {self.broker.describe()} keeps no presence,"
                                " which App(presence=...) needs: use the memory or Redis"
                                " broker, or leave presence out"
                            )
                        presence = PresenceKeeper(
                            session, self.config.presence, self.config.presence_ttl
                        )
                        await system.start(presence.run)
                    hub = Hub(
                        session,
                        self.config.history,
                        hold_limit=max(self.config.outbox_size // 2, 1),
                        presence=presence,
                        instruments=instruments,
                    )
                    await system.start(hub.pump)
                    runtime = Runtime(
                        config=self.config,
                        converter=self.converter,
                        routes=self._routes,
                        on_connect=self._on_connect,
                        on_disconnect=self._on_disconnect,
                        accept_hook=self._accept_hook,
                        frame_handler=self._frame_handler,
                        http=self._http,
                        info=self._info,
                        flights=SingleFlight(system, self.coalesce_stats),
                        user_id=self._user_id,
                        hub=hub,
                        broker_name=self.broker.describe(),
                        instruments=instruments,
                        metrics_page=metrics_page,
                    )
                    if runtime.heartbeat is not None:
                        system.start_soon(runtime.heartbeat.run)
                    # Streams served by handle_stream outlive this nursery's
                    # cancellation otherwise (they are shielded).
                    system.start_soon(runtime.abort_when_cancelled)
                    self._runtime = runtime
                    if self._broker_lost:  # since the start: what joins now catches up
                        runtime.hub.catchup.lost()
                    self._starting = False
                    if self._stop_requested:
                        runtime.request_stop(restart=self._restart_requested)
                    try:
                        async with AsyncExitStack() as stack:
                            for lifespan in self._lifespans:
                                await stack.enter_async_context(self._enter_lifespan(lifespan))
                            async with trio.open_nursery() as tasks:
                                self._tasks = tasks
                                for fn, args in self._pending_tasks:
                                    tasks.start_soon(_guard_task, fn, args)
                                self._pending_tasks.clear()
                                yield runtime
                                tasks.cancel_scope.cancel()
                    finally:
                        self._tasks = None
                        self._runtime = None
                        self._stop_requested = False
                        self._pending_tasks.clear()
                        system.cancel_scope.cancel()
        finally:
            self._starting = False
            instruments.broker_connected.set(0)

    def _broker_state_changed(self, system: trio.Nursery, state: BrokerState) -> None:
        instruments = self._instruments
        self._broker_lost = state is not BrokerState.CONNECTED
        if state is BrokerState.CONNECTED:
            instruments.broker_connected.set(1)
            instruments.broker_reconnects.value += 1
        else:
            instruments.broker_connected.set(0)
            instruments.broker_disconnects.value += 1
        runtime = self._runtime
        if runtime is not None:
            # Topics with history: hold live events from the loss, replay what was
            # missed once the broker is back (see catchup).
            if state is BrokerState.CONNECTED:
                runtime.hub.catchup.restored(system)
                if runtime.hub.presence is not None:
                    runtime.hub.presence.reconnected()
            else:
                runtime.hub.catchup.lost()
            if self.config.broker_state_events:
                runtime.push_to_all("broker_state", {"state": state.value})
        for hook in self._on_broker_state:
            system.start_soon(_guard_task, hook, (state,))

    def _enter_lifespan(self, fn: Lifespan) -> AbstractAsyncContextManager[Any]:
        args = (self,) if len(inspect.signature(fn).parameters) == 1 else ()
        if inspect.isasyncgenfunction(fn):
            return asynccontextmanager(fn)(*args)
        manager = fn(*args)
        if not hasattr(manager, "__aenter__"):
            raise RegistrationError(
                f"lifespan {describe(fn)} must be an async generator function or return an"
                f" async context manager, not {type(manager).__name__}"
            )
        return manager  # type: ignore[no-any-return]

    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 8000,
        *,
        ssl_context: ssl.SSLContext | None = None,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve on ``host:port`` until :meth:`shutdown` (graceful) or cancellation.

        Supports ``port = await nursery.start(app.serve, host, 0)``: reports the bound
        port once listening.

        Args:
            ssl_context: serve TLS (``wss://``) with this server context, e.g.
                ``ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)`` with
                ``load_cert_chain(...)``. The TLS handshake counts towards the
                app's ``handshake_timeout``.
        """
        await self._serve(host, port, ssl_context=ssl_context, task_status=task_status)

    async def _serve(
        self,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        reuse_port: bool = False,
        announce: bool = True,
        metrics_dir: str | None = None,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """``serve``, and what a worker of ``wsroute run --workers`` needs besides: a
        port shared with the other workers, no ``listening`` line of its own, and
        ``/metrics`` added up over the workers through ``metrics_dir``."""
        shared = None
        if metrics_dir is not None and self.config.metrics_path is not None:
            shared = WorkerMetrics(metrics_dir, self.metrics)
        async with self._running(shared.page if shared else None) as runtime:
            serve = functools.partial(
                serve_tcp,
                runtime,
                host,
                port,
                ssl_context=ssl_context,
                reuse_port=reuse_port,
                announce=announce,
                task_status=task_status,
            )
            if shared is None:
                await serve()
                return
            async with trio.open_nursery() as writing:
                await writing.start(shared.run)
                await serve()
                writing.cancel_scope.cancel()
            with trio.CancelScope(shield=True):
                await shared.write()  # drained: the figures the supervisor keeps

    def run(
        self,
        host: str = "127.0.0.1",
        port: int = 8000,
        *,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """Serve until SIGINT or SIGTERM, then shut down gracefully.

        A second signal during the shutdown exits at once with status 1.
        ``ssl_context`` serves TLS, as in :meth:`serve`.

        Logs as ``wsroute run`` does (lines on standard error: where it listens, who
        connects; the level and format from ``WSROUTE_LOG_LEVEL`` and
        ``WSROUTE_LOG_FORMAT``, info and text by default) unless the application
        configured logging first, so that ``python app.py`` shows the same as the
        command. An invalid value of either variable raises ``ValueError``, naming it.
        """
        if not logging_configured():
            log_by_default()
        trio.run(
            self._serve_until_signal,
            functools.partial(self.serve, host, port, ssl_context=ssl_context),
        )

    async def _serve_until_signal(
        self, serve: Callable[[], Awaitable[None]], *, again_exits: bool = True
    ) -> None:
        """Run ``serve()``; the first SIGINT or SIGTERM shuts the app down gracefully,
        a second one exits the process at once, unless ``again_exits`` is false: a
        worker of ``wsroute run --workers`` may get each signal twice (from systemd,
        which signals every process of the service, and forwarded by its supervisor),
        and leaves exiting at once to the supervisor, which kills its workers on a
        second signal of its own."""
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch_signals, signals, again_exits)
                await serve()
                nursery.cancel_scope.cancel()

    async def _watch_signals(self, signals: AsyncIterator[int], again_exits: bool) -> None:
        count = 0
        async for signum in signals:
            count += 1
            name = signal.Signals(signum).name
            if count == 1:
                logger.info("received %s, shutting down gracefully", name)
                self.shutdown()
            elif not again_exits:
                logger.info("received %s again: already shutting down", name)
            else:
                logger.warning("received %s again, exiting now", name)
                logging.shutdown()
                sys.stdout.flush()
                os._exit(1)


async def _guard_task(fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]) -> None:
    try:
        await fn(*args)
    except Exception:
        logger.exception("background task %r failed", fn)
