"""The controller's analysis helpers: Job names, history limits, the Job provider over its seam."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from headway.providers.base import MeasureContext
from headway.providers.k8s_job import KubernetesJobProvider, job_name
from headway.providers.registry import default_registry
from headway.runtimes.kubernetes.analysis import ProviderTable, history_limits, uses_analysis
from headway.runtimes.kubernetes.packed import LAST_APPLIED, slim
from headway.runtimes.kubernetes.runs import analysis_state
from headway.spec.analysis import Metric
from headway.spec.rollout import Rollout

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def rollout(strategy: dict[str, Any], **spec: Any) -> Rollout:
    return Rollout.model_validate(
        {
            "apiVersion": "headway.dev/v1alpha1",
            "kind": "Rollout",
            "metadata": {"name": "web"},
            "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "w", "image": "x"}]},
                },
                "strategy": strategy,
                **spec,
            },
        }
    )


def test_job_names_are_dns_labels_within_63_characters_and_differ_per_measurement() -> None:
    long = job_name("A" * 80 + ".run", "Metric_Name", "2026-01-01T00:00:00")
    assert len(long) <= 63 and re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?", long)
    assert job_name("r", "m", "t1") != job_name("r", "m", "t2")


def test_history_limits_default_to_argos_5_and_5_and_read_spec_analysis() -> None:
    assert history_limits(rollout({"canary": {"steps": []}})) == (5, 5)
    custom = rollout({"canary": {}}, analysis={"successfulRunHistoryLimit": 1, "unsuccessfulRunHistoryLimit": 0})
    assert history_limits(custom) == (1, 0)


def test_only_rollouts_that_reference_analysis_are_measured() -> None:
    assert not uses_analysis(rollout({"canary": {"steps": [{"setWeight": 50}]}}))
    step = {"analysis": {"templates": [{"templateName": "t"}]}}
    assert uses_analysis(rollout({"canary": {"steps": [{"setWeight": 50}, step]}}))


def test_the_provider_table_answers_key_error_for_an_unknown_type() -> None:
    table = ProviderTable(default_registry())
    assert "web" in table and table.get("nope") is None


class Jobs:
    """The JobApi seam, holding Jobs in memory."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.owners: dict[str, str] = {}

    async def create_job(self, namespace: str, run_name: str, body: dict[str, Any]) -> None:
        self.jobs[f"{namespace}/{body['metadata']['name']}"] = body
        self.owners[body["metadata"]["name"]] = run_name

    async def read_job(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self.jobs.get(f"{namespace}/{name}")

    async def delete_job(self, namespace: str, name: str) -> None:
        self.jobs.pop(f"{namespace}/{name}", None)


METRIC = Metric.model_validate({"name": "smoke", "provider": {"job": {"spec": {"template": {"spec": {}}}}}})
CONTEXT = MeasureContext(args={}, now=NOW, namespace="team", run_name="web-abc-2")


@pytest.mark.asyncio
async def test_the_job_provider_is_pending_until_the_job_finishes() -> None:
    jobs = Jobs()
    provider = KubernetesJobProvider(jobs)
    started = await provider.start(METRIC, CONTEXT)
    assert started.pending is not None and started.pending.startswith("team/")
    name = started.pending.partition("/")[2]
    assert jobs.owners[name] == "web-abc-2" and jobs.jobs[started.pending]["spec"] == {"template": {"spec": {}}}
    assert (await provider.poll(METRIC, started.pending, CONTEXT)).pending == started.pending
    jobs.jobs[started.pending]["status"] = {
        "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]
    }
    failed = await provider.poll(METRIC, started.pending, CONTEXT)
    assert failed.error is not None and "BackoffLimitExceeded" in failed.error
    jobs.jobs[started.pending]["status"] = {"succeeded": 1}
    assert (await provider.poll(METRIC, started.pending, CONTEXT)).value == 1
    await provider.cancel(METRIC, started.pending)
    assert jobs.jobs == {}
    gone = await provider.poll(METRIC, started.pending, CONTEXT)
    assert gone.error is not None and "deleted" in gone.error


def test_the_kept_rollout_body_drops_managed_fields_and_the_last_applied_copy_only() -> None:
    body: dict[str, Any] = {
        "metadata": {
            "name": "web",
            "managedFields": [{"manager": "kubectl"}],
            "annotations": {LAST_APPLIED: "{...}", "rollout.argoproj.io/revision": "3"},
        },
        "spec": {"replicas": 2},
    }
    kept = slim(body)
    assert kept == {
        "metadata": {"name": "web", "annotations": {"rollout.argoproj.io/revision": "3"}},
        "spec": {"replicas": 2},
    }
    assert "managedFields" in body["metadata"]  # the watch's own object is left alone


def test_a_running_analysis_run_tells_the_rollout_what_evidence_it_lacks() -> None:
    def run(status: dict[str, Any]) -> dict[str, Any]:
        spec = {"metrics": [{"name": "rate", "provider": {"web": {"url": "http://x"}}}]}
        return {"metadata": {"name": "r", "namespace": "default"}, "spec": spec, "status": status}

    errored = {
        "phase": "Error",
        "message": "timeout",
        "startedAt": "2026-01-01T00:00:00Z",
        "finishedAt": "2026-01-01T00:00:00Z",
    }
    streak = {
        "phase": "Running",
        "startedAt": "2026-01-01T00:00:00Z",
        "metricResults": [{"name": "rate", "phase": "Running", "measurements": [errored]}],
    }

    assert analysis_state(run({})).evidence_gap == "it has not started measuring"
    assert analysis_state(run(streak)).evidence_gap == "metric 'rate': its last measurement errored: timeout"
    assert analysis_state(run({"phase": "Successful"})).evidence_gap == ""
    unreadable = analysis_state(
        {"metadata": {"name": "r"}, "spec": {"metrics": "nope"}, "status": {"phase": "Running"}}
    )
    assert unreadable.evidence_gap.startswith("the run cannot be read: ValidationError")
