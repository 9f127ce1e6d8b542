"""The proxy's HTTP/1.1 grammar: where chunked bodies end, what a header block means, what is refused (and how)."""

from __future__ import annotations

import pytest

from headway.runtimes.embedded.proxy_http import (
    MAX_HEAD,
    BodyFraming,
    ChunkScanner,
    Head,
    ProtocolError,
    incomplete_head_error,
    origin_form,
    routing_view,
)

CHUNKED = b"4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\nTrailer: x\r\n\r\n"


def test_a_chunked_body_ends_after_its_trailers_and_the_rest_is_the_next_message() -> None:
    scanner = ChunkScanner()

    used = scanner.feed(CHUNKED + b"GET / HTTP/1.1\r\n")

    assert scanner.done and used == len(CHUNKED)


@pytest.mark.parametrize("size", [1, 2, 3, 7])
def test_a_chunked_body_split_anywhere_is_scanned_the_same(size: int) -> None:
    scanner = ChunkScanner()
    pieces = [CHUNKED[i : i + size] for i in range(0, len(CHUNKED), size)]

    used = sum(scanner.feed(piece) for piece in pieces)

    assert scanner.done and used == len(CHUNKED)


@pytest.mark.parametrize(
    "line",
    [b"A\r\n", b"a;name\r\n", b'1f ; a=b ;c="q \\" d"\r\n', b"0000000000000001\r\n"],
    ids=["upper-hex", "bare-extension", "quoted-extension", "16-digits"],
)
def test_valid_chunk_size_lines_are_accepted(line: bytes) -> None:
    ChunkScanner().feed(line)


@pytest.mark.parametrize(
    "body",
    [
        b"zz\r\n",
        b"4\r\nWikiXX\r\n",
        b"f" * 9000,
        b"0x5\r\n",
        b"0_5\r\n",
        b"+5\r\n",
        b"-0\r\n",
        b" 5\r\n",
        b"5 \r\n",
        b"5\n",
        b"00000000000000005\r\n",
        b"5;\r\n",
        b"5;a=\r\n",
        b'5;a="unterminated\r\n',
        b"4\r\nWiki\n",
        b"0\r\nbad trailer\r\n\r\n",
        b"0\r\n folded: x\r\n\r\n",
        b"0\r\nx: a\n\r\n",
        b"0\r\nx: a\x00\r\n\r\n",
    ],
    ids=[
        "not-hex",
        "data-longer-than-size",
        "endless-size-line",
        "0x-prefix",
        "underscore",
        "plus-sign",
        "minus-zero",
        "leading-space",
        "trailing-space",
        "bare-lf-size",
        "17-digits",
        "empty-extension",
        "extension-without-value",
        "unterminated-quote",
        "bare-lf-after-data",
        "trailer-without-colon",
        "obs-fold-trailer",
        "bare-lf-trailer",
        "nul-in-trailer",
    ],
)
def test_malformed_chunks_are_protocol_errors(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        ChunkScanner().feed(body)


def test_content_length_bodies_take_exactly_their_length() -> None:
    body = BodyFraming(5, False)

    assert body.take(b"abc") == 3 and not body.done
    assert body.take(b"deGET") == 2 and body.done


def test_a_request_head_is_scanned_once_into_framing_and_forwarded_lines() -> None:
    head = Head(
        b"POST /x HTTP/1.1\r\nHost: a:1\r\nContent-Length: 3\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\n"
        b"Keep-Alive: 5\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: https\r\nAccept:*/*"
    )

    assert (head.method, head.target, head.version) == (b"POST", b"/x", b"HTTP/1.1")
    assert (head.length, head.chunked, head.host, head.forwarded_for) == (3, False, b"a:1", b"10.0.0.1")
    assert head.connection == {b"keep-alive", b"x-secret"}
    assert head.lines == [b"Host: a:1", b"Content-Length: 3", b"Accept:*/*"]


def test_a_response_head_keeps_its_own_forwarded_and_host_lines() -> None:
    head = Head(
        b"HTTP/1.1 200 OK\r\nX-Forwarded-For: x\r\nTransfer-Encoding: chunked\r\nConnection: close", request=False
    )

    assert (head.chunked, head.connection, head.lines) == (True, {b"close"}, [b"X-Forwarded-For: x"])


@pytest.mark.parametrize(
    "block",
    [
        b"GET / HTTP/1.1\r\nHost: a",
        b"GET / HTTP/1.0",
        b"OPTIONS * HTTP/1.1\r\nHost: a",
        b"GET http://a/b?c HTTP/1.1\r\nHost: a",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Empty:\r\nX-Tab:\tv\t\r\nX-Latin: caf\xe9",
    ],
    ids=["simple", "http-1.0-without-host", "asterisk", "absolute", "same-length-twice", "chunked", "values"],
)
def test_valid_heads_are_accepted(block: bytes) -> None:
    Head(block)


def test_the_routing_view_joins_repeated_fields() -> None:
    view = routing_view(b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nx-a:  2 ")

    assert view == {"host": "a", "x-a": "1, 2"}


REFUSED = [
    (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked", 400, "cl-and-te"),
    (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4", 400, "two-lengths"),
    (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3", 400, "length-list"),
    (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1", 400, "negative"),
    (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: +1", 400, "plus"),
    (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10", 400, "hex-length"),
    (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: " + b"9" * 19, 400, "huge-length"),
    (b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip", 400, "not-chunked"),
    (b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip", 400, "chunked-not-last"),
    (b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked", 400, "chunked-twice"),
    (b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked", 501, "unknown-coding"),
    (b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked,", 400, "empty-coding"),
    (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked", 400, "te-in-http-1.0"),
    (b"GET / HTTP/1.1\r\nHost: a\r\nBad Header: x", 400, "space-in-name"),
    (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length : 3", 400, "space-before-colon"),
    (b"GET / HTTP/1.1\r\nHost: a\r\nno colon", 400, "no-colon"),
    (b"GET / HTTP/1.1\r\nHost: a\r\n: x", 400, "empty-name"),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n continued", 400, "obs-fold"),
    (b"GET / HTTP/1.1\r\n Host: a", 400, "whitespace-before-first-field"),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX(A): 1", 400, "separator-in-name"),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\x00", 400, "nul-in-value"),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\rX-B: 2", 400, "bare-cr"),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\nContent-Length: 5", 400, "bare-lf"),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: \x7f", 400, "del-in-value"),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: \x1b[31m", 400, "escape-in-value"),
    (b"GET / HTTP/1.1", 400, "no-host"),
    (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b", 400, "two-hosts"),
    (b"GET / HTTP/1.1\r\nHost: a b", 400, "space-in-host"),
    (b"GET /  HTTP/1.1\r\nHost: a", 400, "double-space"),
    (b"GET / HTTP/1.1 \r\nHost: a", 400, "trailing-space"),
    (b"GET\t/ HTTP/1.1\r\nHost: a", 400, "tab-separator"),
    (b"GET / http/1.1\r\nHost: a", 400, "lowercase-version"),
    (b"GET / HTTP/1.2\r\nHost: a", 400, "unknown-minor"),
    (b"GET / HTTP/2.0\r\nHost: a", 400, "http2"),
    (b"GET /caf\xe9 HTTP/1.1\r\nHost: a", 400, "non-ascii-target"),
    (b"GET a/b HTTP/1.1\r\nHost: a", 400, "relative-target"),
    (b"GET * HTTP/1.1\r\nHost: a", 400, "asterisk-not-options"),
    (b"G(T / HTTP/1.1\r\nHost: a", 400, "method-not-token"),
    (b"CONNECT a:443 HTTP/1.1\r\nHost: a", 501, "connect"),
    (b"GET / HTTP/1.1" + b"\r\nX: 1" * 300 + b"\r\nHost: a", 431, "too-many-fields"),
]


@pytest.mark.parametrize(("block", "status"), [row[:2] for row in REFUSED], ids=[row[2] for row in REFUSED])
def test_invalid_request_heads_are_refused_with_the_status_to_answer(block: bytes, status: int) -> None:
    with pytest.raises(ProtocolError) as refused:
        Head(block)

    assert refused.value.status == status


@pytest.mark.parametrize(
    "block",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip",
        b"HTTP/1.1 2000 OK",
        b"HTTP/1.1 abc OK",
        b"HTTP/3 200 OK",
        b"HTTP/1.1 200 OK\r\nX-A: 1\nContent-Length: 0",
    ],
    ids=["cl-and-te", "not-chunked", "four-digits", "not-a-number", "version", "bare-lf"],
)
def test_invalid_response_heads_are_refused(block: bytes) -> None:
    with pytest.raises(ProtocolError):
        Head(block, request=False)


@pytest.mark.parametrize(
    ("buffer", "start", "wrong"),
    [
        (b"GET / HTTP/1.1\r\nHost: a\r", 0, False),
        (b"GET / HTTP/1.1\r\nHost: a\r", 24, False),
        (b"GET / HTTP/1.1\r\nHost: a\r\n", 24, False),
        (b"GET / HTTP/1.1\nHost: a", 0, True),
        (b"GET / HTTP/1.1\r\nHost: a\n", 23, True),
        (b"GET / HTTP/1.1\rHost: a", 0, True),
        (b"GET / HTTP/1.1\r\nHost: a\rX", 24, True),
        (b"\nGET", 0, True),
        (b"x" * (MAX_HEAD + 1), 0, True),
    ],
    ids=["cr-pending", "cr-pending-later", "pair-split", "bare-lf", "bare-lf-later", "bare-cr", "bare-cr-later",
         "leading-lf", "too-large"],
)  # fmt: skip
def test_an_incomplete_head_is_refused_as_soon_as_it_is_wrong(buffer: bytes, start: int, wrong: bool) -> None:
    assert (incomplete_head_error(buffer, start) is not None) == wrong
    assert (incomplete_head_error(bytearray(buffer), start) is not None) == wrong


@pytest.mark.parametrize(
    ("target", "path"),
    [
        (b"/a/b?c=1", b"/a/b?c=1"),
        (b"http://example.com/a?b", b"/a?b"),
        (b"HTTP://example.com:8080", b"/"),
        (b"http://example.com?q=1", b"/?q=1"),
        (b"*", b""),
    ],
)
def test_the_origin_form_of_a_target_is_its_path_and_query(target: bytes, path: bytes) -> None:
    assert origin_form(target) == path
