"""The guard every local HTTP server of Headway puts in front of its routes: the ``Host`` and ``Origin`` checks.

Our servers (the embedded daemon's API, the dashboard, a proxy's admin API) listen on loopback and answer reads
without a token. Loopback alone does not keep a web page out: through DNS rebinding, a page on
``http://evil.example:3100/`` makes its own name resolve to 127.0.0.1 and then reads our answers as same-origin
responses (the full spec, env values included) or sends requests that no CORS rule stops. What such a request
cannot hide is its ``Host`` header, which names the attacker's domain. So every request must name this server:

- a loopback name (``localhost``, ``127.0.0.1`` or any 127.x address, ``::1``);
- the address the connection arrived on (``--host 0.0.0.0`` reached as ``http://192.168.1.5:3100/``: an IP
  literal cannot be rebound);
- or a name the user configured (``--host devbox.lan``, ``--allow-host``).

Only the host part is compared: a port forward (``ssh -L 9000:127.0.0.1:3100``, ``kubectl port-forward``) changes
the port the browser names but not who is asking. A request without ``Host`` (HTTP/1.0, never a browser) passes.
A wrong ``Host`` gets 421 and a message saying what to use; nothing is served.

State-changing requests (anything but GET/HEAD/OPTIONS) must also not come from another origin: when a browser
sends ``Origin``, its host must pass the same check. Our tokens travel in an ``Authorization`` header, never in a
cookie, so this is a second lock, not the only one.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web
from aiohttp.typedefs import Middleware

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def host_guard(allowed_names: Iterable[str] = ()) -> Middleware:
    """An aiohttp middleware refusing requests whose ``Host`` (or, for a mutation, ``Origin``) is not this server.

    ``allowed_names`` are host names or addresses the user configured besides the loopback ones (``--host``)."""
    extra = frozenset(normalise(name) for name in allowed_names if name)

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        host = request.headers.get("Host")
        if host is not None and not _allowed(host_part(host), request, extra):
            return _refuse(
                421,
                f"Host {host!r} is not an address of this server, so nothing is served: a page on another site "
                "may be reaching it through DNS rebinding. Open it as http://127.0.0.1:PORT/ or "
                "http://localhost:PORT/ (a dashboard served beyond loopback: the --host or --allow-host name).",
            )
        origin = request.headers.get("Origin")
        if request.method not in SAFE_METHODS and origin is not None and not _origin_allowed(origin, request, extra):
            return _refuse(403, f"a request from origin {origin!r} may not change anything here (cross-origin)")
        return await handler(request)

    return guard


def normalise(name: str) -> str:
    """A host name or address as compared: lower case, no trailing dot, IPv6 without brackets."""
    return name.strip().lower().rstrip(".").removeprefix("[").removesuffix("]")


def host_part(header: str) -> str:
    """The host of a ``Host`` header value (``name``, ``name:port``, ``[v6]`` or ``[v6]:port``), normalised."""
    value = header.strip()
    if value.startswith("["):
        return normalise(value.partition("]")[0] + "]")
    if value.count(":") == 1:
        value = value.partition(":")[0]
    return normalise(value)


def _allowed(host: str, request: web.Request, extra: frozenset[str]) -> bool:
    if host in LOOPBACK_NAMES or host in extra:
        return True
    address = _ip(host)
    return address is not None and (address.is_loopback or address == _local_address(request))


def _origin_allowed(origin: str, request: web.Request, extra: frozenset[str]) -> bool:
    parsed = urllib.parse.urlsplit(origin)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return False  # "null" (a sandboxed frame, a file: page) or something that is not a web origin
    return _allowed(normalise(parsed.hostname), request, extra)


def _local_address(request: web.Request) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address the connection arrived on (the server's side of the socket)."""
    transport = request.transport
    sockname = transport.get_extra_info("sockname") if transport is not None else None
    if isinstance(sockname, tuple) and sockname and isinstance(sockname[0], str):
        return _ip(sockname[0])
    return None


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address (an IPv4-mapped IPv6 one as IPv4, a zone dropped), or None for a name."""
    try:
        address = ipaddress.ip_address(normalise(text).split("%")[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _refuse(status: int, message: str) -> web.Response:
    return web.Response(status=status, text=json.dumps({"error": message}), content_type="application/json")


def bearer_matches(header: str, token: str) -> bool:
    """Whether an ``Authorization`` header carries ``Bearer <token>``: compared in constant time, as bytes (aiohttp
    decodes header bytes that are not UTF-8 as surrogates: encoded back as sent, a wrong token, never a 500)."""
    scheme, _, given = header.partition(" ")
    presented = given.strip().encode("utf-8", "surrogateescape")
    return scheme.lower() == "bearer" and bool(token) and hmac.compare_digest(presented, token.encode())
