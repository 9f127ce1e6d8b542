"""Reading a pod template for the local platform: defaults, $(VAR) expansion, and errors that name the field."""

from __future__ import annotations

from typing import Any

import pytest

from headway.core.errors import PermanentError
from headway.platforms.local_spec import Probe, ProcessSpec, expand, process_spec


def template(container: dict[str, Any], **pod: Any) -> dict[str, Any]:
    return {"spec": {"containers": [{"name": "web", **container}], **pod}}


def test_command_args_env_and_version_are_read() -> None:
    spec = process_spec(
        template(
            {"image": "v2", "command": ["app"], "args": ["--port", "$(PORT)"], "env": [{"name": "A", "value": 1}]},
            terminationGracePeriodSeconds=5,
        )
    )

    assert (spec.command, spec.env, spec.version, spec.grace_seconds) == (
        ("app", "--port", "$(PORT)"),
        (("A", "1"),),
        "v2",
        5.0,
    )
    env = spec.environment({"PATH": "/bin", "PORT": "1"}, port=4000, revision="abc", index=2)
    assert env["PORT"] == "4000" and env["HEADWAY_VERSION"] == "v2" and env["HEADWAY_REPLICA"] == "2"
    assert spec.argv(env) == ["app", "--port", "4000"]


def test_expansion_follows_kubernetes() -> None:
    assert expand("$(A)-$(MISSING)-$$(A)", {"A": "x"}) == "x-$(MISSING)-$(A)"


def test_the_default_command_plays_the_entrypoint_and_args_follow_it() -> None:
    spec = process_spec(template({"image": "v1", "args": ["serve"]}), default_command=("python", "app.py"))

    assert spec.command == ("python", "app.py", "serve")
    assert spec.grace_seconds == 30.0
    assert spec.readiness is None


def test_probes_get_kubernetes_defaults() -> None:
    spec = process_spec(template({"command": ["a"], "readinessProbe": {"httpGet": {"path": "/h", "port": 80}}}))

    assert spec.readiness == Probe(kind="http", path="/h", period=10.0, failure_threshold=3, success_threshold=1)


def test_a_spec_round_trips_through_its_json() -> None:
    probe = {"exec": {"command": ["true"]}, "periodSeconds": 0.5, "successThreshold": 2}
    spec = process_spec(template({"command": ["a"], "workingDir": "/tmp", "readinessProbe": probe}))

    assert ProcessSpec.from_json(spec.to_json()) == spec


@pytest.mark.parametrize(
    ("container", "field"),
    [
        ({}, r"containers\[0\]\.command"),
        ({"command": "app"}, r"containers\[0\]\.command: must be a list"),
        ({"command": ["a"], "env": [{"name": "A", "valueFrom": {}}]}, r"env\[0\]\.valueFrom"),
        ({"command": ["a"], "env": [{"value": "x"}]}, r"env\[0\]\.name"),
        ({"command": ["a"], "readinessProbe": {}}, r"readinessProbe: exactly one of"),
        ({"command": ["a"], "readinessProbe": {"tcpSocket": {}, "periodSeconds": 0}}, r"periodSeconds: must be at"),
        ({"command": ["a"], "readinessProbe": {"httpGet": {"path": "x"}}}, r"httpGet\.path: must start"),
        ({"command": ["a"], "readinessProbe": {"httpGet": {"scheme": "HTTPS"}}}, r"httpGet\.scheme"),
        ({"command": ["a"], "readinessProbe": {"exec": {"command": []}}}, r"exec\.command: a command"),
        ({"command": ["a"], "workingDir": 3}, r"workingDir"),
    ],
)
def test_bad_input_names_the_field(container: dict[str, Any], field: str) -> None:
    with pytest.raises(PermanentError, match=field):
        process_spec(template(container))


def test_a_workload_ref_rollout_is_refused_clearly() -> None:
    with pytest.raises(PermanentError, match=r"spec\.template: .*workloadRef"):
        process_spec(None)
    with pytest.raises(PermanentError, match=r"spec\.template\.spec\.containers"):
        process_spec({"spec": {"containers": []}})
    with pytest.raises(PermanentError, match=r"terminationGracePeriodSeconds"):
        process_spec(template({"command": ["a"]}, terminationGracePeriodSeconds=-1))
