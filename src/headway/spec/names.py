"""Kubernetes object names, checked as the API server checks them, at every place a name enters Headway.

A Rollout's (and every other object's) ``metadata.name`` is a DNS-1123 subdomain and a namespace is a DNS-1123
label, as Kubernetes requires (``IsDNS1123Subdomain`` / ``IsDNS1123Label``). Checking that on the way in is not
pedantry: a name goes into URL paths (the daemon's API, the dashboard's, the API server's), and a name such as
``sur/abort?`` built into ``/api/v1/rollouts/{name}/resume`` addressed a different route and aborted rollout
``sur``. So the CLI, the HTTP routes, the dashboard's actions and ``apply`` all refuse a bad name with the rule it
breaks, and URLs quote every segment besides.

Pure functions: no I/O, usable from the spec, the CLI and the runtimes alike.
"""

from __future__ import annotations

import re

SUBDOMAIN_MAX = 253
LABEL_MAX = 63

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_LABEL_RE = re.compile(_LABEL)
_SUBDOMAIN_RE = re.compile(rf"{_LABEL}(\.{_LABEL})*")
_KEY_RE = re.compile(r"[-._a-zA-Z0-9]+")
# Matched with fullmatch: ``$`` would also match before a final newline, letting ``"web\n"`` through.

SUBDOMAIN_RULE = (
    "a lowercase RFC 1123 subdomain: at most 253 characters, lower case letters, digits, '-' and '.', "
    "starting and ending with a letter or digit (e.g. 'web' or 'web.v2')"
)
LABEL_RULE = (
    "a lowercase RFC 1123 label: at most 63 characters, lower case letters, digits and '-', "
    "starting and ending with a letter or digit (e.g. 'shop')"
)


class InvalidNameError(ValueError):
    """A name that Kubernetes would refuse; the message names what it is (``what``) and the rule it breaks."""

    def __init__(self, what: str, value: str, problem: str) -> None:
        super().__init__(f"{what}: {value!r} is not a valid name: {problem}")
        self.what = what
        self.value = value
        self.problem = problem


def subdomain_problem(value: str) -> str | None:
    """Why ``value`` is not a DNS-1123 subdomain (an object's ``metadata.name``), or None when it is one."""
    return _problem(value, SUBDOMAIN_MAX, _SUBDOMAIN_RE, SUBDOMAIN_RULE)


def label_problem(value: str) -> str | None:
    """Why ``value`` is not a DNS-1123 label (a namespace), or None when it is one."""
    return _problem(value, LABEL_MAX, _LABEL_RE, LABEL_RULE)


KEY_RULE = "at most 253 characters, letters, digits, '-', '_' and '.', and neither '.' nor starting with '..'"


def key_problem(value: str) -> str | None:
    """Why ``value`` is not a Secret (or ConfigMap) data key as Kubernetes checks it (``IsConfigMapKey``), or None.

    Such a key never holds a ``/`` nor is ``..``: it names a file in a directory of secrets safely."""
    problem = _problem(value, SUBDOMAIN_MAX, _KEY_RE, KEY_RULE)
    if problem is None and (value == "." or value.startswith("..")):
        return "it must be " + KEY_RULE
    return problem


def _problem(value: str, longest: int, pattern: re.Pattern[str], rule: str) -> str | None:
    if not value:
        return "it is empty; it must be " + rule
    if len(value) > longest:
        return f"it is {len(value)} characters long; it must be " + rule
    if not pattern.fullmatch(value):
        return "it must be " + rule
    return None


def check_name(value: str, what: str = "name") -> str:
    """``value`` if it is a valid object name, else `InvalidNameError` naming ``what`` (the argument, the field)."""
    problem = subdomain_problem(value)
    if problem is not None:
        raise InvalidNameError(what, value, problem)
    return value


def check_namespace(value: str, what: str = "namespace") -> str:
    """``value`` if it is a valid namespace, else `InvalidNameError` naming ``what``."""
    problem = label_problem(value)
    if problem is not None:
        raise InvalidNameError(what, value, problem)
    return value


def check_key(value: str, what: str = "name") -> tuple[str | None, str]:
    """``NAME`` or ``NAMESPACE/NAME`` (how the embedded CLI and API address a rollout), each part checked.

    Returns ``(namespace or None, name)``; a wrong part raises `InvalidNameError` naming ``what``."""
    namespace, slash, name = value.rpartition("/")
    if not slash:
        return None, check_name(value, what)
    check_namespace(namespace, f"{what} (namespace part of NAMESPACE/NAME)")
    return namespace, check_name(name, what)


def metadata_problems(name: str, namespace: str) -> list[tuple[str, str]]:
    """``(path, message)`` for a manifest whose ``metadata.name`` or ``metadata.namespace`` Kubernetes would refuse.

    An empty name is left to the caller (it is either missing, or to be generated from ``generateName``)."""
    found: list[tuple[str, str]] = []
    problem = subdomain_problem(name) if name else None
    if problem is not None:
        found.append(("metadata.name", f"{name!r} is not a valid name: {problem}"))
    problem = label_problem(namespace)
    if problem is not None:
        found.append(("metadata.namespace", f"{namespace!r} is not a valid namespace: {problem}"))
    return found
