"""The Rollout manifest: Argo Rollouts' v1alpha1 ``Rollout`` with its field names, defaults and field rules.

Field-level rules live here (ranges, one-of choices inside a step); rules that relate several fields or several
documents (both strategies set, a header route missing from ``managedRoutes``, template arguments) live in
`headway.spec.validate`, so that lint can report all of them at once with their paths.
Defaults follow Argo's ``utils/defaults`` package: they are applied when read (``*_or_default`` helpers) rather
than written into the model, so that a manifest round-trips unchanged.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, ModelWrapValidatorHandler, StrictBool, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import InitErrorDetails, PydanticCustomError

from headway.spec.base import Duration, IntOrPercent, Model, NonNegative, ObjectMeta, Percent, in_range

Positive = Annotated[int, in_range(1)]
"""A count of at least one (maxTrafficWeight, minPodsPerReplicaSet)."""

DEFAULT_REPLICAS = 1
DEFAULT_REVISION_HISTORY_LIMIT = 10
DEFAULT_PROGRESS_DEADLINE_SECONDS = 600
DEFAULT_MAX_SURGE = "25%"
DEFAULT_MAX_UNAVAILABLE = "25%"
DEFAULT_SCALE_DOWN_DELAY_SECONDS = 30
DEFAULT_ABORT_SCALE_DOWN_DELAY_SECONDS = 30
DEFAULT_MAX_TRAFFIC_WEIGHT = 100


def _exactly_one(model: Model, fields: tuple[str, ...], what: str) -> None:
    """Raise a message naming the wire names when not exactly one of ``fields`` is set."""
    chosen = [name for name in fields if getattr(model, name) is not None]
    if len(chosen) != 1:
        wire = ", ".join(to_camel(name) for name in fields)
        given = ", ".join(to_camel(name) for name in chosen) or "none"
        raise ValueError(f"set exactly one of {wire} in {what} (given: {given})")


# --- analysis references ------------------------------------------------------------------------------------


class FieldRef(Model):
    field_path: str


class ArgumentValueFrom(Model):
    """Where a Rollout-supplied argument comes from: a pod-template hash or a field of the Rollout."""

    pod_template_hash_value: Literal["Stable", "Latest"] | None = None
    field_ref: FieldRef | None = None

    @model_validator(mode="after")
    def _one_source(self) -> ArgumentValueFrom:
        _exactly_one(self, ("pod_template_hash_value", "field_ref"), "valueFrom")
        return self


class AnalysisRunArgument(Model):
    """An argument passed from a Rollout to an AnalysisTemplate."""

    name: str = Field(min_length=1)
    value: str | None = None
    value_from: ArgumentValueFrom | None = None


class AnalysisTemplateRef(Model):
    template_name: str = Field(min_length=1)
    cluster_scope: StrictBool = False


class RunMetadata(Model):
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}


class RolloutAnalysis(Model):
    """An analysis step, or pre/post-promotion analysis: templates merged into one AnalysisRun."""

    templates: list[AnalysisTemplateRef] = Field(min_length=1)
    args: list[AnalysisRunArgument] = []
    dry_run: list[dict[str, Any]] = []
    measurement_retention: list[dict[str, Any]] = []
    analysis_run_metadata: RunMetadata | None = None


class RolloutAnalysisBackground(RolloutAnalysis):
    """Analysis running in the background of a canary from ``startingStep`` until promotion."""

    starting_step: NonNegative | None = None


# --- canary steps ---------------------------------------------------------------------------------------------


class RolloutPause(Model):
    """A pause; without a duration it waits for ``promote``."""

    duration: Duration | None = None


class SetCanaryScale(Model):
    """Scale the canary independently of its traffic weight (traffic routing only)."""

    weight: Percent | None = None
    replicas: NonNegative | None = None
    match_traffic_weight: StrictBool | None = None

    @model_validator(mode="after")
    def _one_choice(self) -> SetCanaryScale:
        chosen = [
            self.weight is not None,
            self.replicas is not None,
            bool(self.match_traffic_weight),
        ]
        if sum(chosen) != 1:
            raise ValueError("set exactly one of weight, replicas, matchTrafficWeight: true in setCanaryScale")
        return self


class StringMatch(Model):
    exact: str | None = None
    prefix: str | None = None
    regex: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> StringMatch:
        _exactly_one(self, ("exact", "prefix", "regex"), "a string match")
        return self


class HeaderRoutingMatch(Model):
    header_name: str = Field(min_length=1)
    header_value: StringMatch


class SetHeaderRoute(Model):
    """Route requests matching headers to the canary; no ``match`` removes the route."""

    name: str = Field(min_length=1)
    match: list[HeaderRoutingMatch] | None = None


class RouteMatch(Model):
    method: StringMatch | None = None
    path: StringMatch | None = None
    headers: dict[str, StringMatch] | None = None


class SetMirrorRoute(Model):
    """Mirror a share of matching requests to the canary; no ``match`` removes the route."""

    name: str = Field(min_length=1)
    match: list[RouteMatch] | None = None
    percentage: Percent | None = None


class RolloutExperimentTemplate(Model):
    name: str = Field(min_length=1)
    spec_ref: Literal["stable", "canary"]
    replicas: NonNegative | None = None
    weight: Percent | None = None
    metadata: RunMetadata | None = None
    selector: dict[str, Any] | None = None
    service: dict[str, Any] | None = None


class RolloutExperimentAnalysis(Model):
    name: str = Field(min_length=1)
    template_name: str = Field(min_length=1)
    cluster_scope: StrictBool = False
    args: list[AnalysisRunArgument] = []
    required_for_completion: StrictBool = False


class RolloutExperimentStep(Model):
    """Run an Experiment (stable/canary copies plus analyses) as a step; it completes when the Experiment does."""

    duration: Duration | None = None
    templates: list[RolloutExperimentTemplate] = Field(min_length=1)
    analyses: list[RolloutExperimentAnalysis] = []
    dry_run: list[dict[str, Any]] = []


STEP_KINDS = (
    "set_weight",
    "pause",
    "analysis",
    "experiment",
    "set_canary_scale",
    "set_header_route",
    "set_mirror_route",
    "plugin",
)


# Argo's validation refuses two of setWeight, pause, analysis, experiment and plugin in one step, and lets
# setCanaryScale, setHeaderRoute and setMirrorRoute accompany them. Headway accepts setCanaryScale next to any
# kind (the step then also waits for the canary's pods, as Argo does), and refuses a route next to another kind:
# the engine runs one of them per step, and a route left out silently would be worse. (A comment, not a
# docstring: docstrings become CRD descriptions.)
class CanaryStep(Model):
    """One canary step: exactly one of the step kinds, optionally with a setCanaryScale."""

    set_weight: Annotated[int, in_range(-(2**31))] | None = None
    """Canary weight out of trafficRouting.maxTrafficWeight (100 by default); the range is checked in validate."""
    pause: RolloutPause | None = None
    analysis: RolloutAnalysis | None = None
    experiment: RolloutExperimentStep | None = None
    set_canary_scale: SetCanaryScale | None = None
    set_header_route: SetHeaderRoute | None = None
    set_mirror_route: SetMirrorRoute | None = None
    plugin: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> CanaryStep:
        kinds = tuple(name for name in STEP_KINDS if name != "set_canary_scale")
        if self.set_canary_scale is None or any(getattr(self, name) is not None for name in kinds):
            chosen = [name for name in kinds if getattr(self, name) is not None]
            if len(chosen) != 1:
                wire = ", ".join(to_camel(name) for name in kinds)
                given = ", ".join(to_camel(name) for name in chosen) or "none"
                raise ValueError(
                    f"set exactly one of {wire} in a step, or setCanaryScale (which may also accompany any "
                    f"of them) (given: {given})"
                )
        return self

    @property
    def kind(self) -> str:
        """The wire name of the step kind (``setWeight``, ``pause``...)."""
        for name in STEP_KINDS:
            if getattr(self, name) is not None:
                return to_camel(name)
        return "unknown"


# --- traffic routing ------------------------------------------------------------------------------------------


class ManagedRoute(Model):
    name: str = Field(min_length=1)


BUILT_IN_ROUTERS = ("istio", "nginx", "alb", "smi", "ambassador", "app_mesh", "traefik", "apisix")
"""The routers Argo configures by a key of their own in ``trafficRouting`` (the rest are ``plugins``)."""
_BUILT_IN_KEYS = frozenset(to_camel(name) for name in BUILT_IN_ROUTERS)


class TrafficRouting(Model):
    """Which router shifts traffic; router configs are kept as given and read by the router adapters."""

    istio: dict[str, Any] | None = None
    nginx: dict[str, Any] | None = None
    alb: dict[str, Any] | None = None
    smi: dict[str, Any] | None = None
    ambassador: dict[str, Any] | None = None
    app_mesh: dict[str, Any] | None = None
    traefik: dict[str, Any] | None = None
    apisix: dict[str, Any] | None = None
    plugins: dict[str, Any] | None = None
    managed_routes: list[ManagedRoute] = []
    max_traffic_weight: Positive | None = None

    def routers(self) -> list[str]:
        """Wire names of the configured routers (``plugins`` entries by their plugin name)."""
        names = [to_camel(name) for name in BUILT_IN_ROUTERS if getattr(self, name) is not None]
        names.extend((self.plugins or {}).keys())
        return names

    @staticmethod
    def field_of(name: str) -> str:
        """Where router ``name`` (as `routers` names it) is configured, relative to ``trafficRouting``: its own
        key for a built-in router, ``plugins[name]`` for a plugin."""
        return name if name in _BUILT_IN_KEYS else f"plugins[{name}]"

    def max_weight(self) -> int:
        return self.max_traffic_weight or DEFAULT_MAX_TRAFFIC_WEIGHT


POD_TEMPLATE_HASH_LABEL = "rollouts-pod-template-hash"
"""The label that ties a pod to its revision (Argo's name, so existing Services and dashboards keep matching)."""


# Ephemeral labels and annotations: the pods of a revision carry them only while it has that role. (A comment,
# not a docstring: docstrings become CRD descriptions.)
class PodMetadata(Model):
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}


class AntiAffinity(Model):
    preferred_during_scheduling_ignored_during_execution: dict[str, Any] | None = None
    required_during_scheduling_ignored_during_execution: dict[str, Any] | None = None


class PingPong(Model):
    ping_service: str
    pong_service: str


class _ScaleDownDelays(Model):
    """The scale-down delays both strategies share, with Argo's defaults (30 s each)."""

    scale_down_delay_seconds: NonNegative | None = None
    scale_down_delay_revision_limit: NonNegative | None = None
    abort_scale_down_delay_seconds: NonNegative | None = None

    def scale_down_delay(self) -> int:
        if self.scale_down_delay_seconds is not None:
            return self.scale_down_delay_seconds
        return DEFAULT_SCALE_DOWN_DELAY_SECONDS

    def abort_scale_down_delay(self) -> int:
        if self.abort_scale_down_delay_seconds is not None:
            return self.abort_scale_down_delay_seconds
        return DEFAULT_ABORT_SCALE_DOWN_DELAY_SECONDS


def _raw_weights(data: Any) -> list[tuple[int, int, int]]:
    """(step index, setWeight, maxTrafficWeight) for raw integer weights outside 0..maxTrafficWeight."""
    if not isinstance(data, dict):
        return []
    routing = data.get("trafficRouting")
    full = routing.get("maxTrafficWeight") if isinstance(routing, dict) else None
    full = full if isinstance(full, int) and not isinstance(full, bool) and full > 0 else DEFAULT_MAX_TRAFFIC_WEIGHT
    steps = data.get("steps")
    found = []
    for index, step in enumerate(steps if isinstance(steps, list) else []):
        weight = step.get("setWeight") if isinstance(step, dict) else None
        if isinstance(weight, int) and not isinstance(weight, bool) and not 0 <= weight <= full:
            found.append((index, weight, full))
    return found


class CanaryStrategy(_ScaleDownDelays):
    canary_service: str | None = None
    stable_service: str | None = None
    ping_pong: PingPong | None = None
    steps: list[CanaryStep] = []
    traffic_routing: TrafficRouting | None = None
    max_unavailable: IntOrPercent | None = None
    max_surge: IntOrPercent | None = None
    analysis: RolloutAnalysisBackground | None = None
    anti_affinity: AntiAffinity | None = None
    canary_metadata: PodMetadata | None = None
    stable_metadata: PodMetadata | None = None
    dynamic_stable_scale: StrictBool = False
    min_pods_per_replica_set: Positive | None = None
    replica_progress_threshold: dict[str, Any] | None = None

    @model_validator(mode="wrap")
    @classmethod
    def _weights_in_range(cls, data: Any, handler: ModelWrapValidatorHandler[CanaryStrategy]) -> CanaryStrategy:
        """setWeight counts out of maxTrafficWeight (100 by default); checked here to report it with field errors."""
        problems: list[InitErrorDetails] = []
        for index, weight, full in _raw_weights(data):
            scale = "" if full == DEFAULT_MAX_TRAFFIC_WEIGHT else " (trafficRouting.maxTrafficWeight)"
            message = f"{weight} is out of range 0..{full}{scale}"
            error = PydanticCustomError("value_error", message.replace("{", "{{").replace("}", "}}"))
            problems.append({"type": error, "loc": ("steps", index, "setWeight"), "input": weight})
        try:
            model = handler(data)
        except ValidationError as error:
            problems.extend(error.errors())  # type: ignore[arg-type]
            raise ValidationError.from_exception_data(cls.__name__, problems) from None
        if problems:
            raise ValidationError.from_exception_data(cls.__name__, problems)
        return model

    def max_surge_or_default(self) -> int | str:
        return self.max_surge if self.max_surge is not None else DEFAULT_MAX_SURGE

    def max_unavailable_or_default(self) -> int | str:
        return self.max_unavailable if self.max_unavailable is not None else DEFAULT_MAX_UNAVAILABLE


class BlueGreenStrategy(_ScaleDownDelays):
    active_service: str | None = None
    preview_service: str | None = None
    preview_replica_count: NonNegative | None = None
    auto_promotion_enabled: StrictBool | None = None
    auto_promotion_seconds: NonNegative | None = None
    max_unavailable: IntOrPercent | None = None
    pre_promotion_analysis: RolloutAnalysis | None = None
    post_promotion_analysis: RolloutAnalysis | None = None
    anti_affinity: AntiAffinity | None = None
    preview_metadata: PodMetadata | None = None
    active_metadata: PodMetadata | None = None

    def auto_promotion(self) -> bool:
        return self.auto_promotion_enabled is not False


class Strategy(Model):
    """Exactly one of canary and blueGreen (checked in validate, so the error names the Rollout)."""

    canary: CanaryStrategy | None = None
    blue_green: BlueGreenStrategy | None = None


# --- the Rollout ----------------------------------------------------------------------------------------------


class LabelSelector(Model):
    match_labels: dict[str, str] = {}
    match_expressions: list[dict[str, Any]] = []


class WorkloadRef(Model):
    """Take the pod template from an existing Deployment instead of ``spec.template``."""

    api_version: str
    kind: str
    name: str = Field(min_length=1)
    scale_down: Literal["never", "onsuccess", "progressively"] | None = None


GateType = Literal["confirm-rollout", "pre-rollout", "confirm-promotion", "rollback"]


_HTTP_URL = re.compile(r"(?i)https?://[^/\s?#@]+(?::\d+)?(?:[/?#]\S*)?")


class Webhook(Model):
    """A gate in Flagger's sense (a Headway extension; Argo has none): an HTTP endpoint asked before a move.

    ``confirm-rollout`` holds a new revision before it gets any pods; ``pre-rollout`` must pass before the canary
    gets traffic (a failure aborts); ``confirm-promotion`` holds the promotion; ``rollback`` aborts the update
    as soon as it answers 2xx. A 2xx answer means yes; anything else, a timeout or no answer means not yet.
    """

    name: str = Field(min_length=1)
    type: GateType
    url: str = Field(min_length=1)
    timeout_seconds: Annotated[int, in_range(1, 300)] = 10
    interval_seconds: Annotated[int, in_range(1, 3600)] = 10
    metadata: dict[str, str] = {}

    @field_validator("url")
    @classmethod
    def _http_only(cls, value: str) -> str:
        # The gate is POSTed to from the controller's host: a file:// or custom scheme would make a manifest read
        # local files or reach what it should not, so only http(s) with a host is accepted.
        if not _HTTP_URL.fullmatch(value):
            raise ValueError(f"{value!r} must be an http:// or https:// URL with a host")
        return value


class RollbackWindow(Model):
    revisions: NonNegative | None = None


class RolloutSpec(Model):
    replicas: NonNegative | None = None
    selector: LabelSelector | None = None
    template: dict[str, Any] | None = None
    workload_ref: WorkloadRef | None = None
    min_ready_seconds: NonNegative = 0
    revision_history_limit: NonNegative | None = None
    paused: StrictBool = False
    progress_deadline_seconds: NonNegative | None = None
    progress_deadline_abort: StrictBool = False
    restart_at: str | None = None
    rollback_window: RollbackWindow | None = None
    analysis: dict[str, Any] | None = None
    strategy: Strategy
    webhooks: list[Webhook] = []
    """Headway extension: gates called before moves (see `Webhook`)."""

    def replicas_or_default(self) -> int:
        return self.replicas if self.replicas is not None else DEFAULT_REPLICAS

    def revision_history_limit_or_default(self) -> int:
        if self.revision_history_limit is not None:
            return self.revision_history_limit
        return DEFAULT_REVISION_HISTORY_LIMIT

    def progress_deadline(self) -> int:
        if self.progress_deadline_seconds is not None:
            return self.progress_deadline_seconds
        return DEFAULT_PROGRESS_DEADLINE_SECONDS


class Rollout(Model):
    api_version: str
    kind: Literal["Rollout"] = "Rollout"
    metadata: ObjectMeta
    spec: RolloutSpec
    status: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return self.metadata.name


def rollout_key(rollout: Rollout | str) -> str:
    """``namespace/name``: how stores and adapters tell one rollout from another (a key passes through)."""
    if isinstance(rollout, str):
        return rollout
    return f"{rollout.metadata.namespace}/{rollout.metadata.name}"
