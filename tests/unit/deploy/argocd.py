"""Run Headway's Argo CD Lua customizations (deploy/argocd/) the way Argo CD does, and render the argocd-cm snippet.

Argo CD runs these scripts in Lua 5.1 (gopher-lua) with the object as the global ``obj``; a health script returns
``{status, message}``, an action returns the changed object, and ``error(...)`` refuses an action. lupa's Lua 5.1
runtime gives the same language here. Objects cross as JSON would: maps become tables, lists become 1-based
tables, and a field set to ``nil`` is gone.

``python -m tests.unit.deploy.argocd`` rewrites ``deploy/argocd/argocd-cm.yaml`` from the scripts; a test checks
that the committed snippet is what this renders.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml
from lupa import lua51

ROOT = Path(__file__).resolve().parents[3] / "deploy" / "argocd"
GROUP = "headway.dev"
HEALTH = {"Rollout": "health/Rollout.lua", "AnalysisRun": "health/run.lua", "Experiment": "health/run.lua"}
ACTIONS = {
    "Rollout": ("promote", "promote-full", "abort", "retry", "pause", "resume", "restart"),
    "AnalysisRun": ("terminate",),
}
SNIPPET = ROOT / "argocd-cm.yaml"


def script(relative: str) -> str:
    return (ROOT / relative).read_text(encoding="utf-8")


def run(source: str, obj: dict[str, Any]) -> Any:
    """Execute one script with ``obj`` as Argo CD passes it; returns what the script returns, as Python data.

    An empty Lua table is an empty list where ``obj`` had a list at that place (Lua cannot tell ``{}`` from
    ``[]``; Argo CD's patch keeps what the script did not touch).
    """
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True)
    runtime.globals().obj = _to_lua(runtime, obj)
    return _from_lua(runtime.execute(source), obj)


def health(obj: dict[str, Any]) -> dict[str, str]:
    return dict(run(script(HEALTH[obj["kind"]]), obj))


def discover(obj: dict[str, Any]) -> dict[str, bool]:
    """Action name → enabled."""
    found = run(script(f"actions/{obj['kind']}/discovery.lua"), obj)
    return {name: not entry.get("disabled", False) for name, entry in found.items()}


def act(action: str, obj: dict[str, Any]) -> dict[str, Any]:
    return dict(run(script(f"actions/{obj['kind']}/{action}/action.lua"), obj))


def _to_lua(runtime: Any, value: Any) -> Any:
    if isinstance(value, dict):
        return runtime.table_from({key: _to_lua(runtime, item) for key, item in value.items()})
    if isinstance(value, list):
        return runtime.table_from([_to_lua(runtime, item) for item in value])
    return value


def _from_lua(value: Any, like: Any = None) -> Any:
    if lua51.lua_type(value) != "table":
        return value
    items = dict(value.items())
    if not items and isinstance(like, list):
        return []
    if items and all(isinstance(key, int) for key in items) and sorted(items) == list(range(1, len(items) + 1)):
        sequence: list[Any] = like if isinstance(like, list) else []
        return [
            _from_lua(items[index], sequence[index - 1] if index <= len(sequence) else None)
            for index in range(1, len(items) + 1)
        ]
    mapping: dict[str, Any] = like if isinstance(like, dict) else {}
    return {key: _from_lua(item, mapping.get(key)) for key, item in items.items()}


class _Literal(yaml.SafeDumper):
    """Multi-line strings as ``|`` blocks, so the snippet reads like the scripts it carries."""


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Literal.add_representer(str, _string)


def _dump(value: object) -> str:
    return yaml.dump(value, Dumper=_Literal, sort_keys=False, width=1000)


def render() -> str:
    """The argocd-cm data keys that install every script (a merge patch for the argocd-cm ConfigMap)."""
    data: dict[str, str] = {}
    for kind, path in HEALTH.items():
        data[f"resource.customizations.health.{GROUP}_{kind}"] = script(path)
    for kind, names in ACTIONS.items():
        actions = {
            "discovery.lua": script(f"actions/{kind}/discovery.lua"),
            "definitions": [
                {"name": name, "action.lua": script(f"actions/{kind}/{name}/action.lua")} for name in names
            ],
        }
        data[f"resource.customizations.actions.{GROUP}_{kind}"] = _dump(actions)
    header = (
        "# Argo CD health checks and actions for Headway's kinds, generated from the scripts beside this file\n"
        "# (python -m tests.unit.deploy.argocd). Install:\n"
        "#   kubectl -n argocd patch configmap argocd-cm --type merge --patch-file deploy/argocd/argocd-cm.yaml\n"
    )
    return header + _dump({"data": data})


if __name__ == "__main__":
    SNIPPET.write_text(render(), encoding="utf-8")
    sys.stdout.write(f"wrote {SNIPPET}\n")
