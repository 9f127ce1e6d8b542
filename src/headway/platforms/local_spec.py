"""What a local replica runs, read from a Rollout's pod template: command, env, working directory, probe, grace.

The embedded mode reads the same manifests as Kubernetes. ``spec.template.spec.containers[0]`` gives ``command``
and ``args`` (run directly, no shell), ``env`` (literal values only), ``workingDir`` and ``readinessProbe``;
``image`` names the version and reaches the process as ``HEADWAY_VERSION``. Ports are ours to choose: each
replica gets a free port on 127.0.0.1 as ``PORT``, and probes target it whatever port the manifest names.
``$(VAR)`` in command and args expands from that environment as Kubernetes does (``$$`` is a literal ``$``).

Probes run faster than their ``periodSeconds`` until a replica is first ready: a local process starts in
milliseconds, not after an image pull, and a 10 s wait for the second probe would stall every rollout step.

Bad input raises `PermanentError` naming the field (``spec.template.spec.containers[0].readinessProbe...``),
because retrying an invalid template cannot help; the user must change it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from headway.core.errors import PermanentError

CONTAINER = "spec.template.spec.containers[0]"
DEFAULT_GRACE_SECONDS = 30.0

ProbeKind = Literal["http", "tcp", "exec"]


@dataclass(frozen=True)
class Probe:
    """A readiness probe with Kubernetes' defaults; times in seconds (fractions allowed locally)."""

    kind: ProbeKind
    path: str = "/"
    headers: tuple[tuple[str, str], ...] = ()
    command: tuple[str, ...] = ()
    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    failure_threshold: int = 3
    success_threshold: int = 1


@dataclass(frozen=True)
class ProcessSpec:
    """Everything needed to start (and re-start, and adopt) one replica of a revision."""

    command: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    working_dir: str | None = None
    version: str = ""
    readiness: Probe | None = None
    grace_seconds: float = DEFAULT_GRACE_SECONDS

    def environment(self, base: Mapping[str, str], port: int, revision: str, index: int) -> dict[str, str]:
        """The replica's environment: ``base``, then the manifest's env, then ours (which always wins)."""
        env = dict(base)
        env.update(self.env)
        env.update(PORT=str(port), HEADWAY_VERSION=self.version, HEADWAY_REVISION=revision)
        env["HEADWAY_REPLICA"] = str(index)
        return env

    def argv(self, env: Mapping[str, str]) -> list[str]:
        return [expand(word, env) for word in self.command]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProcessSpec:
        probe = data.get("readiness")
        readiness = None
        if probe is not None:
            readiness = Probe(
                **{
                    **probe,
                    "headers": tuple(tuple(pair) for pair in probe["headers"]),
                    "command": tuple(probe["command"]),
                }
            )
        return cls(
            command=tuple(data["command"]),
            env=tuple((name, value) for name, value in data["env"]),
            working_dir=data.get("working_dir"),
            version=data.get("version", ""),
            readiness=readiness,
            grace_seconds=float(data.get("grace_seconds", DEFAULT_GRACE_SECONDS)),
        )


_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def expand(word: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: defined names are replaced, unknown ones kept, ``$$`` becomes ``$``."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return "$"
        return env.get(name, match.group(0))

    return _VAR.sub(replace, word)


def process_spec(template: Mapping[str, Any] | None, default_command: Sequence[str] = ()) -> ProcessSpec:
    """Read the first container of a pod template; ``default_command`` plays the image's entrypoint."""
    if not isinstance(template, Mapping):
        raise PermanentError("spec.template: the embedded mode needs a pod template (workloadRef is not supported)")
    pod = _mapping(template.get("spec"), "spec.template.spec")
    containers = pod.get("containers")
    if not isinstance(containers, list) or not containers or not isinstance(containers[0], Mapping):
        raise PermanentError("spec.template.spec.containers: at least one container is required")
    container: Mapping[str, Any] = containers[0]
    command = _strings(container.get("command", []), f"{CONTAINER}.command")
    args = _strings(container.get("args", []), f"{CONTAINER}.args")
    if not command:
        command = list(default_command)
    if not command:
        raise PermanentError(f"{CONTAINER}.command: the embedded mode runs a command; none given (and no default)")
    working_dir = container.get("workingDir")
    if working_dir is not None and not isinstance(working_dir, str):
        raise PermanentError(f"{CONTAINER}.workingDir: must be a string, got {working_dir!r}")
    grace = pod.get("terminationGracePeriodSeconds", DEFAULT_GRACE_SECONDS)
    return ProcessSpec(
        command=(*command, *args),
        env=_env(container.get("env", [])),
        working_dir=working_dir,
        version=str(container.get("image", "")),
        readiness=_probe(container.get("readinessProbe"), f"{CONTAINER}.readinessProbe"),
        grace_seconds=_number(grace, "spec.template.spec.terminationGracePeriodSeconds", minimum=0.0),
    )


def _env(value: object) -> tuple[tuple[str, str], ...]:
    path = f"{CONTAINER}.env"
    if not isinstance(value, list):
        raise PermanentError(f"{path}: must be a list of {{name, value}}, got {type(value).__name__}")
    pairs: list[tuple[str, str]] = []
    for index, entry in enumerate(value):
        where = f"{path}[{index}]"
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str) or not entry["name"]:
            raise PermanentError(f"{where}.name: a non-empty string is required")
        if "valueFrom" in entry:
            raise PermanentError(f"{where}.valueFrom: not supported in the embedded mode; use value")
        raw = entry.get("value", "")
        if isinstance(raw, bool) or not isinstance(raw, str | int | float):
            raise PermanentError(f"{where}.value: must be a string, got {raw!r}")
        pairs.append((entry["name"], str(raw)))
    return tuple(pairs)


def _probe(value: object, path: str) -> Probe | None:
    if value is None:
        return None
    probe = _mapping(value, path)
    handlers = [name for name in ("httpGet", "tcpSocket", "exec") if name in probe]
    if len(handlers) != 1:
        found = ", ".join(handlers) or "none"
        raise PermanentError(f"{path}: exactly one of httpGet, tcpSocket, exec is required (found {found})")
    timing: dict[str, Any] = {
        "initial_delay": _number(probe.get("initialDelaySeconds", 0), f"{path}.initialDelaySeconds", minimum=0.0),
        "period": _number(probe.get("periodSeconds", 10), f"{path}.periodSeconds", minimum=0.01),
        "timeout": _number(probe.get("timeoutSeconds", 1), f"{path}.timeoutSeconds", minimum=0.01),
        "failure_threshold": int(_number(probe.get("failureThreshold", 3), f"{path}.failureThreshold", minimum=1)),
        "success_threshold": int(_number(probe.get("successThreshold", 1), f"{path}.successThreshold", minimum=1)),
    }
    if "httpGet" in probe:
        http = _mapping(probe["httpGet"], f"{path}.httpGet")
        scheme = str(http.get("scheme", "HTTP")).upper()
        if scheme != "HTTP":
            raise PermanentError(f"{path}.httpGet.scheme: only HTTP is supported locally, got {scheme}")
        target = http.get("path", "/")
        if not isinstance(target, str) or not target.startswith("/"):
            raise PermanentError(f"{path}.httpGet.path: must start with '/', got {target!r}")
        headers = []
        for index, header in enumerate(http.get("httpHeaders", []) or []):
            if not isinstance(header, Mapping) or not isinstance(header.get("name"), str):
                raise PermanentError(f"{path}.httpGet.httpHeaders[{index}]: needs name and value")
            headers.append((header["name"], str(header.get("value", ""))))
        return Probe(kind="http", path=target, headers=tuple(headers), **timing)
    if "tcpSocket" in probe:
        _mapping(probe["tcpSocket"], f"{path}.tcpSocket")
        return Probe(kind="tcp", **timing)
    handler = _mapping(probe["exec"], f"{path}.exec")
    command = _strings(handler.get("command", []), f"{path}.exec.command")
    if not command:
        raise PermanentError(f"{path}.exec.command: a command is required")
    return Probe(kind="exec", command=tuple(command), **timing)


def _mapping(value: object, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise PermanentError(f"{path}: must be an object, got {type(value).__name__}")
    return value


def _strings(value: object, path: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(word, str | int | float) for word in value):
        raise PermanentError(f"{path}: must be a list of strings, got {value!r}")
    return [str(word) for word in value]


def _number(value: object, path: str, *, minimum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PermanentError(f"{path}: must be a number, got {value!r}")
    if value < minimum:
        raise PermanentError(f"{path}: must be at least {minimum:g}, got {value}")
    return float(value)
