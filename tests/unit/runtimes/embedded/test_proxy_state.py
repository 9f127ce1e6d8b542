"""The proxy's routing state: bad input names its field, the state file round-trips and is never half-written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from headway.runtimes.embedded.proxy_state import StateError, load_state, parse_state, save_state

FULL = {
    "stable": "old",
    "canary": "new",
    "weights": {"old": 80, "new": 20},
    "backends": {"old": ["127.0.0.1:9001", {"address": "127.0.0.1:9002", "draining": True}], "new": []},
    "headerRoutes": [{"name": "qa", "match": [{"headerName": "X-Canary", "headerValue": {"exact": "yes"}}]}],
    "mirrorRoutes": [
        {
            "name": "m",
            "percentage": 10,
            "match": [{"method": {"exact": "GET"}, "path": {"prefix": "/api"}, "headers": {"X-A": {"regex": "b+"}}}],
        }
    ],
}


def test_the_wire_form_round_trips() -> None:
    state = parse_state(FULL)

    assert parse_state(json.loads(json.dumps(state.wire()))) == state
    assert state.backends["old"][1].draining is True


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"weights": {"old": -1}}, "weights.old"),
        ({"weights": {"old": True}}, "weights.old"),
        ({"weights": []}, "weights"),
        ({"backends": {"old": ["nowhere"]}}, "backends.old[0]"),
        ({"backends": {"old": [{"address": "127.0.0.1:70000"}]}}, "backends.old[0].address"),
        ({"backends": {"old": [{"address": "127.0.0.1:1", "draining": "yes"}]}}, "backends.old[0].draining"),
        ({"backends": {"old": ["127.0.0.1:1", "127.0.0.1:1"]}}, "backends.old"),
        ({"stable": "bad name!"}, "stable"),
        ({"headerRoutes": [{"name": "qa", "match": []}]}, "headerRoutes[0].match"),
        ({"headerRoutes": [{"name": "qa", "match": [{"headerName": "X", "headerValue": {"regex": "("}}]}]}, "regex"),
        ({"headerRoutes": [{"name": "qa", "match": [{"headerName": "X", "headerValue": {}}]}]}, "headerValue"),
        ({"mirrorRoutes": [{"name": "m", "percentage": 101, "match": [{}]}]}, "mirrorRoutes[0].percentage"),
        ({"surprise": 1}, "unknown field"),
    ],
)
def test_bad_input_is_an_error_naming_the_field(change: dict[str, object], field: str) -> None:
    with pytest.raises(StateError, match=field.replace("[", r"\[").replace("]", r"\]")):
        parse_state({**FULL, **change})


def test_not_an_object_is_refused() -> None:
    with pytest.raises(StateError, match="state: expected an object"):
        parse_state([1, 2])


def test_a_saved_state_loads_back(tmp_path: Path) -> None:
    path = tmp_path / "proxy.json"

    save_state(path, parse_state(FULL))

    assert load_state(path) == parse_state(FULL)
    assert [item.name for item in tmp_path.iterdir()] == ["proxy.json"]  # no temporary file left behind


def test_a_missing_file_is_an_empty_state(tmp_path: Path) -> None:
    assert load_state(tmp_path / "absent.json").weights == {}


@pytest.mark.parametrize(("text", "message"), [("{not json", "not valid JSON"), ('{"weights": 3}', "weights")])
def test_a_corrupt_file_is_reported_never_reset(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "proxy.json"
    path.write_text(text)

    with pytest.raises(StateError, match=message):
        load_state(path)
    assert path.read_text() == text
