"""The aiohttp engine (``--engine aiohttp``) passes the core data-plane tests the default engine passes.

The tests are taken from `test_proxy` and collected again here with the `engine` fixture overridden; the
framing edge cases specific to the fast engine stay in `test_fast_engine.py`.
"""

from __future__ import annotations

import pytest

from tests.e2e.proxy import test_proxy as shared


@pytest.fixture
def engine() -> str:
    return "aiohttp"


test_weights_split_requests_exactly = shared.test_weights_split_requests_exactly
test_header_routes_send_matching_requests_to_the_canary = shared.test_header_routes_send_matching_requests_to_the_canary
test_hop_by_hop_headers_are_stripped_and_forwarded_headers_set = (
    shared.test_hop_by_hop_headers_are_stripped_and_forwarded_headers_set
)
test_bodies_stream_both_ways = shared.test_bodies_stream_both_ways
test_in_flight_requests_are_visible_and_finish_while_draining = (
    shared.test_in_flight_requests_are_visible_and_finish_while_draining
)
test_head_and_bodiless_statuses_keep_their_framing = shared.test_head_and_bodiless_statuses_keep_their_framing
