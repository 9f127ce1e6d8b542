"""Shared base for user-declared models: camelCase on the wire, snake_case in Python, frozen values.

Manifests use Argo Rollouts' v1alpha1 field names (camelCase). Models expose them as snake_case attributes and
report validation errors with the wire names, so an error path reads exactly like the YAML the user wrote.
Unknown fields are kept (``extra="allow"``) rather than rejected: Kubernetes prunes and warns about unknown fields
instead of refusing the object, and `headway lint` reports them as warnings.
"""

from __future__ import annotations

import json
import math
import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict
from pydantic.alias_generators import to_camel

API_GROUPS = ("headway.dev", "argoproj.io")
API_VERSIONS = tuple(f"{group}/v1alpha1" for group in API_GROUPS)


class Model(BaseModel):
    """Base of every spec model: wire names are camelCase, values are immutable, unknown fields kept."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
        extra="allow",
        validate_default=False,
        ser_json_inf_nan="constants",
    )

    def wire(self) -> dict[str, Any]:
        """Serialise with wire (camelCase) names, leaving out what the user did not set."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class ObjectMeta(Model):
    """The subset of Kubernetes ObjectMeta that Headway reads."""

    name: str = ""
    namespace: str = "default"
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    generation: int | None = None
    uid: str | None = None
    resource_version: str | None = None


INT32_MAX = 2**31 - 1
"""Argo's counts, replicas and ``*Seconds`` fields are int32: the API server refuses anything larger."""

MAX_DURATION_SECONDS = 9_223_372_036
"""The longest duration accepted: Go's ``time.Duration`` (int64 nanoseconds, ``2562047h47m16s``, about 292
years), which is what Argo parses durations into. A wait that long still ends well inside Python's datetime
range (year 9999) from any present day, so the engine can add it to a timestamp without overflow."""

MAX_DURATION_TEXT = "2562047h"
"""`MAX_DURATION_SECONDS` as a user writes it (rounded down to whole hours), for messages."""


def show(value: object) -> str:
    """A value as the user wrote it in YAML/JSON (``true``, ``null``, ``"20"``, ``1.5``), never a Python repr.

    Long text is cut, so one huge scalar cannot make a message huge."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        return repr(value)
    if isinstance(value, int):
        return str(value) if abs(value) < 10**30 else f"an integer of {len(str(abs(value)))} digits"
    if isinstance(value, str):
        text = value if len(value) <= 80 else value[:77] + "..."
        return json.dumps(text, ensure_ascii=False).encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)(ms|s|m|h)\s*)+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_FORMS = "use seconds or a string like 30s, 10m, 1h"
_MAX_DURATION_DIGITS = 40
"""No sane duration has more digits; longer numbers are refused before any arithmetic on them."""


def parse_duration(value: object) -> float:
    """Seconds from an Argo duration: an integer (seconds), a numeric string, or Go-style ``1h30m``/``10s``.

    At most `MAX_DURATION_SECONDS`, so that every timestamp computed from a duration exists. Raises ValueError
    with the allowed forms, so the loader can name the field.
    """
    seconds: float | None = None
    if isinstance(value, bool):
        raise ValueError(f"{show(value)} is not a duration ({_DURATION_FORMS})")
    if isinstance(value, int | float):
        if math.isnan(value):
            raise ValueError(f"{show(value)} is not a duration ({_DURATION_FORMS})")
        if value < 0:
            raise ValueError(f"{show(value)} is negative (a duration must be >= 0)")
        seconds = float(value) if value <= MAX_DURATION_SECONDS else math.inf
    elif isinstance(value, str) and len(value) <= _MAX_DURATION_DIGITS * 4:
        text = value.strip()
        if text.isdigit() and len(text) <= _MAX_DURATION_DIGITS:
            seconds = float(text)
        elif _DURATION.match(text):
            parts = _DURATION_PART.findall(text)
            if all(len(number) <= _MAX_DURATION_DIGITS for number, _ in parts):
                seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    if seconds is None:
        raise ValueError(f"{show(value)} is not a duration ({_DURATION_FORMS})")
    if seconds > MAX_DURATION_SECONDS:
        raise ValueError(
            f"{show(value)} is longer than the longest duration allowed ({MAX_DURATION_TEXT}, about 292 years)"
        )
    return seconds


def _check_duration(value: object) -> object:
    parse_duration(value)
    return value


Duration = Annotated[int | str, BeforeValidator(_check_duration)]
"""A duration as the user wrote it (kept verbatim for round-trips); read it with `parse_duration`."""


def _check_int_or_percent(value: object) -> object:
    allowed = 'an integer or a percentage like "25%"'
    if isinstance(value, bool):
        raise ValueError(f"{show(value)} is not {allowed}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{value} is negative (must be >= 0)")
        if value > INT32_MAX:
            raise ValueError(f"{show(value)} is out of range 0..{INT32_MAX}")
        return value
    if isinstance(value, str) and len(value) <= 16:
        text = value.strip()
        if text.endswith("%") and text[:-1].isdigit():
            return text
        if text.isdigit() and int(text) <= INT32_MAX:
            return int(text)
    raise ValueError(f"{show(value)} is not {allowed}")


IntOrPercent = Annotated[int | str, BeforeValidator(_check_int_or_percent)]
"""Kubernetes int-or-string: an absolute count or a percentage string such as ``"25%"``."""


def in_range(low: int, high: int = INT32_MAX) -> BeforeValidator:
    """An integer bound whose error reads like the lint output: ``150 is out of range 0..100``.

    pydantic's own ``le``/``ge`` messages ("Input should be less than or equal to 100") hide the other bound;
    users fix faster when they see both. The upper bound defaults to int32, Argo's type for counts and seconds.
    Strings (``"20"``), floats and booleans are refused as the API server refuses them for an integer field:
    pydantic's lax mode would quietly turn ``"20"`` into 20.
    """

    def check(value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, int):
            hint = " (remove the quotes)" if isinstance(value, str) and value.strip().lstrip("-").isdigit() else ""
            raise ValueError(f"{show(value)} is not an integer{hint}")
        if value < low and high == INT32_MAX:
            raise ValueError(f"{show(value)} is out of range >= {low}")
        if value < low or value > high:
            raise ValueError(f"{show(value)} is out of range {low}..{high}")
        return value

    return BeforeValidator(check)


Percent = Annotated[int, in_range(0, 100)]
"""A traffic or replica percentage, 0..100."""

NonNegative = Annotated[int, in_range(0)]
"""A count that may be zero but never negative (replicas, seconds), at most int32 like Argo's fields."""

Int64 = Annotated[int, in_range(-(2**63), 2**63 - 1)]
"""An integer Argo declares int64 (Kayenta thresholds, metadata.generation)."""
