"""The fast engine's HTTP/1.1 framing: where chunked bodies end, what a header block means, what is refused."""

from __future__ import annotations

import pytest

from headway.runtimes.embedded.proxy_fast import BodyFraming, ChunkScanner, Head, ProtocolError, framing, parse_head

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


@pytest.mark.parametrize("body", [b"zz\r\n", b"4\r\nWikiXX\r\n", b"f" * 9000])
def test_malformed_chunks_are_protocol_errors(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        ChunkScanner().feed(body)


def test_content_length_bodies_take_exactly_their_length() -> None:
    body = BodyFraming(5, False)

    assert body.take(b"abc") == 3 and not body.done
    assert body.take(b"deGET") == 2 and body.done


def test_a_header_block_parses_into_framing_and_a_routing_view() -> None:
    start, headers = parse_head(
        b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nX-A: 1\r\nx-a: 2\r\nConnection: close, X-B"
    )

    length, chunked, connection, view = framing(headers)

    assert start == b"POST /x HTTP/1.1"
    assert (length, chunked, connection) == (3, False, {b"close", b"x-b"})
    assert view["x-a"] == "1, 2"


@pytest.mark.parametrize(
    "block",
    [
        b"GET / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked",
        b"GET / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4",
        b"GET / HTTP/1.1\r\nContent-Length: -1",
        b"GET / HTTP/1.1\r\nTransfer-Encoding: gzip",
        b"GET / HTTP/1.1\r\nBad Header: x",
        b"GET / HTTP/1.1\r\nno colon",
    ],
    ids=["cl-and-te", "two-lengths", "negative", "not-chunked", "space-in-name", "no-colon"],
)
def test_ambiguous_or_malformed_framing_is_refused(block: bytes) -> None:
    with pytest.raises(ProtocolError):
        framing(parse_head(block)[1])


def test_a_request_head_is_scanned_once_into_framing_and_forwarded_lines() -> None:
    head = Head(
        b"POST /x HTTP/1.1\r\nHost: a:1\r\nContent-Length: 3\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\n"
        b"Keep-Alive: 5\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: https\r\nAccept:*/*"
    )

    assert (head.start, head.length, head.chunked, head.host, head.forwarded_for) == (
        b"POST /x HTTP/1.1",
        3,
        False,
        b"a:1",
        b"10.0.0.1",
    )
    assert head.lines == [b"Host: a:1", b"Content-Length: 3", b"Accept:*/*"]


def test_a_response_head_keeps_its_own_forwarded_and_host_lines() -> None:
    head = Head(
        b"HTTP/1.1 200 OK\r\nX-Forwarded-For: x\r\nTransfer-Encoding: chunked\r\nConnection: close", request=False
    )

    assert (head.chunked, head.connection, head.lines) == (True, {b"close"}, [b"X-Forwarded-For: x"])


@pytest.mark.parametrize(
    "block",
    [
        b"GET / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked",
        b"GET / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4",
        b"GET / HTTP/1.1\r\nTransfer-Encoding: gzip",
        b"GET / HTTP/1.1\r\nBad Header: x",
        b"GET / HTTP/1.1\r\nContent-Length : 3",
    ],
    ids=["cl-and-te", "two-lengths", "not-chunked", "space-in-name", "space-before-colon"],
)
def test_the_single_pass_refuses_what_framing_refuses(block: bytes) -> None:
    with pytest.raises(ProtocolError):
        Head(block)
