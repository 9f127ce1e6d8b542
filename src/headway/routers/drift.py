"""Comparing a router's live objects with what its setters would write: the shared half of `read_state`.

Each router renders the expected routing (`headway.core.dataplane.ExpectedRouting`) with the same pure
functions its setters use, reads its live object, and hands both here, keyed by route name, in the same
representation (a rule dict, a wire dict, an annotation map). What differs becomes a `Drift` the core reports
and repairs. Only the parts Headway manages are compared: a user's own rules are theirs to change.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from headway.core.dataplane import ExpectedRouting
from headway.core.observation import Drift, DriftKind


def weight_drift(expected: ExpectedRouting | None, found: object, wanted: object) -> tuple[Drift, ...]:
    """One WEIGHT drift when the live split ``found`` is not the ``wanted`` one (both in the router's terms)."""
    if expected is None or found == wanted:
        return ()
    return (Drift(DriftKind.WEIGHT, expected=expected.describe_weight(), found=show(found)),)


def route_drift(
    kind: DriftKind,
    wanted: Mapping[str, object],
    live: Mapping[str, object],
    ignore: frozenset[str] = frozenset(),
) -> tuple[Drift, ...]:
    """Managed routes missing, added or changed: ``wanted`` and ``live`` map route names to their content."""
    found: list[Drift] = []
    for name in sorted(set(wanted) | set(live)):
        if name in ignore:
            continue
        if name not in live:
            found.append(Drift(kind, name, expected="present", found="missing"))
        elif name not in wanted:
            found.append(Drift(kind, name, expected="absent", found=f"present ({show(live[name])})"))
        elif wanted[name] != live[name]:
            found.append(Drift(kind, name, expected=show(wanted[name]), found=show(live[name])))
    return tuple(found)


def show(value: object, limit: int = 200) -> str:
    """A short, stable rendering of a live value for an event message."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"
