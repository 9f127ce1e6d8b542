"""What the controller needs to turn a Rollout object into a pass: admission, and an engine factory.

Admission is kept apart from the kopf handlers so the choice is a plain function: an invalid Rollout yields the
problems to report (an ``InvalidSpec`` condition and an Event), never an exception that would crash-loop the
worker. What the mode cannot do (`headway.engine.admission`, mode ``kubernetes``: a router the mode registry
does not list, an embedded-only metric provider, a plugin step) is one of those problems.

The engine of an admitted Rollout is built by an `EngineFactory` the controller is handed by the composition
root (`headway.bootstrap.kubernetes`), which builds the routers the mode registry lists: the controller imports
no router, platform or store of its own choosing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from headway.engine import admission
from headway.engine.gates import GateBackend
from headway.engine.reconcile import Engine
from headway.kube.client import BlockingKube
from headway.spec.load import load_document
from headway.spec.rollout import Rollout
from headway.spec.validate import check_rollout


class EngineFactory(Protocol):
    """Builds the engine of one admitted Rollout, for one pass."""

    def __call__(
        self,
        rollout: Rollout,
        kube: BlockingKube,
        group: str,
        gates: GateBackend | None = None,
        *,
        cached: dict[str, Any] | None = None,
    ) -> Engine:
        """The adapters for ``rollout``: its router(s) and the shared platform, runs, status store and ``gates``
        (shared by the controller: the answers of gates asked in one pass are read in a later one); ``cached``
        is the Rollout as the watch delivered it, read instead of a GET at the start of the pass."""
        ...


@dataclass(frozen=True)
class Admission:
    """A Rollout ready to reconcile, or why it is not."""

    rollout: Rollout | None
    problems: tuple[str, ...] = ()


def admit(body: Mapping[str, Any]) -> Admission:
    """Load and validate a Rollout object as the API server handed it; problems are ``path: message`` lines."""
    document = load_document(dict(body), file="<cluster>")
    errors = [f"{problem.path}: {problem.message}" for problem in document.problems if problem.is_error]
    if errors or not isinstance(document.model, Rollout):
        return Admission(None, tuple(errors) or ("not a Rollout",))
    rollout = document.model
    findings = [f"{f.path}: {f.message}" for f in check_rollout(rollout) if str(f.severity) == "error"]
    lacking = [
        f"{problem.path}: {problem.message}"
        for problem in admission.admit(document, admission.Mode.KUBERNETES)
        if problem.is_error
    ]
    if findings or lacking:
        return Admission(None, tuple(findings + lacking))
    return Admission(rollout)
