"""AnalysisTemplate, ClusterAnalysisTemplate and AnalysisRun: what to measure, how often, and what counts as bad.

Field names, defaults and one-of rules follow Argo Rollouts' ``v1alpha1`` analysis types, so an Argo template
loads unchanged. Only field-level rules live here (types, ranges, exactly one provider); rules that relate
several fields or documents (count vs. limits, duplicate metric names, arguments a Rollout must supply) live in
`headway.spec.validate`, where every problem of a manifest can be collected instead of the first one.

Numbers that Argo lets users fill in from template arguments (``count: "{{args.count}}"``) are kept as written;
`resolve_int` turns them into integers once arguments are known.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, StrictBool, field_validator, model_validator

from headway.spec import names
from headway.spec.base import (
    INT32_MAX,
    Duration,
    Int64,
    Model,
    NonNegative,
    ObjectMeta,
    in_range,
    parse_duration,
    show,
)

_PLACEHOLDER = re.compile(r"\{\{\s*[A-Za-z0-9_.\-]+\s*\}\}")


def has_placeholder(value: object) -> bool:
    """Whether a string holds an ``{{args.NAME}}``-style placeholder, resolved only when a run is created."""
    return isinstance(value, str) and _PLACEHOLDER.search(value) is not None


def _int_or_placeholder(low: int) -> BeforeValidator:
    """An integer in `low`..int32, a numeric string, or a ``{{args.NAME}}`` placeholder (Argo's int-or-string)."""

    def check(value: object) -> object:
        if has_placeholder(value):
            return value
        if isinstance(value, bool):
            raise ValueError(f"{show(value)} is not an integer")
        if isinstance(value, str):
            text = value.strip()
            if not text.lstrip("-").isdigit() or len(text) > 20:
                raise ValueError(f"{show(value)} is not an integer or an {{{{args.NAME}}}} placeholder")
            value = int(text)
        if not isinstance(value, int):
            raise ValueError(f"{show(value)} is not an integer")
        _check_int_range(value, low)
        return value

    return BeforeValidator(check)


def _check_int_range(value: int, low: int) -> None:
    if value < low:
        raise ValueError(f"{show(value)} is out of range >= {low}")
    if value > INT32_MAX:
        raise ValueError(f"{show(value)} is out of range {low}..{INT32_MAX}")


IntOrArg = Annotated[int | str, _int_or_placeholder(0)]
"""A non-negative count, or a placeholder filled from the run's arguments."""

FailureLimit = Annotated[int | str, _int_or_placeholder(-1)]
"""Like `IntOrArg`, but -1 is allowed: Argo uses it to switch failure counting off in favour of
``consecutiveSuccessLimit``."""


def _check_duration_or_placeholder(value: object) -> object:
    if has_placeholder(value):
        return value
    parse_duration(value)
    return value


MetricDuration = Annotated[int | str, BeforeValidator(_check_duration_or_placeholder)]
"""A duration (``30s``, ``5m``) or a placeholder filled from the run's arguments."""


def resolve_int(value: int | str, args: dict[str, str] | None = None) -> int:
    """The integer behind an int-or-placeholder field, substituting ``{{args.NAME}}`` from `args`.

    Raises ValueError naming the unresolved placeholder, so callers can report it against the field.
    """
    if isinstance(value, int):
        return value
    text = value
    for name, arg in (args or {}).items():
        text = re.sub(r"\{\{\s*args\." + re.escape(name) + r"\s*\}\}", arg, text)
    if has_placeholder(text):
        raise ValueError(f"{show(value)} has an unresolved placeholder")
    stripped = text.strip()
    if not stripped.lstrip("-").isdigit() or len(stripped) > 20:
        raise ValueError(f"{show(text)} is not an integer")
    number = int(stripped)
    _check_int_range(number, -1)
    return number


class AnalysisPhase(StrEnum):
    """The phase of an AnalysisRun, of one metric's result, or of one measurement (Argo's AnalysisPhase)."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUCCESSFUL = "Successful"
    FAILED = "Failed"
    ERROR = "Error"
    INCONCLUSIVE = "Inconclusive"

    @property
    def completed(self) -> bool:
        """A verdict has been reached; nothing more will be measured."""
        return self in _COMPLETED

    @property
    def failed(self) -> bool:
        """Failed or Error: both abort a rollout (Argo treats an errored run like a failed one)."""
        return self in (AnalysisPhase.FAILED, AnalysisPhase.ERROR)

    @property
    def unsuccessful(self) -> bool:
        """Completed with any verdict but Successful: a Rollout must not proceed on it unattended."""
        return self.completed and self is not AnalysisPhase.SUCCESSFUL


_COMPLETED = frozenset(
    {AnalysisPhase.SUCCESSFUL, AnalysisPhase.FAILED, AnalysisPhase.ERROR, AnalysisPhase.INCONCLUSIVE}
)


# --- arguments -------------------------------------------------------------------------------------------


class SecretKeyRef(Model):
    """A key of a Secret in the run's namespace; read when the run starts, never stored in the run."""

    # Name and key are checked as Kubernetes checks them: the embedded mode reads ``<secrets>/<name>/<key>``, and a
    # ``..`` or a ``/`` there would read any file the daemon can (its proxies' admin token) into a metric's URL.
    # (A comment, not the docstring: the docstring is the CRD's description.)
    name: str
    key: str

    @field_validator("name")
    @classmethod
    def _secret_name(cls, value: str) -> str:
        problem = names.subdomain_problem(value)
        if problem is not None:
            raise ValueError(f"{value!r} is not a valid Secret name: {problem}")
        return value

    @field_validator("key")
    @classmethod
    def _secret_key(cls, value: str) -> str:
        problem = names.key_problem(value)
        if problem is not None:
            raise ValueError(f"{value!r} is not a valid Secret key: {problem}")
        return value


class FieldRef(Model):
    """A downward-API style path into the owning object, such as ``metadata.labels['app']``."""

    field_path: str


class ArgumentValueFrom(Model):
    """Where a template argument's value comes from when it is not written inline."""

    secret_key_ref: SecretKeyRef | None = None
    field_ref: FieldRef | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> ArgumentValueFrom:
        if (self.secret_key_ref is None) == (self.field_ref is None):
            raise ValueError("set exactly one of secretKeyRef, fieldRef")
        return self


class Argument(Model):
    """A template argument. Without value or valueFrom, whoever references the template must supply it."""

    name: str
    value: str | None = None
    value_from: ArgumentValueFrom | None = None

    @property
    def has_default(self) -> bool:
        """Whether the template itself provides a value, so a caller may leave it out."""
        return self.value is not None or self.value_from is not None


# --- providers -------------------------------------------------------------------------------------------


class Header(Model):
    """An HTTP header sent with a query (Argo's WebMetricHeader, also used by Prometheus)."""

    key: str
    value: str


class Sigv4(Model):
    """AWS SigV4 signing for Amazon Managed Prometheus."""

    region: str | None = None
    profile: str | None = None
    role_arn: str | None = None


class OAuth2(Model):
    """OAuth2 client-credentials flow for a Prometheus behind an identity provider."""

    token_url: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    scopes: list[str] = []


class BasicAuth(Model):
    username: str
    password: str = ""


class PrometheusAuthentication(Model):
    """How to authenticate to Prometheus; at most one method is used."""

    sigv4: Sigv4 | None = None
    oauth2: OAuth2 | None = None
    basic_auth: BasicAuth | None = None


MAX_UNIX_TIME = 253_402_300_799
"""9999-12-31T23:59:59Z: the latest Unix time a datetime can hold."""


def _check_instant(value: object) -> object:
    """A Unix time given as a number (or numeric text) must be a time: finite, from 1970 to year 9999."""
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return value  # now(), now() - duration("5m") or RFC 3339: read by the provider
    if number is not None and not 0 <= number <= MAX_UNIX_TIME:  # also refuses nan
        raise ValueError(f"{show(value)} is not a Unix time between 0 and {MAX_UNIX_TIME} (year 9999)")
    return value


Instant = Annotated[str | float, BeforeValidator(_check_instant)]


class RangeQuery(Model):
    """Ask for a range (``query_range``): start/end are ``now()``, ``now() - duration("5m")``, RFC 3339 or Unix."""

    start: Instant
    end: Instant = "now()"
    step: Duration


class PrometheusMetric(Model):
    """A PromQL query; ``result`` is the returned vector (``result[0]`` is the usual first sample)."""

    address: str | None = None
    query: str
    timeout: NonNegative | None = None
    insecure: StrictBool = False
    headers: list[Header] = []
    authentication: PrometheusAuthentication | None = None
    range_query: RangeQuery | None = None
    ca_cert: str | None = None


class WebMetric(Model):
    """An HTTP request whose JSON response (or a jsonPath into it) becomes ``result``."""

    url: str
    method: Literal["GET", "POST", "PUT"] = "GET"
    headers: list[Header] = []
    body: str | None = None
    json_body: Any = None
    timeout_seconds: NonNegative = 10
    json_path: str = "{$}"
    insecure: StrictBool = False

    @model_validator(mode="after")
    def _body_rules(self) -> WebMetric:
        # Argo refuses both at once, and a body on GET is silently dropped by many servers.
        if self.body is not None and self.json_body is not None:
            raise ValueError("set at most one of body, jsonBody")
        if (self.body is not None or self.json_body is not None) and self.method == "GET":
            raise ValueError("body and jsonBody need method POST or PUT")
        return self


class JobMetadata(Model):
    """Labels and annotations for the Job a job metric creates."""

    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}


class JobMetric(Model):
    """A Kubernetes Job whose success or failure is the measurement; its spec is passed through as written."""

    metadata: JobMetadata = JobMetadata()
    spec: dict[str, Any]


class DatadogMetric(Model):
    """A Datadog query (v1) or named queries plus a formula (v2)."""

    interval: Duration | None = None
    query: str | None = None
    queries: dict[str, str] = {}
    formula: str | None = None
    api_version: Literal["v1", "v2"] = "v1"
    aggregator: str | None = None


class NewRelicMetric(Model):
    """An NRQL query; the account comes from the Secret named by profile."""

    profile: str | None = None
    query: str
    timeout: NonNegative | None = None


class WavefrontMetric(Model):
    """A Wavefront query."""

    address: str | None = None
    query: str | None = None


class KayentaThreshold(Model):
    """Kayenta's score cut-offs: at or above pass is Successful, below marginal is Failed."""

    pass_: Int64 = Field(alias="pass")
    marginal: Int64


class KayentaScope(Model):
    """One control/experiment scope pair; the details are passed to Kayenta as written."""

    name: str
    control_scope: dict[str, Any]
    experiment_scope: dict[str, Any]


class KayentaMetric(Model):
    """A Kayenta canary judgement."""

    address: str
    application: str
    canary_config_name: str
    metrics_account_name: str
    configuration_account_name: str
    storage_account_name: str
    threshold: KayentaThreshold
    scopes: list[KayentaScope]


class CloudWatchMetric(Model):
    """CloudWatch GetMetricData queries, passed to AWS as written."""

    interval: Duration | None = None
    metric_data_queries: list[dict[str, Any]]


class GraphiteMetric(Model):
    """A Graphite render query."""

    address: str | None = None
    query: str | None = None


class InfluxdbMetric(Model):
    """An InfluxDB Flux query; the connection comes from the Secret named by profile."""

    profile: str | None = None
    query: str | None = None


class SkyWalkingMetric(Model):
    """An Apache SkyWalking GraphQL query."""

    address: str | None = None
    query: str | None = None
    interval: Duration | None = None


PROVIDER_NAMES = (
    "prometheus",
    "web",
    "job",
    "datadog",
    "newRelic",
    "wavefront",
    "kayenta",
    "cloudWatch",
    "graphite",
    "influxdb",
    "skywalking",
    "plugin",
)
"""Wire names of the metric providers, in the order error messages list them."""


PRUNED_PROVIDER = (
    " (none is set; if the manifest sets one, the cluster's CRD dropped it: its schema has no such provider)"
)


class MetricProvider(Model):
    """Where a metric's measurements come from: exactly one provider.

    Unknown provider keys are an error, not a warning: a misspelt provider would otherwise leave a metric that
    can never be measured, and Argo would only notice at run time.
    """

    prometheus: PrometheusMetric | None = None
    web: WebMetric | None = None
    job: JobMetric | None = None
    datadog: DatadogMetric | None = None
    new_relic: NewRelicMetric | None = None
    wavefront: WavefrontMetric | None = None
    kayenta: KayentaMetric | None = None
    cloud_watch: CloudWatchMetric | None = None
    graphite: GraphiteMetric | None = None
    influxdb: InfluxdbMetric | None = None
    skywalking: SkyWalkingMetric | None = None
    plugin: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _known_and_one(cls, data: object) -> object:
        if not isinstance(data, dict):
            return data
        allowed = ", ".join(PROVIDER_NAMES)
        unknown = [key for key in data if key not in PROVIDER_NAMES]
        if unknown:
            names = ", ".join(repr(key) for key in unknown)
            raise ValueError(f"unknown provider {names} (allowed: {allowed})")
        chosen = [key for key, value in data.items() if value is not None]
        if len(chosen) != 1:
            # An empty provider is also what an API server leaves of one its CRD's schema does not name (Argo's
            # older CRDs have no skywalking or plugin): say so, or the user hunts for a typo that is not there.
            given = f" (got {', '.join(chosen)})" if chosen else PRUNED_PROVIDER
            raise ValueError(f"set exactly one of {allowed}{given}")
        return data

    @property
    def kind(self) -> str:
        """The wire name of the provider that is set (``prometheus``, ``web``, …)."""
        for name, value in self.wire().items():
            if name in PROVIDER_NAMES and value is not None:
                return name
        raise AssertionError("a validated MetricProvider has exactly one provider")  # pragma: no cover


# --- metrics and templates -------------------------------------------------------------------------------


class Metric(Model):
    """One thing to measure, how often, and how many bad measurements are tolerated.

    Defaults are Argo's: a metric without interval and count is measured once; failureLimit and
    inconclusiveLimit default to 0 (the first bad measurement decides), consecutiveErrorLimit to 4.
    """

    name: str
    interval: MetricDuration | None = None
    initial_delay: MetricDuration | None = None
    count: IntOrArg | None = None
    success_condition: str | None = None
    failure_condition: str | None = None
    failure_limit: FailureLimit = 0
    inconclusive_limit: IntOrArg = 0
    consecutive_error_limit: IntOrArg = 4
    consecutive_success_limit: IntOrArg = 0
    provider: MetricProvider

    @property
    def runs_indefinitely(self) -> bool:
        """An interval without a count measures until the run is stopped (fine only for background analysis)."""
        return self.interval is not None and (self.count is None or self.count == 0)


class DryRun(Model):
    """A metric whose verdict is recorded but never fails the run; ``*`` means every metric."""

    metric_name: str


class MeasurementRetention(Model):
    """How many measurements of a metric to keep in status (Argo keeps 10 by default)."""

    metric_name: str
    limit: Annotated[int, in_range(0)]


class AnalysisTemplateSpec(Model):
    """Metrics to run and the arguments they take."""

    metrics: list[Metric]
    args: list[Argument] = []
    dry_run: list[DryRun] = []
    measurement_retention: list[MeasurementRetention] = []

    def arg(self, name: str) -> Argument | None:
        """The declared argument called `name`, if any."""
        return next((arg for arg in self.args if arg.name == name), None)


class AnalysisTemplate(Model):
    """A namespaced, reusable analysis that Rollouts and Experiments reference by name."""

    api_version: str
    kind: Literal["AnalysisTemplate"] = "AnalysisTemplate"
    metadata: ObjectMeta
    spec: AnalysisTemplateSpec


class ClusterAnalysisTemplate(Model):
    """An AnalysisTemplate shared by every namespace (referenced with ``clusterScope: true``)."""

    api_version: str
    kind: Literal["ClusterAnalysisTemplate"] = "ClusterAnalysisTemplate"
    metadata: ObjectMeta
    spec: AnalysisTemplateSpec


# --- runs ------------------------------------------------------------------------------------------------


class TTLStrategy(Model):
    """How long a completed run is kept before garbage collection."""

    seconds_after_completion: NonNegative | None = None
    seconds_after_failure: NonNegative | None = None
    seconds_after_success: NonNegative | None = None


class AnalysisRunSpec(Model):
    """A template instantiated with concrete arguments."""

    metrics: list[Metric]
    args: list[Argument] = []
    terminate: StrictBool = False
    dry_run: list[DryRun] = []
    measurement_retention: list[MeasurementRetention] = []
    ttl_strategy: TTLStrategy | None = None


class Measurement(Model):
    """One observation of a metric. A failed query is a measurement with phase Error, not an exception."""

    phase: AnalysisPhase
    message: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    value: str | None = None
    metadata: dict[str, str] = {}
    resume_at: str | None = None


class MetricResult(Model):
    """The running verdict of one metric and the counts it was reached from."""

    name: str
    phase: AnalysisPhase
    measurements: list[Measurement] = []
    message: str | None = None
    count: NonNegative = 0
    successful: NonNegative = 0
    failed: NonNegative = 0
    inconclusive: NonNegative = 0
    error: NonNegative = 0
    consecutive_error: NonNegative = 0
    consecutive_success: NonNegative = 0
    dry_run: StrictBool = False
    metadata: dict[str, str] = {}


class RunSummary(Model):
    """How many metrics ended in each phase."""

    count: NonNegative = 0
    successful: NonNegative = 0
    failed: NonNegative = 0
    inconclusive: NonNegative = 0
    error: NonNegative = 0


class AnalysisRunStatus(Model):
    """What the run has decided so far."""

    phase: AnalysisPhase = AnalysisPhase.PENDING
    message: str | None = None
    metric_results: list[MetricResult] = []
    started_at: str | None = None
    completed_at: str | None = None
    run_summary: RunSummary | None = None
    dry_run_summary: RunSummary | None = None

    def result(self, metric: str) -> MetricResult | None:
        """The result recorded for `metric`, if it has been measured."""
        return next((result for result in self.metric_results if result.name == metric), None)


class AnalysisRun(Model):
    """A running (or finished) analysis, created from templates by a Rollout or an Experiment."""

    api_version: str
    kind: Literal["AnalysisRun"] = "AnalysisRun"
    metadata: ObjectMeta
    spec: AnalysisRunSpec
    status: AnalysisRunStatus | None = None
