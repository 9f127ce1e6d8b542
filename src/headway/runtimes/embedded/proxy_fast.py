"""The proxy's data plane: HTTP/1.1 relayed between asyncio Protocols, without per-request client objects.

Profiling an aiohttp data plane (an aiohttp server handing each request to an aiohttp client session) showed
most of its time in building and tearing down request/response objects on both sides; this engine gave about
four times its throughput on two cores (``bench/proxy.py``), so it is the only one. It parses what routing and
framing need (request line, header fields, body framing: `proxy_http`, strictly), rewrites the header block
once, and relays body bytes as they arrive, keeping chunked framing as it is (re-encoding identically is allowed
for a proxy).

Per request the hot path costs two recv and two send calls (TCP_NODELAY is set by asyncio on every TCP
transport), one pass over each header block (`Head`), no timer (`FastDataPlane.sweep`), and no task: upstream
keep-alive connections come from a per-backend pool synchronously.

Scope, on purpose: HTTP/1.1 and 1.0 over plain TCP; requests framed by Content-Length or chunked; responses
framed by Content-Length, chunked, or the connection's end; no-body responses (HEAD, 1xx, 204, 304); interim 1xx
responses relayed; pipelined requests answered in order; ``Upgrade`` is stripped like any hop-by-hop header.
Backpressure goes both ways through pause/resume reading. A request that is not exactly valid HTTP/1.1 is
answered 400 (431, 501) and its connection closed; an invalid response is a 502.

Hostile clients are bounded: a head must arrive whole within ``head_timeout`` of its first byte (or of the
connection's start) and fit in `MAX_HEAD`; a keep-alive connection idle for ``idle_timeout`` is closed; at most
``max_connections`` client connections are open (past it, a new one replaces the longest-idle keep-alive
connection, or is answered 503 with ``Retry-After`` and closed). All timeouts are checked by one periodic sweep,
never a timer per connection.

Failover: a refused or timed-out connect is retried once on another ready backend of the revision, else of
stable; a connection closed before any answer (a stale pooled one, or a backend that died with the request in
hand) is retried once the same way for bodiless idempotent requests, as nginx's ``proxy_next_upstream error``
does: resending a GET is safe, and a replica killed mid-request then costs no client an error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol, TypeVar, cast

from multidict import CIMultiDict

from headway.runtimes.embedded.proxy_balancing import BackendSlot, Pool, RoutingTable
from headway.runtimes.embedded.proxy_counters import Counters
from headway.runtimes.embedded.proxy_http import (
    BAD_GATEWAY,
    BAD_REQUEST,
    MAX_HEAD,
    NO_BACKEND,
    OVER_CAPACITY,
    REFUSALS,
    TIMED_OUT_HEAD,
    TIMEOUT,
    BodyFraming,
    Head,
    ProtocolError,
    incomplete_head_error,
    origin_form,
    routing_view,
)


class PlaneHost(Protocol):
    """What the data plane needs of the proxy that owns it: the routing table in force (replaced whole on every
    change, so it is read afresh per request), the per-revision counters, and the mirror that sends a copy of a
    request off the hot path. The proxy (`headway.runtimes.embedded.proxy.Proxy`) is one; this module never
    imports it."""

    table: RoutingTable
    counters: Counters

    def mirror(self, slot: BackendSlot, method: str, path: str, headers: CIMultiDict[str], body: Any) -> None: ...


CONNECT_TIMEOUT = 2.0
RESPONSE_TIMEOUT = 300.0
"""Seconds a backend may take to start answering before the client gets a 504."""
HEAD_TIMEOUT = 10.0
"""Seconds a client has to send a whole request head, from its first byte (or from connecting)."""
IDLE_TIMEOUT = 60.0
"""Seconds a keep-alive client connection may stay idle between requests before it is closed."""
MAX_CONNECTIONS = 10_000
"""Client connections open at once, by default (lowered to what the open-file limit allows)."""
IDLE_POOL = 64
"""Idle keep-alive connections kept per backend."""

IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS"})
NO_BODY_STATUS = frozenset({204, 304})
_NO_HEADERS: dict[str, str] = {}
"""The routing view when no route looks at headers: the weighted split does not."""


class Downstream(asyncio.Protocol):
    """One client connection: parses requests, hands each to an `Exchange`, answers in order.

    Between requests it waits in one of the plane's two queues: `FastDataPlane.heads` while a head is due (from
    the connection's start, or from the first byte after an idle spell) and `FastDataPlane.idle_clients` while
    it is an idle keep-alive connection. An incomplete head is gathered in a ``bytearray`` and scanned only from
    where the last read ended, so a head trickling in byte by byte costs linear, not quadratic, time.
    """

    __slots__ = ("buffer", "closed", "exchange", "lingering", "peer", "plane", "scanned", "since", "transport")

    def __init__(self, plane: FastDataPlane) -> None:
        self.plane = plane
        self.buffer: bytes | bytearray = b""
        self.scanned = 0
        """How much of an incomplete head in `buffer` is already checked."""
        self.since = 0.0
        """When this connection entered the queue it waits in (loop time)."""
        self.transport: asyncio.Transport | None = None
        self.exchange: Exchange | None = None
        self.closed = False
        self.lingering = False
        """Refused and half-closed: what the client still sends is read and dropped (see `refuse`)."""
        self.peer: bytes = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio subclasses
        plane = self.plane
        if not plane.admit():
            self.closed = True
            self.transport.write(OVER_CAPACITY)
            self.transport.close()
            return
        peer = transport.get_extra_info("peername")
        self.peer = peer[0].encode() if peer else b""
        plane.connections.add(self)
        self.since = plane.loop.time()
        plane.heads[self] = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        plane = self.plane
        plane.connections.discard(self)
        plane.heads.pop(self, None)
        plane.idle_clients.pop(self, None)
        if self.exchange is not None:
            self.exchange.client_gone()

    def pause_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.pause_upstream(True)

    def resume_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.pause_upstream(False)

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            return
        exchange = self.exchange
        if exchange is not None and not exchange.request_done:
            used = exchange.request_body(data)
            data = data[used:]
            if not data or self.closed:
                return
        buffer = self.buffer
        if not buffer:
            self.buffer = data
        elif isinstance(buffer, bytearray):
            buffer += data
        else:
            self.buffer = bytearray(buffer) + data
        if self.exchange is None:
            self.next_request()
        elif len(self.buffer) > MAX_HEAD:
            assert self.transport is not None  # noqa: S101 - an invariant for the type checker, not a check of input
            self.transport.pause_reading()  # pipelined requests wait until the current answer is sent

    def next_request(self) -> None:
        transport = self.transport
        assert transport is not None  # noqa: S101 - an invariant for the type checker, not a check of input
        buffer = self.buffer
        plane = self.plane
        if self.closed or transport.is_closing() or (plane.stopping and not buffer):
            return
        if buffer[:1] == b"\r":
            if not self.skip_empty_lines():
                return
            buffer = self.buffer
        scanned = self.scanned
        end = buffer.find(b"\r\n\r\n", scanned - 3 if scanned > 3 else 0)
        if end < 0:
            self.incomplete_head()
            return
        if end > MAX_HEAD:
            self.refuse(REFUSALS[431])
            return
        if isinstance(buffer, bytearray):
            block, rest = bytes(buffer[:end]), bytes(buffer[end + 4 :])
        else:
            block, rest = buffer[:end], buffer[end + 4 :]
        self.buffer, self.scanned = b"", 0
        plane.heads.pop(self, None)
        plane.idle_clients.pop(self, None)
        try:
            head = Head(block)
        except ProtocolError as error:
            self.refuse(REFUSALS[error.status])
            return
        connection = head.connection
        keep_alive = b"close" not in connection if head.version == b"HTTP/1.1" else b"keep-alive" in connection
        exchange = Exchange(self, block=block, head=head, keep_alive=keep_alive)
        self.exchange = exchange
        if exchange.route():
            if rest and not exchange.request_done:
                # body bytes that came with the head go out in the same send as the head
                used = exchange.request_body(rest)
                rest = rest[used:]
            if not transport.is_closing():
                exchange.dispatch()
        if rest and not self.closed:
            self.data_received(rest)

    def skip_empty_lines(self) -> bool:
        """Drop empty lines before a request line (RFC 9112 §2.2), exactly CRLF pairs; False if refused."""
        buffer = self.buffer
        stripped = buffer.lstrip(b"\r\n")
        skip = len(buffer) - len(stripped)
        skip -= skip % 2
        if buffer[:skip] != b"\r\n" * (skip // 2):
            self.refuse(BAD_REQUEST)
            return False
        self.buffer, self.scanned = buffer[skip:], max(0, self.scanned - skip)
        return True

    def incomplete_head(self) -> None:
        """More of the head is due: refuse what is already wrong, else wait (in `FastDataPlane.heads`)."""
        buffer = self.buffer
        error = incomplete_head_error(buffer, self.scanned)
        if error is not None:
            self.refuse(REFUSALS[error.status])
            return
        self.scanned = len(buffer)
        if isinstance(buffer, bytes):
            self.buffer = bytearray(buffer)  # later reads extend it in place
        plane = self.plane
        if self not in plane.heads:
            plane.idle_clients.pop(self, None)
            self.since = plane.loop.time()
            plane.heads[self] = None

    def finished(self, keep_alive: bool) -> None:
        """The exchange answered: read the next request, or close."""
        self.exchange = None
        transport = self.transport
        assert transport is not None  # noqa: S101 - an invariant for the type checker, not a check of input
        if not keep_alive or self.closed:
            transport.close()
            return
        transport.resume_reading()
        plane = self.plane
        if self.buffer:
            self.next_request()
        elif plane.stopping:
            transport.close()
        else:
            self.since = plane.loop.time()
            plane.idle_clients[self] = None

    def timed_out(self) -> None:
        """Called by `FastDataPlane.sweep`: a head not received in time (408 if it had begun), or idle too long."""
        if self.transport is None or self.closed:
            return
        if self.buffer and not self.lingering:
            self.refuse(TIMED_OUT_HEAD)
        else:
            self.close()

    def close(self) -> None:
        self.closed = True
        plane = self.plane
        plane.connections.discard(self)
        plane.heads.pop(self, None)
        plane.idle_clients.pop(self, None)
        if self.transport is not None:
            self.transport.close()

    def refuse(self, response: bytes) -> None:
        """Answer ``response`` and close: after a malformed message, where the next one starts is unknowable.

        Closing a socket with unread input makes the kernel send a reset, which can destroy the answer before
        the client reads it. So between requests the connection is only half-closed and what still arrives is
        dropped until the client closes (as it does once answered) or the head timeout ends it (a lingering
        close, as nginx does). During an exchange the answer is cut short anyway: close at once.
        """
        transport = self.transport
        assert transport is not None  # noqa: S101 - an invariant for the type checker, not a check of input
        transport.write(response)
        if self.exchange is not None or self.lingering or not transport.can_write_eof():
            self.close()
            return
        transport.write_eof()
        self.lingering = True
        self.buffer = b""
        plane = self.plane
        plane.idle_clients.pop(self, None)
        plane.heads.pop(self, None)
        self.since = plane.loop.time()
        plane.heads[self] = None


class Exchange:
    """One request and its answer: picks a backend, relays both ways, counts, releases the connection."""

    __slots__ = (
        "attempts",
        "block",
        "body",
        "chunked",
        "client",
        "got_response",
        "head",
        "keep_alive",
        "length",
        "method",
        "mirror",
        "mirror_body",
        "pending",
        "pool",
        "request_done",
        "slot",
        "started",
        "status",
        "target",
        "unsent",
        "upstream",
    )

    def __init__(self, client: Downstream, *, block: bytes, head: Head, keep_alive: bool) -> None:
        self.client = client
        self.method = head.method
        self.target = head.target
        self.block = block
        self.length = head.length
        self.chunked = head.chunked
        self.keep_alive = keep_alive
        self.body: BodyFraming | None = None  # a bodiless request (most) needs no framing state
        if head.chunked or head.length:
            self.body = BodyFraming(head.length, head.chunked)
        self.request_done = self.body is None
        self.pending: list[bytes] = []
        self.upstream: Upstream | None = None
        self.pool: Pool | None = None
        self.slot: BackendSlot | None = None
        self.status = 502
        self.got_response = False
        self.attempts = 0
        self.started = 0.0
        self.mirror: BackendSlot | None = None
        self.mirror_body: list[bytes] | None = None
        self.head = self.upstream_head(head)
        self.unsent = b""

    # --- request side ------------------------------------------------------------------------------------

    def route(self) -> bool:
        """Pick the revision and backend (and a mirror); False if none could serve (answered with a 503)."""
        plane = self.client.plane
        table = plane.proxy.table
        routed = bool(table.header_routes) or bool(table.mirrors)
        view = routing_view(self.block) if routed else _NO_HEADERS
        pool = table.choose(view)
        slot = pool.pick() if pool is not None else None
        if pool is None or slot is None:
            self.answer_locally(NO_BACKEND, count=False)
            return False
        self.pool, self.slot = pool, slot
        target = origin_form(self.target) if table.mirrors else b""
        if target:  # a mirror route may apply (never to ``OPTIONS *``: it has no path to copy to)
            path = target.split(b"?", 1)[0].decode("latin-1")
            mirror = table.mirror_target(self.method.decode("latin-1"), path, view)
            if mirror is not None and not self.chunked and (self.length or 0) <= plane.mirror_body_limit:
                self.mirror, self.mirror_body = mirror, []
        self.started = plane.loop.time()
        slot.inflight += 1
        self.attempts = 1
        plane.waiting[self] = None
        return True

    def dispatch(self) -> None:
        """Send the request to the picked backend (a pooled connection, else a new one)."""
        self.client.plane.connect(self, self.slot)  # type: ignore[arg-type]
        if self.request_done:
            self.send_mirror()

    def upstream_head(self, head: Head) -> bytes:
        # An HTTP/1.0 client cannot read chunked answers: asking the backend in 1.0 makes it not send them.
        lines = [head.start, *head.lines]
        if head.chunked:
            lines.append(b"Transfer-Encoding: chunked")
        peer = self.client.peer
        forwarded_for = head.forwarded_for
        lines.append(b"X-Forwarded-For: " + (forwarded_for + b", " + peer if forwarded_for else peer))
        lines.append(b"X-Forwarded-Proto: http")
        lines.append(b"X-Forwarded-Host: " + head.host)
        lines.append(b"\r\n")
        return b"\r\n".join(lines)

    def request_body(self, data: bytes) -> int:
        """Relay request body bytes (or hold them until connected); returns how many belonged to the body."""
        body = self.body
        assert body is not None  # noqa: S101 - an invariant for the type checker, not a check of input
        try:
            used = body.take(data)
        except ProtocolError as error:
            self.client.refuse(REFUSALS[error.status])
            return len(data)
        piece = data[:used] if used < len(data) else data
        if piece:
            if self.mirror_body is not None:
                self.mirror_body.append(piece)
            upstream = self.upstream
            if upstream is not None and upstream.transport is not None:
                upstream.transport.write(piece)
            else:
                self.pending.append(piece)
                if sum(map(len, self.pending)) > MAX_HEAD and self.client.transport is not None:
                    self.client.transport.pause_reading()  # not connected yet: stop reading the body
        if body.done:
            self.request_done = True
            self.send_mirror()
        return used

    def send_mirror(self) -> None:
        if self.mirror is None:
            return
        body = b"".join(self.mirror_body or []) if self.length else None
        headers: CIMultiDict[str] = CIMultiDict()
        for line in self.head.split(b"\r\n")[1:]:
            if line:
                name, _, value = line.partition(b":")
                headers.add(name.decode("latin-1"), value.strip().decode("latin-1"))
        self.client.plane.proxy.mirror(
            self.mirror, self.method.decode("latin-1"), origin_form(self.target).decode("latin-1"), headers, body
        )
        self.mirror = None

    # --- upstream events ---------------------------------------------------------------------------------

    def connected(self, upstream: Upstream) -> None:
        if self.client.closed:
            upstream.close()
            self.finish(499, keep_alive=False)
            return
        self.upstream = upstream
        upstream.exchange = self
        assert upstream.transport is not None  # noqa: S101 - an invariant for the type checker, not a check of input
        if self.pending:  # head and the body read so far in one send
            upstream.transport.write(b"".join([self.head, *self.pending]))
            self.pending.clear()
            if self.client.transport is not None:
                self.client.transport.resume_reading()
        else:
            upstream.transport.write(self.head)

    def connect_failed(self, slot: BackendSlot) -> None:
        """Nothing was sent: try once more on another backend."""
        slot.failures += 1
        self.retry(slot)

    def upstream_lost_before_answer(self, upstream: Upstream) -> None:
        """A connection closed before any answer (stale in the pool, or the backend died): retried if resending is
        safe, whether the connection was pooled or fresh (a fresh one's backend may equally have died)."""
        slot = upstream.slot
        slot.failures += 1
        safe = self.length is None and not self.chunked and self.method in IDEMPOTENT
        if safe:
            self.upstream = None
            self.retry(slot)
        else:
            self.answer_locally(BAD_GATEWAY)

    def retry(self, failed: BackendSlot) -> None:
        plane = self.client.plane
        assert self.pool is not None  # noqa: S101 - an invariant for the type checker, not a check of input
        table: RoutingTable = plane.proxy.table
        other = table.failover(self.pool, failed) if self.attempts == 1 else None
        if other is None:
            self.answer_locally(BAD_GATEWAY)
            return
        if other not in self.pool.slots and table.stable is not None:
            self.pool = table.stable
        failed.inflight -= 1
        other.inflight += 1
        self.slot = other
        self.attempts += 1
        plane.connect(self, other)

    def response_head(self, status: int, head: bytes) -> None:
        """Hold the head until the first body bytes or the end of this read: one send instead of two."""
        self.got_response = True
        self.status = status
        self.client.plane.waiting.pop(self, None)
        self.unsent = head

    def response_data(self, data: bytes) -> None:
        if self.unsent:
            data, self.unsent = self.unsent + data, b""
        if not self.client.closed:
            assert self.client.transport is not None  # noqa: S101 - an invariant for the type checker, not a check of input
            self.client.transport.write(data)

    def flush(self) -> None:
        if self.unsent:
            self.response_data(b"")

    def response_done(self, upstream_reusable: bool) -> None:
        self.flush()
        upstream = self.upstream
        self.upstream = None
        if upstream is not None:
            upstream.exchange = None
            if upstream_reusable and self.request_done:
                self.client.plane.release(upstream)
            else:
                upstream.close()
        # a backend may answer before the whole body arrived: the rest cannot be told from a next request
        self.finish(self.status, keep_alive=self.keep_alive and self.request_done)

    def pause_upstream(self, paused: bool) -> None:
        upstream = self.upstream
        if upstream is not None and upstream.transport is not None:
            if paused:
                upstream.transport.pause_reading()
            else:
                upstream.transport.resume_reading()

    def client_gone(self) -> None:
        upstream = self.upstream
        self.upstream = None
        self.pending.clear()
        if upstream is not None:
            upstream.exchange = None
            upstream.close()
        self.finish(self.status if self.got_response else 499, keep_alive=False)

    def timed_out(self) -> None:
        """No response head within the plane's head timeout: a 504 (called by `FastDataPlane.sweep`)."""
        upstream = self.upstream
        self.upstream = None
        if upstream is not None:
            upstream.exchange = None
            upstream.close()
        self.status = 504
        self.answer_locally(TIMEOUT)

    # --- endings -----------------------------------------------------------------------------------------

    def answer_locally(self, response: bytes, *, count: bool = True) -> None:
        if self.got_response:  # the answer already started: all we can do is cut the connection
            self.finish(self.status, keep_alive=False)
            return
        if not self.client.closed:
            assert self.client.transport is not None  # noqa: S101 - an invariant for the type checker, not a check of input
            self.client.transport.write(response)
        status = int(response[9:12])
        if count:
            self.finish(status, keep_alive=self.keep_alive and self.request_done)
        else:
            self.client.finished(self.keep_alive and self.request_done)

    def finish(self, status: int, *, keep_alive: bool) -> None:
        slot, self.slot = self.slot, None
        if slot is None:
            return
        plane = self.client.plane
        plane.waiting.pop(self, None)
        slot.inflight -= 1
        assert self.pool is not None  # noqa: S101 - an invariant for the type checker, not a check of input
        plane.proxy.counters.of(self.pool.revision).observe(status, plane.loop.time() - self.started)
        self.client.finished(keep_alive)


class Upstream(asyncio.Protocol):
    """One connection to a backend: parses responses and relays them to the exchange it serves."""

    def __init__(self, slot: BackendSlot) -> None:
        self.slot = slot
        self.transport: asyncio.Transport | None = None
        self.exchange: Exchange | None = None
        self.buffer = b""
        self.body: BodyFraming | None = None
        self.reusable = True
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio subclasses

    def pause_writing(self) -> None:
        exchange = self.exchange
        if exchange is not None and exchange.client.transport is not None:
            exchange.client.transport.pause_reading()

    def resume_writing(self) -> None:
        exchange = self.exchange
        if exchange is not None and exchange.client.transport is not None:
            exchange.client.transport.resume_reading()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        exchange = self.exchange
        self.exchange = None
        if exchange is None:
            return
        if not exchange.got_response:
            exchange.upstream = None
            exchange.upstream_lost_before_answer(self)
        elif self.body is not None and self.body.until_close:
            exchange.response_done(upstream_reusable=False)
        else:
            exchange.answer_locally(BAD_GATEWAY)  # cut mid-answer: the client sees the connection close

    def data_received(self, data: bytes) -> None:
        exchange = self.exchange
        if exchange is None:
            self.close()  # bytes nobody asked for: this connection cannot be trusted any more
            return
        if self.body is not None:
            self.relay(exchange, data)
            return
        self.buffer += data
        while self.body is None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0 and incomplete_head_error(self.buffer, 0) is None:
                return
            block, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
            try:
                if end < 0 or end > MAX_HEAD:
                    raise ProtocolError("a response head too large or with a bare CR or LF")
                self.begin_response(exchange, block)
            except (ProtocolError, ValueError):
                self.reusable = False
                self.exchange = None
                self.close()
                exchange.answer_locally(BAD_GATEWAY)
                return
            if self.exchange is None:
                return
        rest, self.buffer = self.buffer, b""
        if rest or self.body.done:
            self.relay(exchange, rest)
        if self.exchange is exchange:
            exchange.flush()  # a head whose body has not arrived yet goes out now (streaming answers)

    def begin_response(self, exchange: Exchange, block: bytes) -> None:
        head = Head(block, request=False)
        start = head.start
        version, _, rest = start.partition(b" ")
        status = int(rest[:3])
        length, chunked, connection = head.length, head.chunked, head.connection
        if 100 <= status < 200:
            if status != 101:
                exchange.response_data(block + b"\r\n\r\n")  # interim answers (100 Continue, 103) pass through
            return
        if version != b"HTTP/1.1" or b"close" in connection:
            self.reusable = False
        no_body = exchange.method == b"HEAD" or status in NO_BODY_STATUS
        if no_body:
            self.body = BodyFraming(0, False)
        elif chunked:
            self.body = BodyFraming(None, True)
        elif length is not None:
            self.body = BodyFraming(length, False)
        else:
            self.body = BodyFraming(None, False, until_close=True)
            self.reusable = False
        keep_client = exchange.keep_alive and not self.body.until_close
        exchange.keep_alive = keep_client
        lines = [start, *head.lines]
        if chunked and not no_body:
            lines.append(b"Transfer-Encoding: chunked")
        if not keep_client:
            lines.append(b"Connection: close")
        lines.append(b"\r\n")
        exchange.response_head(status, b"\r\n".join(lines))

    def relay(self, exchange: Exchange, data: bytes) -> None:
        body = self.body
        assert body is not None  # noqa: S101 - an invariant for the type checker, not a check of input
        try:
            used = body.take(data)
        except ProtocolError:
            self.reusable = False
            self.exchange = None
            self.close()
            exchange.answer_locally(BAD_GATEWAY)
            return
        if used:
            exchange.response_data(data[:used] if used < len(data) else data)
        if body.done:
            if used < len(data):
                self.reusable = False  # the backend sent more than it announced
            self.body = None
            self.exchange = None
            exchange.response_done(upstream_reusable=self.reusable and not self.closed)


class FastDataPlane:
    """The listening side: accepts clients (up to a cap), times out heads and idle ones, pools backend connections."""

    def __init__(
        self,
        proxy: PlaneHost,
        *,
        connect_timeout: float = CONNECT_TIMEOUT,
        response_timeout: float = RESPONSE_TIMEOUT,
        head_timeout: float = HEAD_TIMEOUT,
        idle_timeout: float = IDLE_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
        mirror_body_limit: int,
    ) -> None:
        self.proxy = proxy
        self.loop = asyncio.get_running_loop()
        self.connect_timeout = connect_timeout
        self.response_timeout = response_timeout
        self.head_timeout = head_timeout
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.mirror_body_limit = mirror_body_limit
        self.idle: dict[str, list[Upstream]] = {}
        self.connections: set[Downstream] = set()
        self.waiting: dict[Exchange, None] = {}
        """Exchanges awaiting a response head, oldest first (insertion order), for `sweep`."""
        self.heads: dict[Downstream, None] = {}
        """Client connections owing a request head, oldest first."""
        self.idle_clients: dict[Downstream, None] = {}
        """Idle keep-alive client connections, longest idle first."""
        self.over_capacity = 0
        """Connections answered 503 because `max_connections` were open and none was idle."""
        self.stopping = False
        self.server: asyncio.Server | None = None
        self._sweeper: asyncio.TimerHandle | None = None

    async def start(self, host: str, port: int) -> asyncio.Server:
        factory: Callable[[], Downstream] = lambda: Downstream(self)  # noqa: E731
        self.server = await self.loop.create_server(factory, host, port, reuse_address=True, backlog=1024)
        self._sweeper = self.loop.call_later(self.sweep_interval, self.sweep)
        return self.server

    @property
    def sweep_interval(self) -> float:
        return min(1.0, self.response_timeout / 4, self.head_timeout / 4, self.idle_timeout / 4)

    def admit(self) -> bool:
        """Room for one more client? Past the cap the longest-idle keep-alive connection makes room, if any."""
        if len(self.connections) < self.max_connections:
            return True
        oldest = next(iter(self.idle_clients), None)
        if oldest is not None:
            oldest.close()
            return True
        self.over_capacity += 1
        return False

    def sweep(self) -> None:
        """Answer 504 to exchanges past the response timeout; close heads and idle clients past theirs.

        One periodic sweep instead of a timer per request or connection: arming and cancelling a `call_later`
        handle cost about 5% of the proxy's CPU per request. A timeout fires up to `sweep_interval` late. Each
        queue is in start order and shares one timeout, so the sweep stops at the first entry still in time.
        """
        self._sweeper = self.loop.call_later(self.sweep_interval, self.sweep)
        now = self.loop.time()
        for exchange in _overdue(self.waiting, now - self.response_timeout, _exchange_since):
            del self.waiting[exchange]
            exchange.timed_out()
        for queue, timeout in ((self.heads, self.head_timeout), (self.idle_clients, self.idle_timeout)):
            for client in _overdue(queue, now - timeout, _client_since):
                queue.pop(client, None)
                client.timed_out()

    def connect(self, exchange: Exchange, slot: BackendSlot) -> None:
        idle = self.idle.get(slot.address)
        while idle:
            upstream = idle.pop()
            if not upstream.closed and upstream.transport is not None and not upstream.transport.is_closing():
                exchange.connected(upstream)
                return
        task = self.loop.create_task(self._open(exchange, slot))
        task.add_done_callback(_ignore)

    async def _open(self, exchange: Exchange, slot: BackendSlot) -> None:
        host, _, port = slot.address.rpartition(":")
        try:
            _, upstream = await asyncio.wait_for(
                self.loop.create_connection(lambda: Upstream(slot), host, int(port)), self.connect_timeout
            )
        except (OSError, TimeoutError):
            if exchange.slot is slot:
                exchange.connect_failed(slot)
            return
        if exchange.slot is not slot:  # the exchange ended meanwhile (client gone, timeout)
            upstream.close()
            return
        exchange.connected(upstream)

    def release(self, upstream: Upstream) -> None:
        if self.stopping or upstream.slot.draining:
            upstream.close()
            return
        idle = self.idle.setdefault(upstream.slot.address, [])
        if len(idle) >= IDLE_POOL:
            upstream.close()
            return
        idle.append(upstream)

    def stop_accepting(self) -> None:
        self.stopping = True
        if self.server is not None:
            self.server.close()
        for client in list(self.connections):
            if client.exchange is None and not client.buffer:
                client.close()

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for client in list(self.connections):
            client.close()
        for idle in self.idle.values():
            for upstream in idle:
                upstream.close()
        self.idle.clear()


T = TypeVar("T")


def _overdue(queue: dict[T, None], deadline: float, since: Callable[[T], float]) -> list[T]:
    """The entries of an oldest-first queue that started at or before ``deadline``."""
    due = []
    for item in queue:
        if since(item) > deadline:
            break
        due.append(item)
    return due


def _exchange_since(exchange: Exchange) -> float:
    return exchange.started


def _client_since(client: Downstream) -> float:
    return client.since


def _ignore(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()
