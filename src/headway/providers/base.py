"""The metric-provider Protocol: take one measurement of one metric, possibly over several passes.

Like Argo's ``metric.Provider`` (Run/Resume/Terminate), a provider may finish in `start` (Prometheus, web) or
return a pending handle that `poll` follows later (a Job, a local command). Providers return raw values; whether
a value is good is decided in the core (``successCondition``/``failureCondition``, or the judge), so every
provider gets the same semantics for free. A provider never raises for a failed query: it returns a result
with ``error`` set, which becomes a measurement in phase Error (a failed query is data).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Protocol

from headway.spec.analysis import Metric


@dataclass(frozen=True)
class MeasureContext:
    """What a measurement may depend on besides the metric: resolved args and the clock reading of the pass."""

    args: Mapping[str, str]
    now: datetime
    namespace: str = "default"
    run_name: str = ""


@dataclass(frozen=True)
class ProviderResult:
    """The outcome of one provider call.

    Exactly one of: ``value`` set (done; any JSON-like value: number, list, dict, string), ``error`` set (the
    query failed: the message names what to fix), or ``pending`` set (still running: call `poll` with it).
    """

    value: Any = None
    error: str | None = None
    pending: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.pending is None


class MetricProvider(Protocol):
    """One backend (prometheus, web, job, ...). Instances are cheap and safe to share between runs."""

    type: ClassVar[str]
    """The provider key in ``metric.provider`` (``prometheus``, ``web``...), used by the registry."""

    async def start(self, metric: Metric, context: MeasureContext) -> ProviderResult:
        """Begin (and usually finish) a measurement; never raises for a failed query."""
        ...

    async def poll(self, metric: Metric, pending: str, context: MeasureContext) -> ProviderResult:
        """Check a pending measurement again; providers that finish in `start` return an error here."""
        ...

    async def cancel(self, metric: Metric, pending: str) -> None:
        """Stop a pending measurement (the run was terminated); idempotent."""
        ...
