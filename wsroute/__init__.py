"""wsroute: a decorator-based WebSocket microframework on trio."""

from __future__ import annotations

from ._app import App as App
from ._config import Config as Config
from ._config import SlowConsumerPolicy as SlowConsumerPolicy
from ._converter import make_converter as make_converter
from ._declared import EventInfo as EventInfo
from ._errors import AlreadyRunningError as AlreadyRunningError
from ._errors import BrokerClosed as BrokerClosed
from ._errors import BrokerError as BrokerError
from ._errors import ConnectionClosed as ConnectionClosed
from ._errors import HandlerError as HandlerError
from ._errors import HistoryUnsupported as HistoryUnsupported
from ._errors import ListenError as ListenError
from ._errors import LoadError as LoadError
from ._errors import NotRunningError as NotRunningError
from ._errors import PresenceUnsupported as PresenceUnsupported
from ._errors import ProtocolError as ProtocolError
from ._errors import RegistrationError as RegistrationError
from ._errors import Reject as Reject
from ._errors import WsrouteError as WsrouteError
from ._history import History as History
from ._history import HistoryEvent as HistoryEvent
from ._history import Position as Position
from ._history import TopicHistory as TopicHistory
from ._http import Response as Response
from ._logs import JSONFormatter as JSONFormatter
from ._metrics import Metrics as Metrics
from ._presence import Presence as Presence
from ._presence import PresenceEntry as PresenceEntry
from ._presence import PresenceStats as PresenceStats
from ._request import Headers as Headers
from ._request import Request as Request
from ._routing import RouteInfo as RouteInfo
from ._routing import RouteKind as RouteKind
from ._server.admission import bearer_auth as bearer_auth
from ._server.coalesce import CoalesceStats as CoalesceStats
from ._server.connection import Connection as Connection
from ._server.connection import Disconnect as Disconnect
from ._wire.deflate import Deflate as Deflate

__version__ = "0.1.0"

__all__ = [
    "App",
    "BrokerClosed",
    "BrokerError",
    "CoalesceStats",
    "Config",
    "Connection",
    "ConnectionClosed",
    "Deflate",
    "Disconnect",
    "EventInfo",
    "HandlerError",
    "Headers",
    "History",
    "HistoryEvent",
    "HistoryUnsupported",
    "JSONFormatter",
    "ListenError",
    "LoadError",
    "Metrics",
    "NotRunningError",
    "AlreadyRunningError",
    "Position",
    "Presence",
    "PresenceEntry",
    "PresenceStats",
    "PresenceUnsupported",
    "ProtocolError",
    "RegistrationError",
    "Reject",
    "Request",
    "Response",
    "RouteInfo",
    "RouteKind",
    "SlowConsumerPolicy",
    "TopicHistory",
    "WsrouteError",
    "__version__",
    "bearer_auth",
    "make_converter",
]
