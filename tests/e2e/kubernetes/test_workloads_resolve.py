"""`KubernetesPlatform.resolve_workload_ref` against the fidelity emulator: what the core hashes for a workloadRef."""

from __future__ import annotations

from typing import Any

import pytest

from headway.core.errors import PermanentError
from headway.core.hashing import pod_template_hash
from headway.kube.client import DEPLOYMENTS
from headway.platforms.kubernetes import KubernetesPlatform
from headway.spec.rollout import Rollout
from tests.e2e.kubernetes.emulator import ApiServer


def referencing(kind: str = "Deployment", **spec: Any) -> Rollout:
    return Rollout.model_validate(
        {
            "apiVersion": "headway.dev/v1alpha1",
            "kind": "Rollout",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "replicas": 2,
                "workloadRef": {"apiVersion": "apps/v1", "kind": kind, "name": "web", "scaleDown": "progressively"},
                "strategy": {"canary": {"steps": []}},
                **spec,
            },
        }
    )


def deployment(image: str) -> dict[str, Any]:
    template = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": image}]}}
    return {
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": template},
    }


def test_the_deployment_template_and_selector_are_what_the_core_sees(api: ApiServer) -> None:
    api.kube.create(DEPLOYMENTS, deployment("example/web:1"))
    platform = KubernetesPlatform(api.kube)

    first = platform.resolve_workload_ref(referencing())
    api.kube.patch(
        DEPLOYMENTS, "web", "default", {"spec": {"template": deployment("example/web:2")["spec"]["template"]}}
    )
    second = platform.resolve_workload_ref(referencing())

    assert first.spec.template is not None and first.spec.selector is not None
    assert first.spec.template["spec"]["containers"][0]["image"] == "example/web:1"
    assert dict(first.spec.selector.match_labels) == {"app": "web"}
    assert first.spec.workload_ref is not None and first.spec.workload_ref.scale_down == "progressively"
    assert pod_template_hash(first.spec.template) != pod_template_hash(second.spec.template)  # a new revision


def test_a_rollout_without_workload_ref_is_unchanged(api: ApiServer) -> None:
    rollout = referencing().model_copy(update={"spec": referencing().spec.model_copy(update={"workload_ref": None})})
    assert KubernetesPlatform(api.kube).resolve_workload_ref(rollout) is rollout


@pytest.mark.parametrize(
    ("kind", "message"),
    [("Deployment", "Deployment 'web' not found"), ("StatefulSet", "only Deployment is supported")],
)
def test_a_missing_or_unsupported_workload_is_a_clear_permanent_error(api: ApiServer, kind: str, message: str) -> None:
    with pytest.raises(PermanentError, match=message):
        KubernetesPlatform(api.kube).resolve_workload_ref(referencing(kind=kind))
