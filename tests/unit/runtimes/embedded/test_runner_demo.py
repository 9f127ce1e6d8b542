"""The demo's manifest and verdict text: the example file made portable, and a judge verdict made readable."""

from __future__ import annotations

import sys

import yaml

from headway.cli.demo import EXAMPLE_DIR, _why, manifest
from headway.runtimes.embedded.proxies import PROXY_PLUGIN
from headway.spec.load import load_text
from headway.spec.validate import validate


def test_the_demo_manifest_is_the_example_on_any_free_port_with_this_python() -> None:
    text = manifest()
    documents = load_text(text, "demo")

    assert [d.kind for d in documents] == ["AnalysisTemplate", "Rollout"]
    assert not [p for d in documents for p in d.problems if p.is_error] and not validate(documents)
    rollout = next(doc for doc in yaml.safe_load_all(text) if doc["kind"] == "Rollout")
    assert rollout["spec"]["strategy"]["canary"]["trafficRouting"]["plugins"][PROXY_PLUGIN] == {"port": 0}
    assert rollout["spec"]["template"]["spec"]["containers"][0]["command"] == [
        sys.executable,
        str(EXAMPLE_DIR / "app.py"),
    ]


def test_a_judge_verdict_keeps_the_metric_and_the_figures() -> None:
    message = (
        'Rollout aborted update to revision 3: Background analysis run demo-x-3-background Failed: Metric "errors" '
        'assessed Failed due to failed (1) > failureLimit (0): "Error Message: Fail: e-value reached 493 >= 1/alpha '
        '= 100 (p=0.00203); canary 4/23 bad, stable 0/656 bad"'
    )

    assert _why(message) == (
        "judge failed metric 'errors': e-value reached 493 >= 1/alpha = 100 (p=0.00203); canary 4/23 bad, "
        "stable 0/656 bad"
    )
    assert _why("Rollout step 1/6 completed (setWeight: 20)") == "Rollout step 1/6 completed (setWeight: 20)"
