"""The client's address behind reverse proxies: ``X-Forwarded-For`` and ``Forwarded``.

uvicorn's names and semantics: the headers are believed only when the direct peer is
one of ``forwarded_allow_ips``; then the client is the right-most address in the
chain that is not itself a trusted proxy (each proxy appends the address it saw, so
everything left of the last untrusted hop may have been written by the client). Two
choices of ours, where uvicorn has none or another:

- ``X-Forwarded-For`` is read when present, else RFC 7239 ``Forwarded: for=``. The
  proxies people put in front (nginx, Caddy, HAProxy, cloud load balancers) write
  ``X-Forwarded-For``; one that writes only ``Forwarded`` must drop the client's
  ``X-Forwarded-For``.
- A hop that is not an IP address (``unknown``, an obfuscated ``_hidden``, garbage)
  ends the walk and the peer's address is kept: ``request.remote`` is always an
  address, which per-IP caps count. A ``Forwarded`` header that does not parse is
  ignored the same way; bad headers never refuse a connection.

The scheme the client used (``request.scheme``) comes from ``X-Forwarded-Proto``, else
from ``Forwarded: proto=``, of a trusted peer, mapped as uvicorn maps it for a
WebSocket (``https``/``wss`` to ``wss``, ``http``/``ws`` to ``ws``, any case). Where a
proxy appended to a list (``https, http``) the right-most item counts, the one the
trusted peer wrote; an item that is none of the four keeps the listener's own scheme.

Pure: strings in, an address and a scheme out.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from typing import Final

import attrs

Address = tuple[str, int]
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: uvicorn's default: only a proxy on the same host is believed.
DEFAULT_FORWARDED_ALLOW_IPS: Final = "127.0.0.1"


def _networks(value: str | Iterable[str]) -> tuple[bool, frozenset[str], tuple[_Network, ...]]:
    items = value.split(",") if isinstance(value, str) else list(value)
    everyone = False
    hosts: set[str] = set()
    networks: list[_Network] = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(
                f"App option forwarded_allow_ips lists {item!r}, which is not a string: write"
                ' IP addresses and networks such as "10.0.0.0/8"'
            )
        text = item.strip()
        if not text:
            continue
        if text == "*":
            everyone = True
            continue
        try:
            if "/" in text:
                networks.append(ipaddress.ip_network(text, strict=False))
            else:
                hosts.add(str(ipaddress.ip_address(text)))
        except ValueError:
            raise ValueError(
                f"App option forwarded_allow_ips lists {text!r}, which is not an IP address or"
                ' network: write e.g. "127.0.0.1,10.0.0.0/8", or "*" to trust every peer'
            ) from None
    return everyone, frozenset(hosts), tuple(networks)


@attrs.frozen
class TrustedProxies:
    """The peers whose forwarding headers are believed (``forwarded_allow_ips``).

    Built from ``"127.0.0.1,10.0.0.0/8"`` or a list of such items; ``"*"`` trusts
    every peer (only where nothing but the proxy can reach the server).
    """

    everyone: bool
    hosts: frozenset[str]
    networks: tuple[_Network, ...]

    @classmethod
    def parse(cls, value: str | Iterable[str]) -> TrustedProxies:
        """Raises ValueError naming the item that is not an address or network."""
        if not isinstance(value, str | Iterable):
            raise ValueError(
                "App option forwarded_allow_ips must be a comma-separated string or a list of"
                f' IP addresses and networks, such as "127.0.0.1,10.0.0.0/8"; not {value!r}'
            )
        return cls(*_networks(value))

    def __contains__(self, host: object) -> bool:
        if self.everyone or host in self.hosts:
            return True
        if not isinstance(host, str) or not (self.networks or self.hosts):
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        # An IPv4 client of a dual-stack listener shows up as ::ffff:a.b.c.d.
        mapped = getattr(address, "ipv4_mapped", None)
        candidates = (address, mapped) if mapped is not None else (address,)
        return any(
            str(candidate) in self.hosts or any(candidate in net for net in self.networks)
            for candidate in candidates
        )

    @property
    def items(self) -> tuple[str, ...]:
        """Normalised: ``("*",)``, or addresses then networks, each as a string."""
        if self.everyone:
            return ("*",)
        return (*sorted(self.hosts), *(str(net) for net in self.networks))

    def __str__(self) -> str:
        return ",".join(self.items)


#: What a forwarded scheme means on a WebSocket connection (uvicorn's mapping).
_SCHEMES: Final = {"http": "ws", "ws": "ws", "https": "wss", "wss": "wss"}


def client_address(
    peer: Address | None,
    headers: Sequence[tuple[bytes, bytes]],
    trusted: TrustedProxies,
) -> Address | None:
    """The client's address: from the forwarding headers when ``peer`` is trusted,
    else ``peer`` itself. ``headers`` are the request's, names in lower case."""
    return resolve(peer, headers, trusted, "ws")[0]


def resolve(
    peer: Address | None,
    headers: Sequence[tuple[bytes, bytes]],
    trusted: TrustedProxies,
    scheme: str,
) -> tuple[Address | None, str]:
    """The client's address and scheme (``"ws"`` or ``"wss"``): from the forwarding
    headers when ``peer`` is trusted, else ``peer`` and the listener's ``scheme``.
    ``headers`` are the request's, names in lower case; one walk finds all of them."""
    if peer is None or peer[0] not in trusted:
        return peer, scheme
    forwarded_for: list[bytes] = []
    forwarded: list[bytes] = []
    proto: bytes | None = None
    for name, value in headers:
        if name == b"x-forwarded-for":
            forwarded_for.append(value)
        elif name == b"forwarded":
            forwarded.append(value)
        elif name == b"x-forwarded-proto":
            proto = value  # the last one: a proxy that adds a header adds it last
    elements = (
        parse_forwarded_elements(b",".join(forwarded).decode("latin-1")) if forwarded else None
    )
    if proto is not None:
        scheme = forwarded_scheme(proto.decode("latin-1").rsplit(",", 1)[-1], scheme)
    elif elements:
        protos = [element["proto"] for element in elements if "proto" in element]
        if protos:
            scheme = forwarded_scheme(protos[-1], scheme)
    hops: list[Address | None] | None
    if forwarded_for:
        hops = parse_x_forwarded_for(b",".join(forwarded_for).decode("latin-1"))
    elif elements is not None:
        hops = [_element_for(element) for element in elements]
    else:
        hops = None
    if not hops:  # none, malformed, or empty
        return peer, scheme
    return _pick(hops, trusted) or peer, scheme


def forwarded_scheme(value: str, scheme: str) -> str:
    """The WebSocket scheme a forwarded ``proto`` names (``https`` → ``wss``), or
    ``scheme`` when it names none of ``http``, ``https``, ``ws``, ``wss``."""
    return _SCHEMES.get(value.strip().lower(), scheme)


def _pick(hops: Sequence[Address | None], trusted: TrustedProxies) -> Address | None:
    """The right-most hop that is not a trusted proxy; the left-most when all are
    (the client is itself a trusted host); ``None`` at a hop without an address."""
    for hop in reversed(hops):
        if hop is None:
            return None
        if hop[0] not in trusted:
            return hop
    return hops[0]


def parse_x_forwarded_for(value: str) -> list[Address | None]:
    """Each hop of ``X-Forwarded-For: client, proxy1, proxy2``, oldest first: an
    address (port 0 when none is given), or ``None`` for one that is not an IP."""
    return [_node(item.strip()) for item in value.split(",") if item.strip()]


_TOKEN: Final = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_PAIR: Final = re.compile(
    rf'[ \t]*({_TOKEN})=(?:({_TOKEN})|"((?:[^"\\]|\\.)*)")[ \t]*(?P<sep>[;,]|\Z)', re.DOTALL
)
_ESCAPE: Final = re.compile(r"\\(.)", re.DOTALL)


def parse_forwarded(value: str) -> list[Address | None] | None:
    """Each element's ``for=`` of an RFC 7239 ``Forwarded`` header, oldest first: an
    address, or ``None`` where ``for`` is missing or not an IP (``unknown``,
    ``_hidden``). ``None`` for the whole header when it does not parse."""
    elements = parse_forwarded_elements(value)
    return None if elements is None else [_element_for(element) for element in elements]


def parse_forwarded_elements(value: str) -> list[dict[str, str]] | None:
    """The elements of an RFC 7239 ``Forwarded`` header, oldest first, each as its
    parameters (names in lower case, quotes undone); ``None`` when it does not parse."""
    elements: list[dict[str, str]] = []
    element: dict[str, str] = {}
    position, end = 0, len(value)
    while position < end:
        # Empty elements and pairs (", ,", ";;") are allowed by the grammar.
        if value[position] in " \t,;":
            if value[position] == "," and element:
                elements.append(element)
                element = {}
            position += 1
            continue
        match = _PAIR.match(value, position)
        if match is None:
            return None
        name = match[1].lower()
        if name in element:  # RFC 7239: a parameter occurs at most once per element
            return None
        quoted = match[3]
        element[name] = match[2] if quoted is None else _ESCAPE.sub(r"\1", quoted)
        position = match.end()
        if match["sep"] == ",":
            elements.append(element)
            element = {}
    if element:
        elements.append(element)
    return elements


def _element_for(element: dict[str, str]) -> Address | None:
    node = element.get("for")
    return None if node is None else _node(node)


def _node(text: str) -> Address | None:
    """``1.2.3.4``, ``1.2.3.4:80``, ``2001:db8::1``, ``[2001:db8::1]:80`` as an
    address; anything else (``unknown``, ``_hidden``, garbage) as ``None``."""
    host, port = text, ""
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return None
        port = rest[1:]
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if text.startswith("[") and address.version != 6:
        return None
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # an IPv4 client of a dual-stack proxy
    # An obfuscated port (``_abc``) or none at all: 0, as uvicorn reports.
    digits = port.isascii() and port.isdigit() and len(port) <= 5
    number = int(port) if digits and int(port) <= 65535 else 0
    return (str(address), number)


def format_address(address: Address | None) -> str | None:
    """``host:port`` (``[host]:port`` for IPv6), for logs; ``None`` when unknown."""
    if address is None:
        return None
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
