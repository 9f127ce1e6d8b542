"""Which provider measures a metric: an explicit table from provider type to factory, never a guess.

Flagger turns an unknown provider type into Prometheus with a warning; a misspelt or unsupported provider then
measures the wrong thing. Here an unknown type is an `UnknownProviderError` that names the types this process
knows, raised when the metric is looked up (the analysis controller turns it into a measurement in phase Error
and `headway lint` can ask `known()` up front).

The type of a metric is the wire name of its provider block (``prometheus``, ``web``, ``job``...). For Argo's
``plugin`` block it is the plugin's name (``plugin: {static: {...}}`` has type ``static``), so plugins are
registered like any other provider. Modes differ only in the table they build: the embedded runtime registers
the local-process `LocalJobProvider` under ``job``, the Kubernetes runtime its Job-based one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from headway.providers.base import MetricProvider
from headway.providers.job import LocalJobProvider
from headway.providers.prometheus import PrometheusProvider
from headway.providers.static import StaticProvider
from headway.providers.web import WebProvider
from headway.spec.analysis import Metric

ProviderFactory = Callable[[], MetricProvider]
"""Builds a provider. Called at most once per registry: instances are cheap and shared between runs."""


class UnknownProviderError(LookupError):
    """A metric asks for a provider type nobody registered, or names its plugin ambiguously."""

    @classmethod
    def for_type(cls, type_: str, known: Iterable[str]) -> UnknownProviderError:
        names = ", ".join(sorted(known)) or "none"
        return cls(f"no metric provider for type {type_!r} (known: {names})")


def provider_type(metric: Metric) -> str:
    """The registry key of `metric`: its provider's wire name, or the plugin's name for a plugin block."""
    kind = metric.provider.kind
    if kind != "plugin":
        return kind
    plugins = list(metric.provider.plugin or {})
    if len(plugins) != 1:
        names = ", ".join(repr(name) for name in plugins) or "none"
        raise UnknownProviderError(f"provider.plugin must name exactly one plugin (got {names})")
    return plugins[0]


class ProviderRegistry:
    """A table from provider type to factory; each provider is built once, on first use."""

    def __init__(self, factories: Mapping[str, ProviderFactory] | None = None) -> None:
        self._factories: dict[str, ProviderFactory] = {}
        self._instances: dict[str, MetricProvider] = {}
        for type_, factory in (factories or {}).items():
            self.register(type_, factory)

    def register(self, type_: str, factory: ProviderFactory, *, replace: bool = False) -> None:
        """Map `type_` to `factory`. Registering a type twice is an error unless `replace` says it is meant."""
        if not type_:
            raise ValueError("a provider type must be a non-empty string")
        if type_ in self._factories and not replace:
            raise ValueError(f"metric provider type {type_!r} is already registered")
        self._factories[type_] = factory
        self._instances.pop(type_, None)

    def known(self) -> tuple[str, ...]:
        """The registered types, sorted (for error messages and lint)."""
        return tuple(sorted(self._factories))

    def get(self, type_: str) -> MetricProvider:
        """The provider for `type_`; raises `UnknownProviderError` naming the known types."""
        provider = self._instances.get(type_)
        if provider is not None:
            return provider
        factory = self._factories.get(type_)
        if factory is None:
            raise UnknownProviderError.for_type(type_, self._factories)
        provider = self._instances[type_] = factory()
        return provider

    def for_metric(self, metric: Metric) -> MetricProvider:
        """The provider that measures `metric`; raises `UnknownProviderError` if there is none."""
        try:
            return self.get(provider_type(metric))
        except UnknownProviderError as error:
            raise UnknownProviderError(f"metric {metric.name!r}: {error}") from None


def default_registry(*, prometheus_address: str | None = None) -> ProviderRegistry:
    """Prometheus, web, a local-process job runner and the static provider: what the embedded mode offers.

    The Kubernetes runtime replaces ``job`` with its Job-based provider (``register("job", ..., replace=True)``).
    """
    return ProviderRegistry(
        {
            PrometheusProvider.type: lambda: PrometheusProvider(default_address=prometheus_address),
            WebProvider.type: WebProvider,
            LocalJobProvider.type: LocalJobProvider,
            StaticProvider.type: StaticProvider,
        }
    )
