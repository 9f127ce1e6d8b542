"""Writing the status of an AnalysisRun or Experiment wherever its CRD keeps it.

Headway's own CRDs (``deploy/base``) give both kinds a /status subresource, so a status write cannot touch the
spec. Argo Rollouts' CRDs, which Headway runs beside as a drop-in (``--api-group argoproj.io``), have none: there
the API server answers 404 to ``…/status`` and the status is written with the object itself. Without the second
path every measurement and every experiment verdict would be lost without a trace (a 404 reads as "the object was
deleted"), and a rollout would wait forever for a verdict.

The /status path is always tried first: patching the object where a /status subresource exists would silently
drop the status part of the patch. A 404 from both paths means the object is gone, and is raised as such.

Status fields the CRD's schema does not name are pruned by the server in both cases; `dropped` finds what a
write or create lost, so the callers can fail closed where a lost field would change a verdict.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from headway.kube.client import BlockingKube, Kind, KubeClient, NotFoundError


async def patch_status(client: KubeClient, kind: Kind, name: str, namespace: str | None, patch: Any) -> Any:
    """Merge-patch ``patch`` (``{"status": …}``, with ``metadata.resourceVersion`` to make it conditional) into the
    object's status: through /status, or through the object where its CRD has no /status subresource."""
    try:
        return await client.patch(kind, name, namespace, patch, status=True)
    except NotFoundError:
        pass  # the object is gone, or its CRD has no /status subresource: the object's own path tells which
    return await client.patch(kind, name, namespace, patch)


def patch_status_blocking(kube: BlockingKube, kind: Kind, name: str, namespace: str | None, patch: Any) -> Any:
    """`patch_status` for the synchronous adapters."""
    try:
        return kube.patch(kind, name, namespace, patch, status=True)
    except NotFoundError:
        pass
    return kube.patch(kind, name, namespace, patch)


def dropped(sent: Any, kept: Any, path: str = "") -> list[str]:
    """The paths (``metrics[0].provider.web.jsonBody``) of values in ``sent`` that ``kept`` lost or changed: what an
    API server's structural schema pruned from an object written as ``sent`` and read back as ``kept``."""
    if isinstance(sent, Mapping):
        if not isinstance(kept, Mapping):
            return [path or "."]
        found: list[str] = []
        for key, value in sent.items():
            if value is None and kept.get(key) is None:
                continue  # null is unset (a pod template's creationTimestamp): nothing to lose
            where = f"{path}.{key}" if path else str(key)
            found.extend([where] if key not in kept else dropped(value, kept[key], where))
        return found
    if isinstance(sent, list):
        if not isinstance(kept, list) or len(kept) != len(sent):
            return [path or "."]
        return [where for index, item in enumerate(sent) for where in dropped(item, kept[index], f"{path}[{index}]")]
    return [] if sent == kept else [path or "."]
