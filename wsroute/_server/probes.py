"""Health, readiness and metrics: plain GET routes every app has unless turned off.

``App(health_path=..., ready_path=..., metrics_path=...)`` (``/healthz``,
``/readyz``, ``/metrics`` by default; ``None`` turns one off). They are answered
like any GET route (``_http.HTTPRoutes``), next to the app's own: a path is either
the app's or a probe's, and a clash is a ``RegistrationError`` naming the option to
change. The app's table is checked when a route is registered and again when the
app starts (the command line may have moved a probe since).

- health: 200 while the process serves at all; nothing it depends on is checked.
- readiness: 200 while the broker is connected and the app is not shutting down,
  else 503 with the reason, so that a load balancer sends new clients elsewhere.
- metrics: every metric of ``app.metrics`` in Prometheus's text format; a worker of
  ``wsroute run --workers N`` answers those of all workers instead (``workermetrics``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final

from .._errors import RegistrationError
from .._http import HTTPRoutes, Response
from .._metrics import CONTENT_TYPE, Metrics

if TYPE_CHECKING:
    from .._config import Config
    from .._request import Request

#: ``(option, what it answers)`` for each probe, in the order they are listed.
OPTIONS: Final = (
    ("health_path", "the health check"),
    ("ready_path", "the readiness check"),
    ("metrics_path", "the metrics"),
)

_NO_CACHE: Final = {"Cache-Control": "no-store"}


def probe_paths(config: Config) -> list[tuple[str, str, str]]:
    """``(path, option, what)`` for each probe that is on."""
    return [
        (path, option, what)
        for option, what in OPTIONS
        if (path := getattr(config, option)) is not None
    ]


def probe_routes(config: Config) -> list[tuple[str, str]]:
    """``(path, what answers it)`` for each probe that is on, as the route table
    names them (``wsroute routes`` lists them with the app's routes)."""
    return [(path, _owner(option, what)) for path, option, what in probe_paths(config)]


def _owner(option: str, what: str) -> str:
    return f"{what} (App option {option})"


def check_path(config: Config, path: str, what: str, *, mount: bool = False) -> None:
    """Refuse a route of the app's (``what``) at a probe's path.

    Raises:
        RegistrationError: ``path`` is a probe's; the message names its option.
    """
    if not isinstance(path, str):
        return  # not a path at all: HTTPRoutes says so
    if mount:
        path = path.rstrip("/") or "/"
    for probe, option, probe_what in probe_paths(config):
        if probe == path:
            raise RegistrationError(
                f"{what}: {path!r} is the path of {probe_what} (App option {option}):"
                f" pass App({option}='/another-path'), or {option}=None to turn it off"
                f" (on the command line: --{option.replace('_', '-')})"
            )


def check_routes(config: Config, routes: HTTPRoutes) -> None:
    """Check the app's whole table against the probes (at start).

    Raises:
        RegistrationError: as ``check_path``.
    """
    for path, what in routes.owners():
        check_path(config, path, what)


class Probes:
    """The three answers, for one running app.

    Args:
        metrics: what ``/metrics`` serves.
        unready: the reason the app is not ready, or ``None`` when it is.
        page: what ``/metrics`` serves instead of ``metrics``, made at each scrape.
    """

    __slots__ = ("_metrics", "_page", "_unready")

    def __init__(
        self,
        metrics: Metrics,
        unready: Callable[[], str | None],
        page: Callable[[], Awaitable[str]] | None = None,
    ) -> None:
        self._metrics = metrics
        self._unready = unready
        self._page = page

    def install(self, routes: HTTPRoutes, config: Config) -> HTTPRoutes:
        """A copy of ``routes`` with the probes that are on (checked: no clash)."""
        check_routes(config, routes)
        table = routes.copy()
        answers = {
            "health_path": self.health,
            "ready_path": self.ready,
            "metrics_path": self.metrics,
        }
        for path, option, what in probe_paths(config):
            table.add(path, answers[option], _owner(option, what))
        return table

    async def health(self, request: Request) -> Response:
        return Response("ok\n", headers=_NO_CACHE)

    async def ready(self, request: Request) -> Response:
        reason = self._unready()
        if reason is None:
            return Response("ready\n", headers=_NO_CACHE)
        return Response(f"not ready: {reason}\n", 503, headers=_NO_CACHE)

    async def metrics(self, request: Request) -> Response:
        text = self._metrics.expose() if self._page is None else await self._page()
        return Response(text, content_type=CONTENT_TYPE, headers=_NO_CACHE)
