"""Rollout status kept where Kubernetes users look for it: the Rollout's own ``/status`` subresource.

The version is the object's ``metadata.resourceVersion``. A save is one JSON patch on ``/status`` that sets the
resourceVersion read and replaces the whole status: the API server refuses it with 409 when anyone wrote the
object since (a user's spec edit, a ``promote`` from the CLI, another controller replica), and that 409 becomes
`ConflictError`. A merge patch would not do: it keeps keys the new status left out.

``status.selector`` is the label selector of the Rollout's pods as a string (``app=web``): the CRD's /scale
subresource serves it as ``labelSelectorPath``, so an HPA can find the pods whose load it measures. The store
writes it with every save when it is given one (the status model does not carry it; a status loaded with one
keeps it as an extra field, so a save by a store without one, e.g. the CLI's, leaves it in place).

``status.observedGeneration`` is an integer in ``headway.dev``, so kstatus (Flux's health checks and other
"is it done" tools) can compare it with ``metadata.generation``; Argo's schema types it as a string, kept there.

``status.HPAReplicas`` repeats ``status.replicas``: Argo's own CRD serves that field as the /scale subresource's
``statusReplicasPath``, so without it an HPA reads 0 replicas on a cluster with Argo's CRDs installed.

Argo's CRD also prunes every status field its schema does not name. Headway's own ones (the progress clock, the
delayed scale-downs, passed gates, managed routes, the Services' revisions, an Experiment's run status) would vanish
on each save: the progress deadline would restart every pass, old revisions would never be scaled down, managed
routes never removed. For another API group than ``headway.dev`` the store therefore keeps them inside Argo's
schema, in one condition of type `EXTENSIONS_CONDITION` whose message is their JSON, written in the same patch as
the rest (`pack_extensions`); loading unpacks them again (`unpack_extensions`), so the core never sees the difference.

A Rollout whose status was never written reads as `NO_VERSION`; saving with `NO_VERSION` checks that no status
exists yet and writes it conditionally on the version seen during that check, so two first writers still race
safely.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from headway.core.errors import PermanentError
from headway.kube.client import DEFAULT_GROUP, ApiConflictError, BlockingKube, Kind, rollouts
from headway.spec.rollout import LabelSelector
from headway.spec.status import RolloutStatus
from headway.stores.base import NO_VERSION, ConflictError


def split_key(key: str) -> tuple[str, str]:
    """``namespace/name`` → (namespace, name); a bare name is in ``default``."""
    namespace, _, name = key.rpartition("/")
    return namespace or "default", name


EXTENSIONS_CONDITION = "HeadwayExtensions"
EXTENSIONS: tuple[tuple[str, ...], ...] = (
    ("deadlineExceeded",),
    ("gatesPassed",),
    ("progressMarker",),
    ("progressSince",),
    ("scaleDownAt",),
    ("canary", "headerRoutes"),
    ("canary", "mirrorRoutes"),
    ("canary", "selectors"),
    ("canary", "currentExperiment"),
)
"""Status fields Argo's Rollout schema does not have (``canary.currentExperiment`` it has, as a string)."""


def pack_extensions(wire: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """``wire`` with the `EXTENSIONS` moved into one `EXTENSIONS_CONDITION` condition (JSON in its message)."""
    packed = dict(wire)
    if isinstance(packed.get("canary"), dict):
        packed["canary"] = dict(packed["canary"])
    extras: dict[str, Any] = {}
    for path in EXTENSIONS:
        parent: dict[str, Any] = packed
        for key in path[:-1]:
            child = parent.get(key)
            parent = child if isinstance(child, dict) else {}
        if path[-1] in parent:
            extras[".".join(path)] = parent.pop(path[-1])
    moment = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    condition = {
        "type": EXTENSIONS_CONDITION,
        "status": "True",
        "reason": "Headway",
        "message": json.dumps(extras, sort_keys=True, separators=(",", ":"), default=str),
        "lastUpdateTime": moment,
        "lastTransitionTime": moment,
    }
    others = [c for c in packed.get("conditions") or [] if c.get("type") != EXTENSIONS_CONDITION]
    packed["conditions"] = [*others, condition]
    return packed


def unpack_extensions(status: dict[str, Any]) -> dict[str, Any]:
    """``status`` with the fields of an `EXTENSIONS_CONDITION` put back where Headway's schema has them (a field
    present in the status itself wins) and the condition removed; unchanged without one. A message that is not
    the JSON object Headway wrote (edited by hand) is a `ValueError` naming it: read as nothing, it would silently
    drop the progress clock, the delayed scale-downs and the managed routes."""
    conditions = status.get("conditions") or []
    found = [c for c in conditions if isinstance(c, dict) and c.get("type") == EXTENSIONS_CONDITION]
    if not found:
        return status
    message = found[-1].get("message") or "{}"
    try:
        extras = json.loads(message) if isinstance(message, str) else None
    except (ValueError, RecursionError):
        extras = None
    if not isinstance(extras, dict):
        raise ValueError(f"status.conditions[{EXTENSIONS_CONDITION}].message is not the JSON object Headway wrote")
    unpacked = {**status, "conditions": [c for c in conditions if c not in found]}
    if isinstance(unpacked.get("canary"), dict):
        unpacked["canary"] = dict(unpacked["canary"])
    for dotted, value in extras.items():
        *parents, last = dotted.split(".")
        target = unpacked
        for key in parents:
            target = target.setdefault(key, {}) if isinstance(target.get(key, {}), dict) else {}
        if dotted == "canary.currentExperiment" or last not in target:
            target[last] = value
    return unpacked


def status_of(obj: dict[str, Any]) -> RolloutStatus:
    """The RolloutStatus in an object; a status that no longer parses (edited by hand) is a permanent error."""
    name = obj.get("metadata", {}).get("name", "?")
    try:
        raw = unpack_extensions(obj.get("status") or {})
    except ValueError as error:
        raise PermanentError(f"status of Rollout {name} does not parse: {error}") from error
    try:
        # HPAReplicas repeats replicas (`status_wire` writes it again): loaded, it would be an extra field.
        return RolloutStatus.model_validate({k: v for k, v in raw.items() if k != "HPAReplicas"})
    except ValidationError as error:
        raise PermanentError(f"status of Rollout {name} does not parse: {error.errors()[0]['msg']}") from error


def label_selector(selector: LabelSelector | None) -> str:
    """A label selector in the string form of ``kubectl get -l`` and ``Scale.status.selector``
    (``app=web,tier in (a,b)``): match labels sorted by key, then the expressions in their order."""
    if selector is None:
        return ""
    terms = [f"{key}={value}" for key, value in sorted(selector.match_labels.items())]
    for expression in selector.match_expressions:
        key, operator = str(expression.get("key", "")), str(expression.get("operator", ""))
        values = ",".join(sorted(str(value) for value in expression.get("values") or []))
        if operator == "In":
            terms.append(f"{key} in ({values})")
        elif operator == "NotIn":
            terms.append(f"{key} notin ({values})")
        elif operator == "Exists":
            terms.append(key)
        elif operator == "DoesNotExist":
            terms.append(f"!{key}")
    return ",".join(terms)


class KubernetesStatusStore:
    """Implements `headway.stores.base.StatusStore` on ``rollouts/status``.

    ``selector``: the ``status.selector`` string to write with each save (None: keep what the status carries).
    """

    def __init__(
        self,
        kube: BlockingKube,
        kind: Kind | None = None,
        *,
        selector: str | None = None,
        cached: dict[str, Any] | None = None,
    ) -> None:
        self._kube = kube
        self._kind = kind or rollouts()
        self._selector = selector
        self._cached = cached
        """The Rollout as the controller's watch last delivered it: the first `load` reads it instead of a GET
        (a stale copy only costs a 409 on save, which re-reads); later loads GET."""
        self.saved: dict[str, Any] | None = None
        """The Rollout as the server returned it from the last save (fresher than any watch event yet)."""

    def load(self, key: str) -> tuple[RolloutStatus, str]:
        namespace, name = split_key(key)
        obj, self._cached = self._cached, None
        if obj is None or not (obj.get("metadata") or {}).get("resourceVersion"):
            obj = self._kube.get(self._kind, name, namespace)
        if obj is None or "status" not in obj:
            return RolloutStatus(), NO_VERSION
        return status_of(obj), str(obj["metadata"]["resourceVersion"])

    def save(self, key: str, status: RolloutStatus, expected_version: str) -> str:
        namespace, name = split_key(key)
        if expected_version == NO_VERSION:
            obj = self._kube.get(self._kind, name, namespace)
            if obj is None:
                raise PermanentError(f"Rollout {key} does not exist; its status cannot be saved")
            if "status" in obj:
                raise ConflictError(key, expected_version, str(obj["metadata"]["resourceVersion"]))
            expected_version = str(obj["metadata"]["resourceVersion"])
            reported = NO_VERSION
        else:
            reported = expected_version
        patch: list[dict[str, Any]] = [
            {"op": "add", "path": "/metadata/resourceVersion", "value": expected_version},
            {"op": "add", "path": "/status", "value": self._wire(status)},
        ]
        try:
            saved = self._kube.patch(self._kind, name, namespace, patch, status=True)
        except ApiConflictError as error:
            raise ConflictError(key, reported, "newer") from error
        self.saved = saved
        return str(saved["metadata"]["resourceVersion"])

    def _wire(self, status: RolloutStatus) -> dict[str, Any]:
        wire = status_wire(status, self._kind.group)
        if self._selector is not None:
            wire["selector"] = self._selector
        return wire


def status_wire(status: RolloutStatus, group: str) -> dict[str, Any]:
    """A status as written to ``group``'s Rollouts: with ``HPAReplicas``, and outside our own group with Headway's
    fields packed into Argo's schema (see the module docstring)."""
    wire = status.wire()
    wire["HPAReplicas"] = wire.get("replicas", 0)
    if group != DEFAULT_GROUP:
        return pack_extensions(wire)
    observed = wire.get("observedGeneration")
    if isinstance(observed, str) and observed.isdigit():
        wire["observedGeneration"] = int(observed)  # kstatus reads an integer (Argo's schema wants a string)
    return wire
