"""Shared base for user-declared models: camelCase on the wire, snake_case in Python, frozen values.

Manifests use Argo Rollouts' v1alpha1 field names (camelCase). Models expose them as snake_case attributes and
report validation errors with the wire names, so an error path reads exactly like the YAML the user wrote.
Unknown fields are kept (``extra="allow"``) rather than rejected: Kubernetes prunes and warns about unknown fields
instead of refusing the object, and `headway lint` reports them as warnings.
"""

from __future__ import annotations

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


_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)(ms|s|m|h)\s*)+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: object) -> float:
    """Seconds from an Argo duration: an integer (seconds), a numeric string, or Go-style ``1h30m``/``10s``.

    Raises ValueError with the allowed forms, so the loader can name the field.
    """
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration (use seconds or a string like 30s, 10m, 1h)")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"{value} is negative (a duration must be >= 0)")
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return float(text)
        if _DURATION.match(text):
            return sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))
    raise ValueError(f"{value!r} is not a duration (use seconds or a string like 30s, 10m, 1h)")


def _check_duration(value: object) -> object:
    parse_duration(value)
    return value


Duration = Annotated[int | str, BeforeValidator(_check_duration)]
"""A duration as the user wrote it (kept verbatim for round-trips); read it with `parse_duration`."""


def _check_int_or_percent(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not an integer or a percentage like '25%'")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{value} is negative (must be >= 0)")
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.endswith("%") and text[:-1].isdigit():
            return text
        if text.isdigit():
            return int(text)
    raise ValueError(f"{value!r} is not an integer or a percentage like '25%'")


IntOrPercent = Annotated[int | str, BeforeValidator(_check_int_or_percent)]
"""Kubernetes int-or-string: an absolute count or a percentage string such as ``"25%"``."""


def in_range(low: int, high: int | None = None) -> BeforeValidator:
    """An integer bound whose error reads like the lint output: ``150 is out of range 0..100``.

    pydantic's own ``le``/``ge`` messages ("Input should be less than or equal to 100") hide the other bound;
    users fix faster when they see both.
    """

    def check(value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, str) and value.strip().lstrip("-").isdigit():
                value = int(value.strip())
            else:
                raise ValueError(f"{value!r} is not an integer")
        assert isinstance(value, int)
        if value < low or (high is not None and value > high):
            allowed = f"{low}..{high}" if high is not None else f">= {low}"
            raise ValueError(f"{value} is out of range {allowed}")
        return value

    return BeforeValidator(check)


Percent = Annotated[int, in_range(0, 100)]
"""A traffic or replica percentage, 0..100."""

NonNegative = Annotated[int, in_range(0)]
"""A count that may be zero but never negative (replicas, seconds)."""
