"""`headway lint`: output lines, exit status, --json, directories, and no tracebacks on bad input."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from headway import __version__
from headway.cli.main import main
from tests.unit.spec.manifests import canary, dump, rollout, template

ROOT = Path(__file__).resolve().parents[3]


def run(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), input=stdin)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in a temporary directory so that file names print as the user typed them."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_issue_example(workdir: Path) -> None:
    (workdir / "rollout.yaml").write_text(dump(canary(steps=[{"setWeight": 10}, {"pause": {}}, {"setWeight": 150}])))
    status, out, err = run("lint", "rollout.yaml")
    assert status == 1
    assert out == "rollout.yaml: Rollout/web: spec.strategy.canary.steps[2].setWeight: 150 is out of range 0..100\n"
    assert err == "1 object: 1 error, 0 warnings\n"


def test_clean_files_exit_zero(workdir: Path) -> None:
    (workdir / "a.yaml").write_text(dump(rollout(), template()))
    assert run("lint", "a.yaml") == (0, "", "2 objects: 0 errors, 0 warnings\n")


def test_warnings_alone_exit_zero(workdir: Path) -> None:
    manifest = rollout()
    manifest["spec"]["surge"] = 1
    (workdir / "a.yaml").write_text(dump(manifest))
    status, out, _ = run("lint", "a.yaml")
    assert (status, out) == (0, "a.yaml: Rollout/web: spec.surge: unknown field (ignored)\n")


def test_every_problem_of_every_file_is_printed_in_file_order(workdir: Path) -> None:
    (workdir / "b.yaml").write_text(dump(canary(steps=[{"setWeight": 101}])))
    (workdir / "a.yaml").write_text("kind: [\n")
    status, out, _ = run("lint", "b.yaml", "a.yaml", "missing.yaml")
    assert status == 1
    assert out.splitlines() == [
        "b.yaml: Rollout/web: spec.strategy.canary.steps[0].setWeight: 101 is out of range 0..100",
        "a.yaml: invalid YAML at line 2, column 1: did not find expected node content",
        "missing.yaml: no such file or directory",
    ]


def test_templates_in_another_file_are_part_of_the_lint_set(workdir: Path) -> None:
    (workdir / "template.yaml").write_text(dump(template(args=[{"name": "service-name"}])))
    step = canary(steps=[{"analysis": {"templates": [{"templateName": "rate"}]}}])
    (workdir / "rollout.yaml").write_text(dump(step))
    status, out, _ = run("lint", "rollout.yaml", "template.yaml")
    assert status == 1
    assert out == (
        "rollout.yaml: Rollout/web: spec.strategy.canary.steps[0].analysis.args: argument 'service-name' of "
        "AnalysisTemplate 'rate' has no value and is not supplied here\n"
    )
    assert run("lint", "rollout.yaml")[0] == 0


def test_directories_are_searched_for_yaml_files(workdir: Path) -> None:
    (workdir / "deploy" / "nested").mkdir(parents=True)
    (workdir / "deploy" / "nested" / "bad.yml").write_text(dump(canary(maxSurge=0, maxUnavailable=0)))
    (workdir / "deploy" / "good.yaml").write_text(dump(rollout("api")))
    (workdir / "deploy" / "notes.txt").write_text("not yaml: [")
    status, out, err = run("lint", "deploy", "deploy/good.yaml")
    assert status == 1
    assert out == (
        "deploy/nested/bad.yml: Rollout/web: spec.strategy.canary.maxSurge: maxSurge and maxUnavailable cannot "
        "both be 0 (no pod could be replaced)\n"
    )
    assert err == "2 objects: 1 error, 0 warnings\n"


def test_an_empty_directory_and_an_unreadable_file_are_errors(workdir: Path) -> None:
    (workdir / "empty").mkdir()
    (workdir / "binary.yaml").write_bytes(b"\xff\xfe\x00")
    status, out, _ = run("lint", "empty", "binary.yaml")
    assert status == 1
    assert out.splitlines() == [
        "empty: directory has no .yaml or .yml files",
        "binary.yaml: not UTF-8 text (byte 0)",
    ]


def test_standard_input() -> None:
    status, out, _ = run("lint", "-", stdin=dump(canary(steps=[{"setWeight": -5}])))
    assert status == 1
    assert out == "<stdin>: Rollout/web: spec.strategy.canary.steps[0].setWeight: -5 is out of range 0..100\n"


def test_json_output(workdir: Path) -> None:
    manifest = canary(steps=[{"setWeight": 150}], color="blue")
    (workdir / "rollout.yaml").write_text(dump(manifest))
    status, out, err = run("lint", "--json", "rollout.yaml")
    assert (status, err) == (1, "")
    report = json.loads(out)
    assert (report["errors"], report["warnings"], report["objects"]) == (1, 1, 1)
    assert report["problems"][0] == {
        "file": "rollout.yaml",
        "document": 1,
        "line": report["problems"][0]["line"],
        "kind": "Rollout",
        "name": "web",
        "path": "spec.strategy.canary.steps[0].setWeight",
        "severity": "error",
        "message": "150 is out of range 0..100",
    }
    assert report["problems"][1]["severity"] == "warning"


def test_no_file_is_a_usage_error() -> None:
    status, _, err = run("lint")
    assert status == 2
    assert "Missing argument 'FILE...'" in err


def test_version() -> None:
    status, out, _ = run("--version")
    assert (status, out) == (0, f"headway, version {__version__}\n")


def _mode_warnings_only(out: str) -> bool:
    """Each manifest is written for one mode: what the other lacks is the only thing reported (as a warning)."""
    return all(re.search(r": the (embedded|kubernetes) mode ", line) for line in out.splitlines())


def test_the_examples_and_argo_manifests_pass() -> None:
    status, out, _ = run("lint", str(ROOT / "examples"))
    assert status == 0 and _mode_warnings_only(out), out
    for path in sorted((ROOT / "tests" / "data" / "argo").glob("*.yaml")):
        status, out, _ = run("lint", str(path))
        if path.name == "docs-analysis-run-multiple-templates.yaml":  # a placeholder name Kubernetes refuses
            assert status == 1 and out.count("\n") == 1, out
            assert ": AnalysisRun/guestbook-CurrentPodHash-multiple-templates: metadata.name: " in out
            continue
        assert status == 0 and _mode_warnings_only(out), (path.name, out)


def test_as_a_module_in_a_subprocess(tmp_path: Path) -> None:
    (tmp_path / "rollout.yaml").write_text(dump(canary(steps=[{"setWeight": 10}, {"pause": {}}, {"setWeight": 150}])))
    (tmp_path / "broken.yaml").write_text("spec:\n  - a\n b: c\n")
    result = subprocess.run(
        [sys.executable, "-m", "headway.cli.main", "lint", "rollout.yaml", "broken.yaml", "nowhere"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "rollout.yaml: Rollout/web: spec.strategy.canary.steps[2].setWeight: 150 is out of range 0..100",
        "broken.yaml: invalid YAML at line 3, column 2: did not find expected key",
        "nowhere: no such file or directory",
    ]
    assert "Traceback" not in result.stderr


def test_condition_syntax_errors_are_reported_with_their_position(workdir: Path) -> None:
    (workdir / "t.yaml").write_text(
        "apiVersion: argoproj.io/v1alpha1\nkind: AnalysisTemplate\nmetadata: {name: rate}\nspec:\n  metrics:\n"
        "  - name: ok\n    successCondition: 'result[0] >= 0.95 &&'\n"
        "    provider: {prometheus: {address: 'http://p:9090', query: up}}\n"
        "  - name: argo-style\n    failureCondition: len(result) > 0 and not isNaN(result[0]) and result[0] > 0.01\n"
        "    provider: {prometheus: {address: 'http://p:9090', query: up}}\n"
    )
    code, out, _ = run("lint", "t.yaml")
    assert code == 1
    lines = out.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("t.yaml: AnalysisTemplate/rate: spec.metrics[0].successCondition: ")
    assert "position 20" in lines[0]


def test_what_a_mode_lacks_is_a_warning_by_default_and_an_error_for_that_mode(workdir: Path) -> None:
    istio = {"virtualService": {"name": "web", "routes": ["primary"]}}
    manifest = canary(canaryService="c", stableService="s", trafficRouting={"istio": istio}, steps=[{"setWeight": 5}])
    (workdir / "a.yaml").write_text(dump(manifest))
    line = "a.yaml: Rollout/web: spec.strategy.canary.trafficRouting.istio: the embedded mode cannot drive istio"

    default, embedded, kubernetes = (
        run("lint", "a.yaml"),
        run("lint", "--mode", "embedded", "a.yaml"),
        run("lint", "--mode", "kubernetes", "a.yaml"),
    )

    assert default[0] == 0 and default[1].startswith(line) and default[2] == "1 object: 0 errors, 1 warning\n"
    assert embedded[0] == 1 and embedded[1].startswith(line) and embedded[2] == "1 object: 1 error, 0 warnings\n"
    assert kubernetes == (0, "", "1 object: 0 errors, 0 warnings\n")
    assert run("lint", "--mode", "cloud", "a.yaml")[0] == 2  # a usage error, naming the choices


def test_a_judge_setting_the_judge_does_not_know_is_an_error_with_its_line(workdir: Path) -> None:
    """A snake_case setting used to pass lint and then be ignored by the judge, which ran on its default."""
    (workdir / "t.yaml").write_text(
        "apiVersion: argoproj.io/v1alpha1\nkind: AnalysisTemplate\nmetadata: {name: judge}\nspec:\n"
        "  args: [{name: alpha}]\n  metrics:\n"
        "  - name: errors\n    interval: 10s\n    provider:\n      plugin:\n        headway.dev/judge:\n"
        "          source: prometheus\n          prometheus: {address: 'http://p:9090', query: up}\n"
        "          tolerated_ratio: 1.1\n"
        "  - name: placeholders\n    interval: 10s\n    provider:\n      plugin:\n"
        "        headway.dev/judge: {source: prometheus, alpha: '{{args.alpha}}'}\n"
    )
    code, out, _ = run("lint", "--json", "t.yaml")
    assert code == 1
    [problem] = [p for p in json.loads(out)["problems"] if p["severity"] == "error"]
    assert problem["path"] == "spec.metrics[0]" and problem["line"] == 9
    assert problem["message"].startswith(
        "provider.plugin['headway.dev/judge'].tolerated_ratio: not a judge setting"
    ) and problem["message"].endswith("did you mean 'toleratedRatio'?")
