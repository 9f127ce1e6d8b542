"""`headway simulate`: a readable timeline, one JSON document with --json, lint problems (never a traceback)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from headway.cli.simulate import simulate

ROLLOUT = {
    "apiVersion": "argoproj.io/v1alpha1",
    "kind": "Rollout",
    "metadata": {"name": "web"},
    "spec": {
        "replicas": 4,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "example/web:1.0.0"}]},
        },
        "strategy": {"canary": {"steps": [{"setWeight": 25}, {"pause": {"duration": 60}}, {"setWeight": 50}]}},
    },
}


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    path = tmp_path / "rollout.yaml"
    path.write_text(yaml.safe_dump(ROLLOUT))
    return path


def test_prints_a_timeline_and_a_summary(manifest: Path) -> None:
    result = CliRunner().invoke(simulate, [str(manifest)])

    assert result.exit_code == 0, result.output
    assert "example/web:1.0.0 → example/web:1.1.0" in result.output
    assert "RolloutCompleted" in result.output
    assert "outcome: promoted" in result.output


def test_json_is_one_document_with_timeline_and_summary(manifest: Path) -> None:
    result = CliRunner().invoke(simulate, [str(manifest), "--scenario", "crashloop", "--json"])

    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["summary"]["outcome"] == "degraded"
    assert document["timeline"][0]["at"] == 0


def test_auto_promote_plays_the_user(tmp_path: Path) -> None:
    body = json.loads(json.dumps(ROLLOUT))
    body["spec"]["strategy"]["canary"]["steps"] = [{"setWeight": 25}, {"pause": {}}]
    path = tmp_path / "paused.yaml"
    path.write_text(yaml.safe_dump(body))

    waiting = CliRunner().invoke(simulate, [str(path), "--json"])
    promoted = CliRunner().invoke(simulate, [str(path), "--json", "--auto-promote", "30"])

    assert json.loads(waiting.output)["summary"]["outcome"] == "paused"
    assert json.loads(promoted.output)["summary"]["outcome"] == "promoted"


def test_a_file_with_errors_prints_its_problems_and_exits_1(tmp_path: Path) -> None:
    body = json.loads(json.dumps(ROLLOUT))
    body["spec"]["strategy"]["canary"]["steps"] = [{"setWeight": 150}]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(body))

    result = CliRunner().invoke(simulate, [str(path)])

    assert result.exit_code == 1
    assert "steps[0].setWeight" in result.output
    assert "Traceback" not in result.output


def test_a_missing_file_is_a_problem_not_a_traceback(tmp_path: Path) -> None:
    result = CliRunner().invoke(simulate, [str(tmp_path / "nope.yaml")])

    assert result.exit_code == 1
    assert "no such file" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_a_file_without_a_rollout_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "service.yaml"
    path.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: web}\n")

    result = CliRunner().invoke(simulate, [str(path)])

    assert result.exit_code == 1
    assert "no Rollout" in result.output
