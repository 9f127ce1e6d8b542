"""A corpus of malformed requests sent over raw sockets to a real proxy process: each is refused, then closed.

Every row is the raw bytes a client sends and what it must get: the status of the proxy's own answer, after which
the connection is closed (where the next message would start is unknowable), or ``None`` for a connection closed
without an answer. After every row a well-formed request on a new connection must still succeed. Rows refused at
the head must not reach a backend at all (the backends count what they serve); rows refused in the body reached
the backend as an incomplete request whose connection is then cut, never reused.

Many rows are request-smuggling shapes: a laxer parser behind the proxy could read them differently.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.proxy.processes import Running, call, proxy

HOST = b"Host: a\r\n"
LONG = b"X-Long: " + b"a" * 70_000 + b"\r\n"

HEAD_ROWS: list[tuple[str, bytes, int | None]] = [
    # the request line
    ("garbage", b"NONSENSE\r\n\r\n", 400),
    ("http2-version", b"GET / HTTP/2.0\r\n" + HOST + b"\r\n", 400),
    ("http2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400),
    ("unknown-minor-version", b"GET / HTTP/1.2\r\n" + HOST + b"\r\n", 400),
    ("lowercase-version", b"GET / http/1.1\r\n" + HOST + b"\r\n", 400),
    ("double-space", b"GET  / HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    ("tab-separator", b"GET\t/ HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    ("trailing-space", b"GET / HTTP/1.1 \r\n" + HOST + b"\r\n", 400),
    ("method-not-token", b"G(T / HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    ("non-ascii-target", b"GET /caf\xe9 HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    ("nul-in-target", b"GET /a\x00b HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    ("relative-target", b"GET a/b HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    ("asterisk-not-options", b"GET * HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    ("connect", b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 501),
    ("leading-bare-lf", b"\nGET / HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    # field lines
    ("space-in-name", b"GET / HTTP/1.1\r\n" + HOST + b"Bad Header: x\r\n\r\n", 400),
    ("space-before-colon", b"GET / HTTP/1.1\r\n" + HOST + b"Content-Length : 0\r\n\r\n", 400),
    ("no-colon", b"GET / HTTP/1.1\r\n" + HOST + b"no colon\r\n\r\n", 400),
    ("empty-name", b"GET / HTTP/1.1\r\n" + HOST + b": x\r\n\r\n", 400),
    ("separator-in-name", b"GET / HTTP/1.1\r\n" + HOST + b"X(A): 1\r\n\r\n", 400),
    ("obs-fold", b"GET / HTTP/1.1\r\n" + HOST + b"X-A: 1\r\n folded\r\n\r\n", 400),
    ("space-before-first-field", b"GET / HTTP/1.1\r\n " + HOST + b"\r\n", 400),
    ("nul-in-value", b"GET / HTTP/1.1\r\n" + HOST + b"X-A: 1\x00\r\n\r\n", 400),
    ("escape-in-value", b"GET / HTTP/1.1\r\n" + HOST + b"X-A: \x1b[31m\r\n\r\n", 400),
    ("bare-cr-in-value", b"GET / HTTP/1.1\r\n" + HOST + b"X-A: 1\rContent-Length: 5\r\n\r\nhello", 400),
    ("bare-lf-in-value", b"GET / HTTP/1.1\r\n" + HOST + b"X-A: 1\nContent-Length: 5\r\n\r\nhello", 400),
    ("bare-lf-line-endings", b"GET / HTTP/1.1\nHost: a\n\n", 400),
    ("bare-lf-blank-line", b"GET / HTTP/1.1\r\n" + HOST + b"\n", 400),
    ("no-host", b"GET / HTTP/1.1\r\n\r\n", 400),
    ("two-hosts", b"GET / HTTP/1.1\r\n" + HOST + b"Host: b\r\n\r\n", 400),
    ("space-in-host", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    ("too-many-fields", b"GET / HTTP/1.1\r\n" + HOST + b"X: 1\r\n" * 300 + b"\r\n", 431),
    ("70-kb-head-in-one-read", b"GET / HTTP/1.1\r\n" + HOST + LONG + b"\r\n", 431),
    ("100-kb-head-in-one-read", b"GET / HTTP/1.1\r\n" + HOST + b"X-Long: " + b"a" * 100_000 + b"\r\n\r\n", 431),
    ("70-kb-head-unfinished", b"GET / HTTP/1.1\r\n" + HOST + LONG, 431),
    # body framing
    ("cl-and-te", b"POST /echo HTTP/1.1\r\n" + HOST + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    ("te-and-cl", b"POST /echo HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 400),
    ("two-lengths", b"POST /echo HTTP/1.1\r\n" + HOST + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400),
    ("length-list", b"POST /echo HTTP/1.1\r\n" + HOST + b"Content-Length: 5, 5\r\n\r\nhello", 400),
    ("negative-length", b"POST /echo HTTP/1.1\r\n" + HOST + b"Content-Length: -1\r\n\r\n", 400),
    ("plus-length", b"POST /echo HTTP/1.1\r\n" + HOST + b"Content-Length: +5\r\n\r\nhello", 400),
    ("hex-length", b"POST /echo HTTP/1.1\r\n" + HOST + b"Content-Length: 0x5\r\n\r\nhello", 400),
    ("huge-length", b"POST /echo HTTP/1.1\r\n" + HOST + b"Content-Length: " + b"9" * 40 + b"\r\n\r\n", 400),
    ("te-gzip", b"POST /echo HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: gzip\r\n\r\n", 400),
    ("te-chunked-not-last", b"POST /echo HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked, gzip\r\n\r\n", 400),
    ("te-unknown-coding", b"POST /echo HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: gzip, chunked\r\n\r\n", 501),
    ("te-chunked-twice", b"POST /echo HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n" * 2 + b"\r\n", 400),
    ("te-empty-element", b"POST /echo HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked,\r\n\r\n", 400),
    ("te-vertical-tab", b"POST /echo HTTP/1.1\r\n" + HOST + b"Transfer-Encoding:\x0bchunked\r\n\r\n", 400),
    ("te-in-http-1.0", b"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    # a head that stops: the client gives up (half-close) before the blank line
    ("unfinished-head-then-eof", b"GET / HTTP/1.1\r\n" + HOST, None),
]

CHUNKED = b"POST /echo HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n"
BODY_ROWS: list[tuple[str, bytes, int | None]] = [
    ("chunk-size-0x", CHUNKED + b"0x5\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk-size-underscore", CHUNKED + b"0_5\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk-size-plus", CHUNKED + b"+5\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk-size-minus-zero", CHUNKED + b"-0\r\n\r\n", 400),
    ("chunk-size-leading-space", CHUNKED + b" 5\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk-size-17-digits", CHUNKED + b"00000000000000005\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk-size-not-hex", CHUNKED + b"zz\r\n", 400),
    ("chunk-size-bare-lf", CHUNKED + b"5\nhello\r\n0\r\n\r\n", 400),
    ("chunk-ext-empty", CHUNKED + b"5;\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk-ext-no-value", CHUNKED + b"5;a=\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk-data-too-long", CHUNKED + b"5\r\nhello!\r\n0\r\n\r\n", 400),
    ("chunk-data-bare-lf", CHUNKED + b"5\r\nhello\n0\r\n\r\n", 400),
    ("chunk-line-endless", CHUNKED + b"5" * 10_000, 400),
    ("trailer-obs-fold", CHUNKED + b"0\r\nX-T: 1\r\n folded\r\n\r\n", 400),
    ("trailer-bare-lf", CHUNKED + b"0\r\nX-T: 1\n\r\n", 400),
    ("trailer-no-colon", CHUNKED + b"0\r\nnot a field\r\n\r\n", 400),
    ("trailer-nul", CHUNKED + b"0\r\nX-T: \x00\r\n\r\n", 400),
]


@pytest.fixture(scope="module")
def shared_proxy(tmp_path_factory: pytest.TempPathFactory, backends: dict[str, Running]) -> Iterator[Running]:
    """One proxy for the whole corpus (a process per row would cost more than the rows)."""
    started = proxy(Path(tmp_path_factory.mktemp("corpus")) / "proxy.json")
    status, body = call(
        "PUT",
        started.admin + "/state",
        {"stable": "old", "weights": {"old": 100}, "backends": {"old": [backends["v1a"].address]}},
    )
    assert status == 200, body
    yield started
    started.stop()


def send(proxy: Running, raw: bytes, *, half_close: bool = False, timeout: float = 10.0) -> tuple[bytes, bool]:
    """Send ``raw`` on a new connection; everything answered, and whether the proxy closed the connection."""
    host, port = proxy.listen.split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(raw)  # the proxy may refuse (and close) before it read everything: the answer is still there
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        answer = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                piece = sock.recv(65536)
            except ConnectionResetError:
                return answer, True
            except TimeoutError:
                break
            if not piece:
                return answer, True
            answer += piece
        return answer, False


def served(backends: dict[str, Running]) -> int:
    return sum(int(call("GET", f"http://{running.address}/stats")[1]["served"]) for running in backends.values())


def assert_refused(answer: bytes, closed: bool, expected: int | None) -> None:
    assert closed, f"the connection was left open after {answer[:60]!r}"
    if expected is None:
        assert answer == b""
    else:
        assert answer.startswith(f"HTTP/1.1 {expected} ".encode()), answer[:80]
        assert b"\r\nConnection: close\r\n" in answer.partition(b"\r\n\r\n")[0] + b"\r\n"


def assert_still_serving(proxy: Running) -> None:
    answer, _ = send(proxy, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:80]


@pytest.mark.parametrize(("raw", "expected"), [row[1:] for row in HEAD_ROWS], ids=[row[0] for row in HEAD_ROWS])
def test_a_malformed_head_is_refused_before_any_backend_sees_it(
    shared_proxy: Running, backends: dict[str, Running], raw: bytes, expected: int | None
) -> None:
    before = served(backends)

    answer, closed = send(shared_proxy, raw, half_close=expected is None)

    assert_refused(answer, closed, expected)
    assert served(backends) == before
    assert_still_serving(shared_proxy)


@pytest.mark.parametrize(("raw", "expected"), [row[1:] for row in BODY_ROWS], ids=[row[0] for row in BODY_ROWS])
def test_a_malformed_chunked_body_is_refused_and_the_connection_cut(
    shared_proxy: Running, raw: bytes, expected: int | None
) -> None:
    answer, closed = send(shared_proxy, raw)

    assert_refused(answer, closed, expected)
    assert_still_serving(shared_proxy)


def test_the_corpus_is_large_enough_to_mean_something() -> None:
    assert len(HEAD_ROWS) + len(BODY_ROWS) >= 60


@pytest.mark.parametrize(
    "raw",
    [
        CHUNKED + b'5;name=value;q="a \\" b"\r\nhello\r\n0\r\nX-Trailer: yes\r\n\r\n',
        b"\r\n" + CHUNKED + b"5\r\nhello\r\n0\r\n\r\n",
        b"POST /echo HTTP/1.1\r\n" + HOST + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
        b"POST /echo HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: CHUNKED\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHOST:a\r\nX-Tab:\tv\t\r\nX-Latin: caf\xe9\r\nConnection:close\r\n"
        b"Content-Length:5\r\n\r\nhello",
    ],
    ids=["extensions-and-trailer", "leading-empty-line", "repeated-equal-length", "coding-case", "odd-but-valid"],
)
def test_unusual_but_valid_requests_are_relayed(shared_proxy: Running, raw: bytes) -> None:
    answer, _ = send(shared_proxy, raw.replace(b"Host: a\r\n", b"Host: a\r\nConnection: close\r\n", 1))

    assert answer.startswith(b"HTTP/1.1 200 "), answer[:80]
    assert b'"size": 5' in answer
