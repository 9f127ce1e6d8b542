"""The embedded proxy's routing state: what the admin API accepts, what the state file holds, parsed once.

One proxy serves one app. Its state says which revision (pod-template hash) is stable and which is the canary,
the weight of each revision, the backends (``host:port``) of each revision and whether each is draining, and the
header and mirror routes Headway added. Header and mirror matches use Argo's wire names (``headerName``,
``headerValue: {exact|prefix|regex}``; ``method``/``path``/``headers``) so a router can send a step's matches as
they are written in the manifest.

Input comes from the network and from a file that may be corrupt, so parsing never trusts it: every problem is a
`StateError` whose message starts with the path of the offending field (``backends.abc[1].address``). Regexes
are compiled here, once, with a length cap; they are never evaluated as code.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from headway.private_files import open_private

MAX_WEIGHT = 10_000
MAX_PATTERN = 1024
"""Longest accepted exact/prefix/regex pattern, so a hostile route cannot make matching expensive."""


class StateError(ValueError):
    """The state sent to the admin API or read from the state file is invalid; the message names the field."""


@dataclass(frozen=True)
class StringMatch:
    """One of exact, prefix or regex (a full-string search, as Argo's regex matches anywhere)."""

    exact: str | None = None
    prefix: str | None = None
    regex: re.Pattern[str] | None = None

    def matches(self, value: str | None) -> bool:
        if value is None:
            return False
        if self.exact is not None:
            return value == self.exact
        if self.prefix is not None:
            return value.startswith(self.prefix)
        assert self.regex is not None  # noqa: S101 - an invariant for the type checker, not a check of input
        return self.regex.search(value) is not None

    def wire(self) -> dict[str, str]:
        if self.exact is not None:
            return {"exact": self.exact}
        if self.prefix is not None:
            return {"prefix": self.prefix}
        assert self.regex is not None  # noqa: S101 - an invariant for the type checker, not a check of input
        return {"regex": self.regex.pattern}


@dataclass(frozen=True)
class HeaderRoute:
    """Requests whose headers match all of ``match`` go to the canary, before weights are considered."""

    name: str
    match: tuple[tuple[str, StringMatch], ...]

    def matches(self, headers: Mapping[str, str]) -> bool:
        return all(value.matches(headers.get(header)) for header, value in self.match)


@dataclass(frozen=True)
class RequestMatch:
    """Method, path and headers of a mirror route's match; absent parts match anything."""

    method: StringMatch | None = None
    path: StringMatch | None = None
    headers: tuple[tuple[str, StringMatch], ...] = ()

    def matches(self, method: str, path: str, headers: Mapping[str, str]) -> bool:
        if self.method is not None and not self.method.matches(method):
            return False
        if self.path is not None and not self.path.matches(path):
            return False
        return all(value.matches(headers.get(header)) for header, value in self.headers)


@dataclass(frozen=True)
class MirrorRoute:
    """Copy ``percentage`` of requests matching any of ``match`` to the canary."""

    name: str
    match: tuple[RequestMatch, ...]
    percentage: int

    def matches(self, method: str, path: str, headers: Mapping[str, str]) -> bool:
        return any(item.matches(method, path, headers) for item in self.match)


@dataclass(frozen=True)
class Backend:
    """One replica's address; a draining backend gets no new requests but finishes the ones it has."""

    address: str
    draining: bool = False

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.address.rpartition(":")
        return host, int(port)


@dataclass(frozen=True)
class RoutingState:
    """Everything the proxy needs to route; immutable, swapped as a whole on every change."""

    stable: str | None = None
    canary: str | None = None
    weights: Mapping[str, int] = field(default_factory=dict)
    backends: Mapping[str, tuple[Backend, ...]] = field(default_factory=dict)
    header_routes: tuple[HeaderRoute, ...] = ()
    mirror_routes: tuple[MirrorRoute, ...] = ()

    def wire(self) -> dict[str, Any]:
        """The JSON form the admin API serves and the state file stores (the input of `parse_state`)."""
        return {
            "stable": self.stable,
            "canary": self.canary,
            "weights": dict(self.weights),
            "backends": {
                revision: [{"address": item.address, "draining": item.draining} for item in items]
                for revision, items in self.backends.items()
            },
            "headerRoutes": [_header_route_wire(route) for route in self.header_routes],
            "mirrorRoutes": [_mirror_route_wire(route) for route in self.mirror_routes],
        }


# --- parsing ---------------------------------------------------------------------------------------------------


def parse_state(data: object) -> RoutingState:
    """Validate a JSON value into a `RoutingState`; raise `StateError` naming the first bad field."""
    body = _mapping(data, "state")
    known = {"stable", "canary", "weights", "backends", "headerRoutes", "mirrorRoutes"}
    unknown = sorted(set(body) - known)
    if unknown:
        raise StateError(f"state: unknown field(s) {', '.join(unknown)} (allowed: {', '.join(sorted(known))})")
    weights = {
        _revision(key, "weights"): _int(value, f"weights.{key}", 0, MAX_WEIGHT)
        for key, value in _mapping(body.get("weights", {}), "weights").items()
    }
    backends = {
        _revision(key, "backends"): parse_backends(value, f"backends.{key}")
        for key, value in _mapping(body.get("backends", {}), "backends").items()
    }
    header_routes = tuple(
        parse_header_route(item, f"headerRoutes[{index}]")
        for index, item in enumerate(_list(body.get("headerRoutes", []), "headerRoutes"))
    )
    mirror_routes = tuple(
        parse_mirror_route(item, f"mirrorRoutes[{index}]")
        for index, item in enumerate(_list(body.get("mirrorRoutes", []), "mirrorRoutes"))
    )
    _unique([route.name for route in header_routes], "headerRoutes")
    _unique([route.name for route in mirror_routes], "mirrorRoutes")
    return RoutingState(
        stable=_optional_revision(body.get("stable"), "stable"),
        canary=_optional_revision(body.get("canary"), "canary"),
        weights=weights,
        backends=backends,
        header_routes=header_routes,
        mirror_routes=mirror_routes,
    )


def parse_backends(data: object, path: str) -> tuple[Backend, ...]:
    """A list of ``"host:port"`` strings or ``{"address": ..., "draining": bool}`` objects."""
    items: list[Backend] = []
    for index, item in enumerate(_list(data, path)):
        where = f"{path}[{index}]"
        if isinstance(item, str):
            items.append(Backend(address=_address(item, where)))
            continue
        body = _mapping(item, where)
        draining = body.get("draining", False)
        if not isinstance(draining, bool):
            raise StateError(f"{where}.draining: expected true or false, got {draining!r}")
        items.append(Backend(address=_address(body.get("address"), f"{where}.address"), draining=draining))
    _unique([item.address for item in items], path)
    return tuple(items)


def parse_header_route(data: object, path: str) -> HeaderRoute:
    body = _mapping(data, path)
    matches = []
    for index, item in enumerate(_list(body.get("match"), f"{path}.match")):
        where = f"{path}.match[{index}]"
        entry = _mapping(item, where)
        matches.append(
            (
                _header(entry.get("headerName"), f"{where}.headerName"),
                _string_match(entry.get("headerValue"), f"{where}.headerValue"),
            )
        )
    if not matches:
        raise StateError(f"{path}.match: a header route needs at least one match")
    return HeaderRoute(name=_name(body.get("name"), f"{path}.name"), match=tuple(matches))


def parse_mirror_route(data: object, path: str) -> MirrorRoute:
    body = _mapping(data, path)
    matches = []
    for index, item in enumerate(_list(body.get("match"), f"{path}.match")):
        where = f"{path}.match[{index}]"
        entry = _mapping(item, where)
        method = entry.get("method")
        route_path = entry.get("path")
        headers = _mapping(entry.get("headers") or {}, f"{where}.headers")
        matches.append(
            RequestMatch(
                method=None if method is None else _string_match(method, f"{where}.method"),
                path=None if route_path is None else _string_match(route_path, f"{where}.path"),
                headers=tuple(
                    (_header(name, f"{where}.headers"), _string_match(value, f"{where}.headers.{name}"))
                    for name, value in headers.items()
                ),
            )
        )
    if not matches:
        raise StateError(f"{path}.match: a mirror route needs at least one match")
    percentage = body.get("percentage", 100)
    return MirrorRoute(
        name=_name(body.get("name"), f"{path}.name"),
        match=tuple(matches),
        percentage=_int(percentage, f"{path}.percentage", 0, 100),
    )


# --- the state file ------------------------------------------------------------------------------------------


def save_state(path: Path, state: RoutingState) -> None:
    """Write atomically (temporary file, fsync, rename) so a crash leaves the old or the new state, never half."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    with os.fdopen(open_private(temporary, flags), "w", encoding="utf-8") as handle:  # the owner's only
        json.dump(state.wire(), handle, indent=1, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    temporary.replace(path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a power cut only once the directory is synced
    finally:
        os.close(directory)


def load_state(path: Path) -> RoutingState:
    """The saved state, or an empty one when the file does not exist; a corrupt file is a `StateError`."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return RoutingState()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise StateError(f"state file {path} is not valid JSON ({error}); fix or remove it") from None
    try:
        return parse_state(data)
    except StateError as error:
        raise StateError(f"state file {path}: {error}") from None


# --- helpers -------------------------------------------------------------------------------------------------


def _header_route_wire(route: HeaderRoute) -> dict[str, Any]:
    return {
        "name": route.name,
        "match": [{"headerName": header, "headerValue": value.wire()} for header, value in route.match],
    }


def _mirror_route_wire(route: MirrorRoute) -> dict[str, Any]:
    def one(item: RequestMatch) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if item.method is not None:
            body["method"] = item.method.wire()
        if item.path is not None:
            body["path"] = item.path.wire()
        if item.headers:
            body["headers"] = {header: value.wire() for header, value in item.headers}
        return body

    return {"name": route.name, "percentage": route.percentage, "match": [one(item) for item in route.match]}


def _string_match(data: object, path: str) -> StringMatch:
    body = _mapping(data, path)
    given = [key for key in ("exact", "prefix", "regex") if body.get(key) is not None]
    extra = sorted(set(body) - {"exact", "prefix", "regex"})
    if extra or len(given) != 1:
        raise StateError(f"{path}: set exactly one of exact, prefix, regex")
    key = given[0]
    value = body[key]
    if not isinstance(value, str) or len(value) > MAX_PATTERN:
        raise StateError(f"{path}.{key}: expected a string of at most {MAX_PATTERN} characters")
    if key == "exact":
        return StringMatch(exact=value)
    if key == "prefix":
        return StringMatch(prefix=value)
    try:
        return StringMatch(regex=re.compile(value))
    except re.error as error:
        raise StateError(f"{path}.regex: invalid regular expression ({error})") from None


def _mapping(data: object, path: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise StateError(f"{path}: expected an object, got {type(data).__name__}")
    return data


def _list(data: object, path: str) -> list[Any]:
    if not isinstance(data, list):
        raise StateError(f"{path}: expected a list, got {type(data).__name__}")
    return data


def _int(data: object, path: str, low: int, high: int) -> int:
    if isinstance(data, bool) or not isinstance(data, int) or not low <= data <= high:
        raise StateError(f"{path}: expected an integer within {low}..{high}, got {data!r}")
    return data


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}")
_HEADER = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}")


def _name(data: object, path: str) -> str:
    if not isinstance(data, str) or not _NAME.fullmatch(data):
        raise StateError(f"{path}: expected a name of letters, digits, '.', '_' or '-', got {data!r}")
    return data


def _revision(data: object, path: str) -> str:
    return _name(data, f"{path}.{data}" if isinstance(data, str) else path)


def _optional_revision(data: object, path: str) -> str | None:
    return None if data is None else _name(data, path)


def _header(data: object, path: str) -> str:
    if not isinstance(data, str) or not _HEADER.fullmatch(data):
        raise StateError(f"{path}: expected an HTTP header name, got {data!r}")
    return data.lower()


def _address(data: object, path: str) -> str:
    if not isinstance(data, str):
        raise StateError(f"{path}: expected 'host:port', got {data!r}")
    host, _, port = data.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise StateError(f"{path}: expected 'host:port' with a port within 1..65535, got {data!r}")
    return data


def _unique(names: list[str], path: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise StateError(f"{path}: {name!r} appears twice")
        seen.add(name)
