"""The /status store's ``status.selector``: the string /scale reports to an HPA, kept through every save."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from headway.kube.client import rollouts
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


def test_headways_own_fields_round_trip_through_argos_schema_in_one_condition() -> None:
    from datetime import UTC, datetime

    from headway.stores.k8s_status import EXTENSIONS_CONDITION, status_of, status_wire

    status = RolloutStatus.model_validate(
        {
            "phase": "Progressing",
            "replicas": 3,
            "progressMarker": "abc/1",
            "progressSince": "2026-01-01T00:00:00Z",
            "scaleDownAt": {"old": "2026-01-01T00:00:30Z"},
            "gatesPassed": ["confirm-rollout/abc"],
            "canary": {"selectors": {"web-stable": "abc"}, "headerRoutes": ["h"]},
        }
    )
    wire = status_wire(status, "argoproj.io")
    assert wire["HPAReplicas"] == 3  # what Argo's /scale reads
    for pruned in ("progressMarker", "progressSince", "scaleDownAt", "gatesPassed", "deadlineExceeded"):
        assert pruned not in wire
    assert "selectors" not in wire["canary"] and "headerRoutes" not in wire["canary"]
    assert [c["type"] for c in wire["conditions"]] == [EXTENSIONS_CONDITION]
    loaded = status_of({"status": wire})
    assert loaded.conditions == []  # the core never sees the carrier
    assert loaded.progress_since == datetime(2026, 1, 1, tzinfo=UTC)
    assert loaded.scale_down_at == {"old": datetime(2026, 1, 1, 0, 0, 30, tzinfo=UTC)}
    assert loaded.canary.selectors == {"web-stable": "abc"} and loaded.gates_passed == ["confirm-rollout/abc"]
    again = status_wire(loaded, "argoproj.io")
    assert [c["type"] for c in again["conditions"]] == [EXTENSIONS_CONDITION]  # one carrier, never two


def test_our_own_group_keeps_the_fields_where_they_are() -> None:
    from headway.stores.k8s_status import status_wire

    wire = status_wire(RolloutStatus.model_validate({"progressMarker": "abc/1", "replicas": 2}), "headway.dev")
    assert wire["progressMarker"] == "abc/1" and wire["HPAReplicas"] == 2
    assert wire.get("conditions") == []


@pytest.mark.parametrize("message", ["{not json", "[1, 2]", "[" * 100_000, 42], ids=["bad", "list", "deep", "int"])
def test_a_hand_edited_extensions_condition_is_an_error_naming_it_not_a_status_without_them(message: object) -> None:
    from headway.core.errors import PermanentError
    from headway.stores.k8s_status import EXTENSIONS_CONDITION, status_of

    wire = {
        "phase": "Progressing",
        "conditions": [{"type": EXTENSIONS_CONDITION, "status": "True", "message": message}],
    }
    with pytest.raises(PermanentError) as refused:
        status_of({"metadata": {"name": "web"}, "status": wire})
    assert str(refused.value) == (
        f"status of Rollout web does not parse: status.conditions[{EXTENSIONS_CONDITION}].message is not the JSON "
        "object Headway wrote"
    )
