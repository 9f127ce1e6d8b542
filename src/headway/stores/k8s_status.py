"""Rollout status kept where Kubernetes users look for it: the Rollout's own ``/status`` subresource.

The version is the object's ``metadata.resourceVersion``. A save is one JSON patch on ``/status`` that sets the
resourceVersion read and replaces the whole status: the API server refuses it with 409 when anyone wrote the
object since (a user's spec edit, a ``promote`` from the CLI, another controller replica), and that 409 becomes
`ConflictError`. A merge patch would not do: it keeps keys the new status left out.

``status.selector`` is the label selector of the Rollout's pods as a string (``app=web``): the CRD's /scale
subresource serves it as ``labelSelectorPath``, so an HPA can find the pods whose load it measures. The store
writes it with every save when it is given one (the status model does not carry it; a status loaded with one
keeps it as an extra field, so a save by a store without one, e.g. the CLI's, leaves it in place).

A Rollout whose status was never written reads as `NO_VERSION`; saving with `NO_VERSION` checks that no status
exists yet and writes it conditionally on the version seen during that check, so two first writers still race
safely.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from headway.core.errors import PermanentError
from headway.runtimes.kubernetes.client import ApiConflictError, BlockingKube, Kind, rollouts
from headway.spec.rollout import LabelSelector
from headway.spec.status import RolloutStatus
from headway.stores.base import NO_VERSION, ConflictError


def split_key(key: str) -> tuple[str, str]:
    """``namespace/name`` → (namespace, name); a bare name is in ``default``."""
    namespace, _, name = key.rpartition("/")
    return namespace or "default", name


def status_of(obj: dict[str, Any]) -> RolloutStatus:
    """The RolloutStatus in an object; a status that no longer parses (edited by hand) is a permanent error."""
    try:
        return RolloutStatus.model_validate(obj.get("status") or {})
    except ValidationError as error:
        name = obj.get("metadata", {}).get("name", "?")
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

    def __init__(self, kube: BlockingKube, kind: Kind | None = None, *, selector: str | None = None) -> None:
        self._kube = kube
        self._kind = kind or rollouts()
        self._selector = selector

    def load(self, key: str) -> tuple[RolloutStatus, str]:
        namespace, name = split_key(key)
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
        return str(saved["metadata"]["resourceVersion"])

    def _wire(self, status: RolloutStatus) -> dict[str, Any]:
        wire = status.wire()
        if self._selector is not None:
            wire["selector"] = self._selector
        return wire
