"""The /status store's ``status.selector``: the string /scale reports to an HPA, kept through every save."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from headway.runtimes.kubernetes.client import rollouts
from headway.spec.rollout import LabelSelector
from headway.spec.status import Phase, RolloutStatus
from headway.stores.base import NO_VERSION
from headway.stores.k8s_status import KubernetesStatusStore, label_selector
from tests.e2e.kubernetes.emulator import ApiServer
from tests.e2e.kubernetes.harness import serve


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        (None, ""),
        (LabelSelector(match_labels={"tier": "web", "app": "shop"}), "app=shop,tier=web"),
        (
            LabelSelector.model_validate(
                {
                    "matchLabels": {"app": "shop"},
                    "matchExpressions": [
                        {"key": "track", "operator": "In", "values": ["stable", "canary"]},
                        {"key": "env", "operator": "NotIn", "values": ["dev"]},
                        {"key": "team", "operator": "Exists"},
                        {"key": "legacy", "operator": "DoesNotExist"},
                    ],
                }
            ),
            "app=shop,track in (canary,stable),env notin (dev),team,!legacy",
        ),
    ],
)
def test_label_selector_strings_read_as_kubectl_writes_them(selector: LabelSelector | None, expected: str) -> None:
    assert label_selector(selector) == expected


@pytest.fixture
def api() -> Iterator[ApiServer]:
    server = serve()
    server.kube.create(rollouts(), {"metadata": {"name": "web", "namespace": "default"}, "spec": {"replicas": 3}})
    try:
        yield server
    finally:
        server.__exit__(None, None, None)


def test_every_save_writes_the_selector_and_a_store_without_one_keeps_it(api: ApiServer) -> None:
    controller_store = KubernetesStatusStore(api.kube, rollouts(), selector="app=web")
    version = controller_store.save("default/web", RolloutStatus(phase=Phase.PROGRESSING, replicas=3), NO_VERSION)
    stored = api.kube.get(rollouts(), "web", "default")
    assert stored is not None and stored["status"]["selector"] == "app=web"

    cli_store = KubernetesStatusStore(api.kube, rollouts())  # as `headway promote` builds it
    status, version = cli_store.load("default/web")
    cli_store.save("default/web", status.model_copy(update={"message": "promoted"}), version)
    stored = api.kube.get(rollouts(), "web", "default")
    assert stored is not None
    assert (stored["status"]["selector"], stored["status"]["message"]) == ("app=web", "promoted")
