"""HTTP/1.1 message syntax for the proxy's data plane, parsed strictly (RFC 9112), without decoding bodies.

A proxy that accepts a message its backend reads differently is a request-smuggling hole: if the two disagree
about where one request ends, bytes of a second request ride inside the first. So nothing here is lenient: a
head is accepted only if it is exactly valid, and anything else is a `ProtocolError` carrying the status to
answer (400; 431 for a head too large; 501 for a transfer coding other than chunked) before the connection is
closed. In particular:

- lines end with CRLF; a bare CR or LF anywhere in a head, a chunk line or a trailer is refused, and so is any
  control character (NUL included) other than HTAB inside a field value;
- the request line is ``token SP target SP HTTP/1.x``, the target printable ASCII in origin form (``/...``),
  absolute form (``http://...``) or ``*`` for OPTIONS; CONNECT (a tunnel) is not implemented;
- field names are tokens, so whitespace before the colon and obs-fold continuation lines are refused;
- an HTTP/1.1 request has exactly one ``Host``; ``Content-Length`` is digits only and every copy agrees;
  ``Transfer-Encoding`` must end with ``chunked`` (only chunked is implemented) and never comes with a
  ``Content-Length`` or in an HTTP/1.0 request;
- a chunk size is 1-16 hex digits, chunk extensions follow the grammar, trailers are field lines.

Speed matters (every request and response goes through `Head`), so validation is a few C-level passes over
the whole block: `bytes.translate` turns LF and every forbidden control character into CR, then counting CRs
proves each CR and LF belongs to a CRLF line break. Field names, methods and hosts are checked once each and
remembered (bounded sets of values seen valid), so the usual ones cost a set lookup; the usual request line
(a known method, a path) takes a short path. Regular expressions are used only for the rare chunk lines.
"""

from __future__ import annotations

import re
import string

MAX_HEAD = 64 * 1024
"""Largest accepted header block (request line and fields, without the blank line); beyond it: 431 (or 502)."""
MAX_FIELDS = 256
"""Most field lines accepted in one head (bounds the CPU one head can cost); beyond it: 431."""
MAX_CHUNK_LINE = 4096
"""Longest chunk-size line (size and extensions) or trailer line."""
MAX_TRAILERS = 16 * 1024
"""Largest accepted trailer section of a chunked body."""
MAX_LENGTH_DIGITS = 18
"""Content-Length digits accepted (up to about 10^18 bytes): bounds the number parsed."""

_TCHAR = (string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~").encode()
"""RFC 9110 §5.6.2 token characters: a field name or method is made of these only."""
_HOST_BYTES = (string.ascii_letters + string.digits + "-._~!$&'()*+,;=:[]%").encode()
_OWS = b" \t"


def _flagging(allowed: bytes, flag: int) -> bytes:
    """A `bytes.translate` table keeping ``allowed`` bytes and turning every other into ``flag``."""
    return bytes(byte if byte in allowed else flag for byte in range(256))


_CONTROLS_AS_CR = _flagging(b"\t" + bytes(range(0x20, 0x7F)) + bytes(range(0x80, 0x100)), 0x0D)
"""Maps LF and every control character a head may not contain (all but HTAB) to CR: a valid head then holds
exactly two CRs per CRLF line break, and any stray CR, LF, NUL or other control makes more."""
_NOT_TOKEN_AS_SP = _flagging(_TCHAR, 0x20)
_NOT_HOST_AS_SP = _flagging(_HOST_BYTES, 0x20)
_KNOWN_TOKENS: set[bytes] = set()
"""Field names and methods already found to be tokens: most requests repeat the same few."""
_KNOWN_TOKENS_LIMIT = 4096


_KNOWN_METHODS = frozenset({b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS", b"TRACE"})
_KNOWN_HOSTS: set[bytes] = set()
"""Host values already found valid (bounded like `_KNOWN_TOKENS`)."""


def is_host(value: bytes) -> bool:
    """``uri-host [":" port]`` characters only (RFC 9110 §7.2), possibly empty."""
    if value in _KNOWN_HOSTS:
        return True
    if 0x20 in value.translate(_NOT_HOST_AS_SP):
        return False
    if len(_KNOWN_HOSTS) < _KNOWN_TOKENS_LIMIT:
        _KNOWN_HOSTS.add(value)
    return True


def is_token(text: bytes) -> bool:
    """RFC 9110 token: one or more tchar."""
    if text in _KNOWN_TOKENS:
        return True
    if not text or 0x20 in text.translate(_NOT_TOKEN_AS_SP):
        return False
    if len(_KNOWN_TOKENS) < _KNOWN_TOKENS_LIMIT:
        _KNOWN_TOKENS.add(text)
    return True


class ProtocolError(Exception):
    """The peer sent something that is not valid HTTP/1.1; ``status`` is what a client is answered."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


_CONTENT_LENGTH, _TRANSFER_ENCODING, _CONNECTION, _HOST, _FORWARDED_FOR, _HOP = range(6)
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
"""RFC 9110 §7.6.1 connection-specific fields, never forwarded (nor any field the Connection field names)."""
_SPECIAL = {
    b"content-length": _CONTENT_LENGTH,
    b"transfer-encoding": _TRANSFER_ENCODING,
    b"connection": _CONNECTION,
    b"host": _HOST,
    b"x-forwarded-for": _FORWARDED_FOR,
} | dict.fromkeys(HOP_BY_HOP - {b"connection", b"transfer-encoding"}, _HOP)
_SPECIAL_RESPONSE = {name: kind for name, kind in _SPECIAL.items() if kind not in (_HOST, _FORWARDED_FOR)}
_PLAIN_CONNECTION = frozenset({b"close", b"keep-alive"})
_VERSIONS = (b"HTTP/1.1", b"HTTP/1.0")


def check_lines(block: bytes) -> list[bytes]:
    """The CRLF-separated lines of a head or trailer block, refusing control characters and bare CR or LF."""
    lines = block.split(b"\r\n")
    separators = len(lines) - 1
    if block.translate(_CONTROLS_AS_CR).count(b"\r") != 2 * separators:
        raise ProtocolError("a control character, or a bare CR or LF, in the header block")
    if separators > MAX_FIELDS:
        raise ProtocolError("too many header fields", 431)
    return lines


def check_request_line(line: bytes) -> tuple[bytes, bytes, bytes]:
    """``method SP request-target SP HTTP-version`` (RFC 9112 §3), or a `ProtocolError`."""
    parts = line.split(b" ")
    if len(parts) != 3:
        raise ProtocolError("the request line is not method, target and version separated by single spaces")
    method, target, version = parts
    if (  # the usual case first, in as few steps as it takes: a known method and a path
        version in _VERSIONS
        and method in _KNOWN_METHODS
        and target[:1] == b"/"
        and target.isascii()
        and 9 not in target  # no HTAB; the head holds no other control character (`check_lines`)
    ):
        return method, target, version
    if not is_token(method):
        raise ProtocolError("the method is not a token")
    if version not in _VERSIONS:
        raise ProtocolError("the version is not HTTP/1.1 or HTTP/1.0")
    if not target or not target.isascii() or 9 in target:  # no HTAB, and no other control (`check_lines`)
        raise ProtocolError("the request target is not printable ASCII")
    if method == b"CONNECT":
        raise ProtocolError("CONNECT is not implemented", 501)
    origin = target[0] == 0x2F or target.lower().startswith((b"http://", b"https://"))
    if not origin and (target != b"*" or method != b"OPTIONS"):
        raise ProtocolError("the request target is neither a path, an absolute URI nor * (OPTIONS)")
    return method, target, version


def origin_form(target: bytes) -> bytes:
    """The path and query a request target asks for (RFC 9112 §3.2): itself in origin form, the part after the
    authority in absolute form (``/`` when there is none), empty for ``*``. Path matches and mirror copies use it,
    so an absolute-form request is matched and copied like the same request in origin form."""
    if target[:1] == b"/":
        return target
    _, separator, rest = target.partition(b"://")
    if not separator:
        return b""
    ends = [index for index in (rest.find(b"/"), rest.find(b"?")) if index >= 0]
    tail = rest[min(ends) :] if ends else b""
    return tail if tail[:1] == b"/" else b"/" + tail


class Head:
    """One header block, validated and scanned in a single pass: framing, Connection, the lines worth forwarding.

    Every field line is split once and kept as sent unless it is hop-by-hop or (in a request) ``X-Forwarded-*``,
    which the proxy sets itself; the routing view is left to `routing_view`, built only when a header or mirror
    route needs it. A response (``request=False``) keeps its ``Host`` and ``X-Forwarded-*`` lines.
    """

    __slots__ = (
        "chunked",
        "connection",
        "forwarded_for",
        "host",
        "length",
        "lines",
        "method",
        "start",
        "target",
        "version",
    )

    def __init__(self, block: bytes, *, request: bool = True) -> None:  # noqa: C901 - one branch per kind it dispatches on, kept together on purpose
        lines = block.split(b"\r\n")
        count = len(lines)  # `check_lines`, inlined: the hot path avoids calls where it can
        if block.translate(_CONTROLS_AS_CR).count(b"\r") != 2 * count - 2 or count > MAX_FIELDS + 1:
            check_lines(block)  # raises, saying what is wrong
        self.start = start = lines[0]
        if request:
            self.method, self.target, version = check_request_line(start)
        else:
            version = _check_status_line(start)
            self.method = self.target = b""
        self.version = version
        kept: list[bytes] = []
        length: int | None = None
        codings: list[bytes] = []
        connection: set[bytes] = set()
        hosts = 0
        self.host = self.forwarded_for = b""
        special = _SPECIAL if request else _SPECIAL_RESPONSE
        for index in range(1, len(lines)):
            line = lines[index]
            name, colon, value = line.partition(b":")
            if not colon or (name not in _KNOWN_TOKENS and not is_token(name)):
                raise ProtocolError(f"a field name that is not a token: {line[:40]!r}")
            lower = name.lower()
            kind = special.get(lower)
            if kind is None:
                if not request or not lower.startswith(b"x-forwarded-"):
                    kept.append(line)
                continue
            value = value.strip()  # only SP and HTAB are left to strip once `check_lines` passed
            if kind == _CONTENT_LENGTH:
                if not value.isdigit() or len(value) > MAX_LENGTH_DIGITS:
                    raise ProtocolError("Content-Length is not a number")
                if length is None:
                    length = int(value)
                    kept.append(line)  # repeated equal copies are forwarded as one (RFC 9112 §6.3), like they mean
                elif int(value) != length:
                    raise ProtocolError("Content-Length values disagree")
            elif kind == _TRANSFER_ENCODING:
                codings.extend(coding.strip(_OWS).lower() for coding in value.split(b","))
            elif kind == _CONNECTION:
                connection.update(token.strip(_OWS).lower() for token in value.split(b","))
            elif kind == _HOST:
                hosts += 1
                if value not in _KNOWN_HOSTS and not is_host(value):
                    raise ProtocolError("Host is not a host[:port]")
                self.host = value
                kept.append(line)
            elif kind == _FORWARDED_FOR:
                self.forwarded_for = value
        chunked = bool(codings) and _check_codings(codings, length, version, request)
        if request and (hosts > 1 or (hosts == 0 and version == b"HTTP/1.1")):
            raise ProtocolError("an HTTP/1.1 request needs exactly one Host")
        named = connection - _PLAIN_CONNECTION
        if named:  # Connection may name further hop-by-hop headers (RFC 9110 §7.6.1): rare, so a second pass
            kept = [line for line in kept if line.partition(b":")[0].lower() not in named]
        self.lines = kept
        self.length = length
        self.chunked = chunked
        self.connection = connection


def _check_status_line(line: bytes) -> bytes:
    version, _, rest = line.partition(b" ")
    code = rest[:3]
    if version not in _VERSIONS or not code.isdigit() or len(code) != 3 or rest[3:4] not in (b"", b" "):
        raise ProtocolError(f"a malformed status line {line[:40]!r}")
    return version


def _check_codings(codings: list[bytes], length: int | None, version: bytes, request: bool) -> bool:
    """True for a valid chunked Transfer-Encoding; anything else is a `ProtocolError` (RFC 9112 §6.1, §6.3)."""
    if length is not None:
        raise ProtocolError("both Content-Length and Transfer-Encoding")
    if request and version == b"HTTP/1.0":
        raise ProtocolError("Transfer-Encoding in an HTTP/1.0 request")
    if codings[-1] != b"chunked" or codings.count(b"chunked") > 1 or not all(codings):
        raise ProtocolError("Transfer-Encoding does not end with a single chunked")
    if len(codings) > 1:
        raise ProtocolError("only the chunked transfer coding is implemented", 501)
    return True


def routing_view(block: bytes) -> dict[str, str]:
    """The lower-cased str view of a validated head that header and mirror routes match on (only built for them).

    Repeated fields are joined with ``", "`` as RFC 9110 §5.3 allows.
    """
    view: dict[str, str] = {}
    for line in block.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        key = name.lower().decode("latin-1")
        text = value.strip(_OWS).decode("latin-1")
        view[key] = f"{view[key]}, {text}" if key in view else text
    return view


_TOKEN = rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+"
_QUOTED = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
_CHUNK_LINE = re.compile(
    rb"([0-9A-Fa-f]{1,16})(?:[ \t]*;[ \t]*" + _TOKEN + rb"(?:[ \t]*=[ \t]*(?:" + _TOKEN + b"|" + _QUOTED + rb"))?)*\r"
)
"""A chunk-size line up to its LF (RFC 9112 §7.1.1): hex size, then extensions ``;name[=token|"quoted"]``."""


class ChunkScanner:
    """Finds where a chunked body ends without decoding it (the bytes are relayed as they are), strictly."""

    __slots__ = ("done", "line", "remaining", "state", "trailers")

    def __init__(self) -> None:
        self.state = 0  # 0 size line, 1 data, 2 CRLF after data, 3 trailer lines
        self.remaining = 0
        self.line = b""
        self.trailers = 0
        self.done = False

    def feed(self, data: bytes) -> int:
        """How many bytes of ``data`` belong to this body; `done` is set once its end is seen."""
        index, size = 0, len(data)
        while index < size and not self.done:
            if self.state == 1:
                take = min(self.remaining, size - index)
                index += take
                self.remaining -= take
                if not self.remaining:
                    self.state = 2
                continue
            newline = data.find(b"\n", index)
            if newline < 0:
                self.line += data[index:]
                if len(self.line) > MAX_CHUNK_LINE:
                    raise ProtocolError("a chunk line too long")
                return size
            line = self.line + data[index:newline]
            self.line = b""
            index = newline + 1
            if len(line) > MAX_CHUNK_LINE:
                raise ProtocolError("a chunk line too long")
            self._line(line)
        return index

    def _line(self, line: bytes) -> None:
        """One line up to (not including) its LF: it must end with CR."""
        if self.state == 0:
            match = _CHUNK_LINE.fullmatch(line)
            if match is None:
                raise ProtocolError(f"a malformed chunk-size line {line[:20]!r}")
            chunk = int(match[1], 16)
            self.state, self.remaining = (3, 0) if chunk == 0 else (1, chunk)
        elif self.state == 2:
            if line != b"\r":
                raise ProtocolError("chunk data not followed by CRLF")
            self.state = 0
        elif line == b"\r":
            self.done = True
        else:
            self.trailers += len(line) + 1
            if self.trailers > MAX_TRAILERS:
                raise ProtocolError("a trailer section too large")
            if not line.endswith(b"\r"):
                raise ProtocolError("a bare LF in a trailer line")
            field = check_lines(line[:-1])[0]
            name, colon, _ = field.partition(b":")
            if not colon or not is_token(name):
                raise ProtocolError(f"a malformed trailer line {line[:40]!r}")


class BodyFraming:
    """Counts a Content-Length body, scans a chunked one, or (``until_close``) takes everything."""

    __slots__ = ("chunks", "remaining", "until_close")

    def __init__(self, length: int | None, chunked: bool, until_close: bool = False) -> None:
        self.remaining = length or 0
        self.chunks = ChunkScanner() if chunked else None
        self.until_close = until_close

    @property
    def done(self) -> bool:
        if self.chunks is not None:
            return self.chunks.done
        return not self.until_close and self.remaining <= 0

    def take(self, data: bytes) -> int:
        if self.chunks is not None:
            return self.chunks.feed(data)
        if self.until_close:
            return len(data)
        take = min(self.remaining, len(data))
        self.remaining -= take
        return take


def incomplete_head_error(buffer: bytes | bytearray, start: int) -> ProtocolError | None:
    """What is already wrong with a head still arriving (bytes from ``start`` on are new), else None.

    A head with bare-LF line endings never shows the CRLFCRLF that ends it: without this check the client would
    wait for an answer while the proxy waited for the rest of the head.
    """
    if len(buffer) > MAX_HEAD:
        return ProtocolError("the header block is too large", 431)
    # Every LF from ``start`` on must close a CRLF, and every CR before the last byte must open one (the last
    # byte may be a CR whose LF is still on its way). Counting from one byte back catches a pair split by reads.
    back = max(start - 1, 0)
    pairs = buffer.count(b"\r\n", back)
    if buffer.count(b"\n", start) != pairs or buffer.count(b"\r", back, len(buffer) - 1) != pairs:
        return ProtocolError("a bare CR or LF in the header block")
    return None


def canned(status: int, reason: str, text: str, *, close: bool = False, extra: str = "") -> bytes:
    """A complete small plain-text response the proxy answers itself."""
    body = text.encode()
    connection = "Connection: close\r\n" if close else ""
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {len(body)}\r\n"
        f"{extra}{connection}\r\n"
    )
    return head.encode() + body


BAD_REQUEST = canned(400, "Bad Request", "headway proxy: malformed request\n", close=True)
TOO_LARGE = canned(431, "Request Header Fields Too Large", "headway proxy: header block too large\n", close=True)
NOT_IMPLEMENTED = canned(501, "Not Implemented", "headway proxy: not implemented\n", close=True)
TIMED_OUT_HEAD = canned(408, "Request Timeout", "headway proxy: request head not received in time\n", close=True)
OVER_CAPACITY = canned(
    503, "Service Unavailable", "headway proxy: too many connections\n", close=True, extra="Retry-After: 1\r\n"
)
NO_BACKEND = canned(503, "Service Unavailable", "headway proxy: no ready backend\n")
BAD_GATEWAY = canned(502, "Bad Gateway", "headway proxy: backend unavailable\n")
TIMEOUT = canned(504, "Gateway Timeout", "headway proxy: backend timed out\n")
REFUSALS = {400: BAD_REQUEST, 431: TOO_LARGE, 501: NOT_IMPLEMENTED}
"""The answer to a `ProtocolError` by its status (then the connection is closed)."""
