"""Which instance a rollout command acts on: asked for both the local instance and a cluster, it refuses.

A control command (promote, abort, undo...) that guessed would act on rollouts the user did not name: the local
ones when a cluster flag was given under ``HEADWAY_MODE=embedded``, or a cluster's when ``--state-dir`` was typed
along with ``--kubeconfig``. Both are usage errors (exit 2) naming the two things asked for, decided before any
instance or cluster is contacted.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from headway.cli.main import main

COMMANDS = [
    ["promote", "web"],
    ["abort", "web"],
    ["undo", "web"],
    ["set", "image", "web", "app=v2"],
    ["status", "web", "--timeout", "1"],
    ["get", "rollout", "web"],
    ["list", "rollouts"],
]


def _run(monkeypatch: pytest.MonkeyPatch, mode: str | None, *args: str) -> Result:
    monkeypatch.setattr("sys.argv", ["headway"])  # not the kubectl plugin
    if mode is None:
        monkeypatch.delenv("HEADWAY_MODE", raising=False)
    else:
        monkeypatch.setenv("HEADWAY_MODE", mode)
    monkeypatch.delenv("HEADWAY_STATE_DIR", raising=False)
    return CliRunner().invoke(main, list(args))


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_a_typed_state_dir_with_a_cluster_flag_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, command: list[str]
) -> None:
    kubeconfig = tmp_path / "missing-kubeconfig"  # never read: the choice is refused first

    result = _run(monkeypatch, None, *command, "--state-dir", str(tmp_path), "--kubeconfig", str(kubeconfig))

    assert result.exit_code == 2, result.output
    assert "--state-dir" in result.output and "--kubeconfig targets a cluster" in result.output


def test_a_state_dir_with_headway_mode_kubernetes_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    result = _run(monkeypatch, "kubernetes", "abort", "web", "--state-dir", str(tmp_path))

    assert result.exit_code == 2, result.output
    assert "HEADWAY_MODE=kubernetes targets a cluster" in result.output


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_a_cluster_flag_under_headway_mode_embedded_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, command: list[str]
) -> None:
    result = _run(monkeypatch, "embedded", *command, "--context", "prod", "--state-dir", str(tmp_path))

    assert result.exit_code == 2, result.output
    assert "HEADWAY_MODE" in result.output and "--context targets a cluster" in result.output


def test_the_state_dir_from_the_environment_does_not_conflict_with_a_cluster_flag(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr("sys.argv", ["headway"])
    monkeypatch.delenv("HEADWAY_MODE", raising=False)
    monkeypatch.setenv("HEADWAY_STATE_DIR", str(tmp_path))  # ambient, not asked for by this command
    missing = tmp_path / "missing-kubeconfig"

    result = CliRunner().invoke(main, ["promote", "web", "--kubeconfig", str(missing)])

    assert result.exit_code == 1, result.output  # the cluster was chosen: its kubeconfig is what failed
    assert f"cannot load kubeconfig {missing}" in result.output


def test_each_alone_still_chooses_its_instance(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    local = _run(monkeypatch, None, "promote", "web", "--state-dir", str(tmp_path))
    assert local.exit_code == 1 and "cannot reach a running Headway instance" in local.output
    embedded = _run(monkeypatch, "embedded", "promote", "web", "--state-dir", str(tmp_path))
    assert embedded.exit_code == 1 and "cannot reach a running Headway instance" in embedded.output
