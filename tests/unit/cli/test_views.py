"""What `headway get` / `list` print, compared with snapshots under ``snapshots/`` (width 100, no colour).

Regenerate after an intended change with ``UPDATE_SNAPSHOTS=1 pytest tests/unit/cli/test_views.py`` and review the
diff like code. Snapshot views are built by hand so that an engine change does not rewrite them; one test renders
views from the real engine (the dashboard's simulator source) and checks what must be there.
"""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from headway.cli.views import Output, dump, plain_console, render_list, render_rollout
from headway.dashboard.model import (
    AnalysisRunView,
    JudgeEvidence,
    MeasurementView,
    RevisionView,
    RolloutView,
    with_roles,
)
from headway.dashboard.sim_source import SimSource, demo_rollouts

SNAPSHOTS = Path(__file__).parent / "snapshots"
T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
WIDTH = 100


def text_of(render: object) -> str:
    console = plain_console(WIDTH)
    render(console)  # type: ignore[operator]
    return "\n".join(line.rstrip() for line in console.export_text().splitlines()) + "\n"


def check(name: str, actual: str) -> None:
    path = SNAPSHOTS / name
    if os.environ.get("UPDATE_SNAPSHOTS") or not path.exists():
        if os.environ.get("CI") and not path.exists():
            pytest.fail(f"snapshot {path} is missing (run with UPDATE_SNAPSHOTS=1 locally and commit it)")
        path.write_text(actual, encoding="utf-8")
    assert actual == path.read_text(encoding="utf-8"), f"output differs from {path}"


def canary_view() -> RolloutView:
    measurements = [
        MeasurementView(metric="error-rate", at=T0 + timedelta(minutes=i), value=0.004 + 0.001 * i) for i in range(3)
    ]
    measurements.append(MeasurementView(metric="error-rate", at=T0 + timedelta(minutes=3), value=0.03, phase="Failed"))
    return RolloutView(
        name="checkout",
        namespace="shop",
        phase="Paused",
        message="CanaryPauseStep",
        step=3,
        steps=7,
        canary_weight=30,
        actual_weight=28,
        stable_hash="6f5c666cfb",
        current_hash="575d8f9f4c",
        stable_image="ghcr.io/example/checkout:2.1.0",
        current_image="ghcr.io/example/checkout:2.2.0",
        replicas=4,
        ready_replicas=6,
        revisions=[
            RevisionView(hash="98f797965", number=1, image="ghcr.io/example/checkout:2.0.0"),
            RevisionView(hash="6f5c666cfb", number=2, replicas=4, ready=4, image="ghcr.io/example/checkout:2.1.0"),
            RevisionView(hash="575d8f9f4c", number=3, replicas=2, ready=2, image="ghcr.io/example/checkout:2.2.0"),
        ],
        analysis_runs=[
            AnalysisRunView(name="checkout-6f5c666cfb-2-1", phase="Successful", kind="step"),
            AnalysisRunView(
                name="checkout-575d8f9f4c-3-background",
                phase="Running",
                kind="background",
                measurements=measurements,
                judge=JudgeEvidence(
                    ratio=1.8,
                    lower=0.9,
                    upper=3.6,
                    p_value=0.12,
                    tolerated_ratio=1.5,
                    canary_requests=5400,
                    stable_requests=14100,
                ),
            ),
        ],
    )


def blue_green_view() -> RolloutView:
    return RolloutView(
        name="api",
        namespace="default",
        strategy="blueGreen",
        phase="Paused",
        message="BlueGreenPause",
        stable_hash="aaa111",
        current_hash="bbb222",
        stable_image="api:1.4",
        current_image="api:1.5",
        replicas=2,
        ready_replicas=4,
        revision_kind="Processes",
        revisions=[
            RevisionView(hash="aaa111", number=4, replicas=2, ready=2, image="api:1.4"),
            RevisionView(hash="bbb222", number=5, replicas=2, ready=1, image="api:1.5"),
        ],
        analysis_runs=[
            AnalysisRunView(
                name="api-pre-promotion", revision="bbb222", phase="Inconclusive", message="too few requests"
            )
        ],
    )


def test_canary_tree_shows_weights_images_revisions_runs_and_judge() -> None:
    check("canary_tree.txt", text_of(lambda console: render_rollout(canary_view(), console=console)))


def test_blue_green_tree_tags_active_and_preview() -> None:
    check("bluegreen_tree.txt", text_of(lambda console: render_rollout(blue_green_view(), console=console)))


def test_list_table() -> None:
    views = [canary_view(), blue_green_view(), RolloutView(name="idle", namespace="ops", phase="Healthy", replicas=1)]
    check("list.txt", text_of(lambda console: render_list(views, console=console)))


def test_empty_list_says_so() -> None:
    assert text_of(lambda console: render_list([], console=console)) == "No rollouts found.\n"


def test_json_and_yaml_dumps_are_the_api_view() -> None:
    view = blue_green_view()
    as_json = dump(view, Output.JSON)
    check("bluegreen.json", as_json)
    assert json.loads(as_json)["currentHash"] == "bbb222"
    as_yaml = dump([view], "yaml")
    check("bluegreen_list.yaml", as_yaml)
    assert yaml.safe_load(as_yaml)[0]["revisionKind"] == "Processes"
    assert RolloutView.model_validate(json.loads(as_json)) == with_roles(view)  # a CLI can read back what it dumps
    with pytest.raises(ValueError, match="json or yaml"):
        dump(view, "tree")


def test_views_of_real_engine_rollouts() -> None:
    source = SimSource(demo_rollouts(), start=T0)
    source.advance(75)
    payments = asyncio.run(source.get_rollout("payments", "shop"))
    search = asyncio.run(source.get_rollout("search", "web"))
    out = text_of(lambda console: render_rollout(payments, console=console))
    assert "Status:          ॥ Paused" in out
    assert "  Step:          2/4" in out
    assert "  SetWeight:     20" in out
    assert "ghcr.io/example/payments:1.4.0 (stable)" in out
    assert "ghcr.io/example/payments:1.5.0 (canary)" in out
    out = text_of(lambda console: render_rollout(search, console=console))
    assert "Status:          ✖ Degraded" in out
    assert "AnalysisRun  ✖ Failed" in out
    assert "judge: ratio " in out
    assert "Fail: e-value reached" in out  # the sequential judge's own explanation


def test_a_daemon_shaped_document_is_a_view() -> None:
    """The embedded daemon's ``GET /api/v1/rollouts/{name}`` JSON (camelCase, extra keys) reads as a view."""
    detail = {
        "name": "web",
        "namespace": "default",
        "strategy": "canary",
        "phase": "Paused",
        "step": 1,
        "steps": 2,
        "canaryWeight": 50,
        "stableHash": "aaa",
        "currentHash": "bbb",
        "proxyUrl": "http://127.0.0.1:8080",
        "spec": {"strategy": {"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}}},
        "revisions": [
            {"hash": "aaa", "number": 1, "replicas": 1, "ready": 1, "available": 1, "image": "web:v1"},
            {"hash": "bbb", "number": 2, "replicas": 1, "ready": 1, "available": 1, "image": "web:v2"},
        ],
        "analysisRuns": [{"name": "web-bbb-2-1", "phase": "Running", "message": ""}],
        "events": [
            {
                "seq": 7,
                "at": "2026-11-29T12:00:00+00:00",
                "rollout": "default/web",
                "type": "Normal",
                "reason": "RolloutPaused",
                "message": "paused",
            }
        ],
    }
    view = RolloutView.model_validate(detail)
    assert view.step_list == ["setWeight 50", "pause (until promoted)"]
    out = text_of(lambda console: render_rollout(view, console=console))
    assert "web:v1 (stable)" in out
    assert "web:v2 (canary)" in out
    assert "web-bbb-2-1  AnalysisRun  ◌ Running" in out
