"""`undo` takes the old revision's template as the user wrote it: without our hash label or ephemeral metadata."""

from __future__ import annotations

import json
from typing import Any

from headway.core.hashing import pod_template_hash
from headway.platforms.kubernetes import EPHEMERAL_ANNOTATION, HASH_LABEL, REVISION_ANNOTATION
from headway.runtimes.kubernetes.operate import _template_of

USERS = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "web:1"}]}}


def replica_set(number: int, template: dict[str, Any], ephemeral: dict[str, Any] | None = None) -> dict[str, Any]:
    annotations = {REVISION_ANNOTATION: str(number)}
    if ephemeral is not None:
        annotations[EPHEMERAL_ANNOTATION] = json.dumps(ephemeral)
    return {"metadata": {"name": f"web-{number}", "annotations": annotations}, "spec": {"template": template}}


def test_undo_strips_the_ephemeral_metadata_of_the_revisions_last_role() -> None:
    as_deployed = {
        "metadata": {
            "labels": {"app": "web", HASH_LABEL: "abc", "role": "stable"},
            "annotations": {"team": "a", "note": "stable pods"},
        },
        "spec": USERS["spec"],
    }
    users = {**USERS, "metadata": {"labels": {"app": "web"}, "annotations": {"team": "a"}}}
    old = replica_set(1, as_deployed, {"labels": {"role": "stable"}, "annotations": {"note": "stable pods"}})
    new = replica_set(2, {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": []}})
    template = _template_of([old, new], None, "web")
    assert template == users
    assert pod_template_hash(template) == pod_template_hash(users)  # the same revision: a fast rollback


def test_a_revision_without_ephemeral_metadata_keeps_its_labels() -> None:
    old = replica_set(1, {**USERS, "metadata": {"labels": {"app": "web", HASH_LABEL: "abc", "tier": "x"}}})
    new = replica_set(2, USERS)
    assert _template_of([old, new], 1, "web")["metadata"]["labels"] == {"app": "web", "tier": "x"}
