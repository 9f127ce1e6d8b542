"""`Proxies.repair` against a real proxy process: it sets back what someone else changed, and says so only then.

The embedded runtime calls it after every pass. A difference it caused itself (a replica that became ready since
the last push, a blue/green switch it is carrying out) is written without a word; a difference from what it had
pushed (an admin API edit) is written back and described, for the ``TrafficDrift`` event and log line.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from headway.runtimes.embedded.proxies import Proxies
from headway.spec.rollout import Rollout
from tests.faults import proxy_admin
from tests.scenarios.harness import blue_green, canary

A, B, C = ("127.0.0.1", 9101), ("127.0.0.1", 9102), ("127.0.0.1", 9103)


@pytest.fixture
def proxies(tmp_path: Path) -> Iterator[Proxies]:
    started = Proxies(tmp_path)
    yield started
    started.stop_all(grace=2.0)


def admin(proxies: Proxies, rollout: Rollout, method: str, body: object = None) -> tuple[int, object]:
    url = proxies.ensure(rollout).admin_url + "/state"
    return proxy_admin.call(url, method, body, proxy_admin.headers(proxies.dir.parent, rollout.name))


def live(proxies: Proxies, rollout: Rollout) -> dict[str, object]:
    status, state = admin(proxies, rollout, "GET")
    assert status == 200
    assert isinstance(state, dict)
    return state


def edit(proxies: Proxies, rollout: Rollout, body: dict[str, object]) -> None:
    status, answer = admin(proxies, rollout, "PATCH", body)
    assert status == 200, answer


def addresses(state: dict[str, object], revision: str) -> list[str]:
    backends = state["backends"]
    assert isinstance(backends, dict)
    return sorted(item["address"] for item in backends.get(revision, []))


def test_an_edit_is_set_back_and_described_but_our_own_changes_are_not(proxies: Proxies) -> None:
    web = canary(routed=True)
    proxies.sync(web, {"old": [A, B]})

    assert proxies.repair(web, {"old": [A, B]}, None) == [], "nothing changed"
    assert proxies.repair(web, {"old": [A, B, C]}, None) == [], "a replica that became ready is ours to add"
    assert addresses(live(proxies, web), "old") == ["127.0.0.1:9101", "127.0.0.1:9102", "127.0.0.1:9103"]

    edit(proxies, web, {"backends": {"old": [], "intruder": ["127.0.0.1:9999"]}})
    changed = proxies.repair(web, {"old": [A, B, C]}, None)

    assert len(changed) == 2
    assert "backends of revision intruder: expected no backends" in changed[0]
    assert "backends of revision old: expected [127.0.0.1:9101, 127.0.0.1:9102, 127.0.0.1:9103]" in changed[1]
    assert changed[1].endswith("found no backends")
    state = live(proxies, web)
    assert addresses(state, "old") == ["127.0.0.1:9101", "127.0.0.1:9102", "127.0.0.1:9103"]
    assert addresses(state, "intruder") == []


def test_a_blue_green_switch_is_ours_an_edited_split_is_not(proxies: Proxies) -> None:
    bg = blue_green()
    proxies.sync(bg, {"blue": [A], "green": [B]})
    proxies.route_active(bg, "blue")

    assert proxies.repair(bg, {"blue": [A], "green": [B]}, "green") == [], "switching to green is ours"
    assert live(proxies, bg)["stable"] == "green"

    edit(proxies, bg, {"stable": "blue", "weights": {"blue": 100}})
    changed = proxies.repair(bg, {"blue": [A], "green": [B]}, "green")

    assert changed and changed[0].startswith("traffic split: expected all traffic to green, found ")
    assert live(proxies, bg)["weights"] == {"green": 100}
