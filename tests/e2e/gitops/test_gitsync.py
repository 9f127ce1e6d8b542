"""The embedded mode's Git sync against a real repository served by ``git daemon``: commits drive the rollouts.

The runner is the real one over the fake platform and router in virtual time, so a whole story (a release, an
invalid commit, a revert, a force-push) takes a second; what is real is Git: the daemon, the fetches, the trees.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from headway.runtimes.embedded.gitsync import GitConfig, GitSource, GitSync, redact
from headway.spec.status import Phase
from tests.e2e.gitops.repo import Served, served_repository
from tests.unit.runtimes.embedded.world import MANIFEST, World

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="the git command is not installed")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with served_repository(tmp_path) as repository:
        yield repository


def _sync(served: Served, world: World, tmp_path: Path, *, path: str = ".") -> GitSync:
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    source = GitSource(GitConfig(served.url, ref="main", path=path), state)
    return GitSync(source=source, apply=world.runner.apply_documents, state=state / "git-sync.json")


def _image(world: World) -> str:
    template = world.rollout().spec.template or {}
    return str(template["spec"]["containers"][0]["image"])


@pytest.mark.asyncio
async def test_each_commit_is_applied_once_and_an_image_change_starts_a_canary(served: Served, tmp_path: Path) -> None:
    world = World()
    sync = _sync(served, world, tmp_path, path="deploy")
    first = served.commit({"deploy/web.yaml": MANIFEST, "README.md": "not a manifest"}, "web v1")
    outcome = sync.poll()
    assert (outcome.sha, outcome.applied, outcome.subject) == (first, ("Rollout/web",), "web v1")
    await world.turns(5)
    assert world.status().phase is Phase.HEALTHY
    assert sync.poll().changed is False  # nothing new: nothing applied again

    second = served.commit({"deploy/web.yaml": MANIFEST.replace("web:v1", "web:v2")}, "web v2")
    assert sync.poll().sha == second
    assert _image(world) == "web:v2"
    await world.turns(3)
    status = world.status()
    assert status.current_pod_hash != status.stable_rs, "a new image starts a canary, not a replacement"
    assert status.current_step_index is not None and status.current_step_index < 4


@pytest.mark.asyncio
async def test_an_invalid_commit_is_refused_whole_with_the_file_and_field_and_changes_nothing(
    served: Served, tmp_path: Path
) -> None:
    world = World()
    sync = _sync(served, world, tmp_path)
    served.commit({"web.yaml": MANIFEST}, "web v1")
    sync.poll()
    template = """\
apiVersion: headway.dev/v1alpha1
kind: AnalysisTemplate
metadata: {name: ok}
spec:
  metrics: [{name: m, provider: {web: {url: "http://127.0.0.1:1/"}}}]
"""
    broken = MANIFEST.replace("web:v1", "web:v2").replace("setWeight: 20", "setWeight: 150")
    bad = served.commit({"web.yaml": broken, "template.yaml": template}, "web v2, broken")
    outcome = sync.poll()
    assert outcome.sha == bad and outcome.applied == ()
    rendered = [problem.render() for problem in outcome.problems]
    assert any(
        line.startswith("web.yaml: Rollout/web: spec.strategy.canary.steps[0].setWeight: ") for line in rendered
    ), rendered
    assert _image(world) == "web:v1", "no file of a refused commit is applied"
    assert world.runner.documents.list_documents("AnalysisTemplate") == []
    assert sync.poll().changed is False, "the same bad commit is not tried again"


@pytest.mark.asyncio
async def test_a_revert_is_a_fast_rollback_to_the_revision_already_running(served: Served, tmp_path: Path) -> None:
    world = World()
    sync = _sync(served, world, tmp_path)
    served.commit({"web.yaml": MANIFEST}, "web v1")
    sync.poll()
    await world.turns(5)
    stable = world.status().stable_rs
    served.commit({"web.yaml": MANIFEST.replace("web:v1", "web:v2")}, "web v2")
    sync.poll()
    await world.turns(3)
    assert world.status().current_pod_hash != stable  # v2 is being canaried

    reverted = served.revert()
    outcome = sync.poll()
    assert outcome.sha == reverted and outcome.subject.startswith('Revert "web v2"')
    await world.turns(3)
    status = world.status()
    assert status.current_pod_hash == status.stable_rs == stable
    assert status.phase is Phase.HEALTHY
    assert world.router.read_weight(world.rollout()).canary_weight == 0


@pytest.mark.asyncio
async def test_a_force_push_that_rewrites_history_is_followed(served: Served, tmp_path: Path) -> None:
    world = World()
    sync = _sync(served, world, tmp_path)
    first = served.commit({"web.yaml": MANIFEST}, "web v1")
    sync.poll()
    served.commit({"web.yaml": MANIFEST.replace("web:v1", "web:v2")}, "web v2")
    sync.poll()
    assert _image(world) == "web:v2"
    rewritten = served.force_reset(first)
    assert rewritten == first
    served.commit({"web.yaml": MANIFEST.replace("web:v1", "web:v3")}, "web v3 on rewritten history")
    outcome = sync.poll()
    assert outcome.applied == ("Rollout/web",) and _image(world) == "web:v3"


def test_the_last_commit_survives_a_restart(served: Served, tmp_path: Path) -> None:
    world = World()
    served.commit({"web.yaml": MANIFEST}, "web v1")
    assert _sync(served, world, tmp_path).poll().applied == ("Rollout/web",)
    again = _sync(served, World(), tmp_path)
    assert again.poll().changed is False


def test_credentials_never_reach_a_message(tmp_path: Path) -> None:
    config = GitConfig("http://alice:s3cret-token@127.0.0.1:1/site.git", ref="main")
    sync = GitSync(source=GitSource(config, tmp_path), apply=lambda docs, source: [], state=tmp_path / "s.json")
    outcome = sync.poll()
    assert outcome.error is not None and "s3cret" not in outcome.error and "alice" not in outcome.error
    assert "http://***@127.0.0.1:1/site.git" in outcome.error
    assert not (tmp_path / "s.json").exists(), "a failed fetch records nothing"
    assert redact("fatal: https://u:p@h/x and ssh://git@h/y") == "fatal: https://***@h/x and ssh://***@h/y"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("ref", "--upload-pack=evil", "--ref"),
        ("ref", "main branch", "--ref"),
        ("path", "../outside", "--path"),
        ("path", "/etc", "--path"),
    ],
)
def test_options_that_could_escape_are_refused(field: str, value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GitConfig("file:///tmp/x", **{field: value})  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_a_commit_that_crashes_the_checks_is_refused_not_retried_forever(served: Served, tmp_path: Path) -> None:
    world = World()
    sync = _sync(served, world, tmp_path)
    served.commit({"web.yaml": MANIFEST + "---\nrecursive: &r\n  again: *r\n"}, "a recursive alias")
    outcome = sync.poll()
    assert outcome.applied == () and (outcome.problems or outcome.error)
    assert sync.poll().changed is False, "refused once, not retried every poll"


def test_a_commit_too_big_to_read_is_refused_before_it_is_read(served: Served, tmp_path: Path) -> None:
    world = World()
    sync = _sync(served, world, tmp_path)
    filler = "# " + "x" * 1000 + "\n"
    served.commit({f"f{i:03d}.yaml": filler * 1000 for i in range(20)}, "twenty files of a megabyte")
    outcome = sync.poll()
    assert outcome.error is not None and "more than" in outcome.error, outcome
    assert outcome.applied == ()


def test_headway_down_forgets_the_commit_with_the_rollouts_it_made(tmp_path: Path) -> None:
    from headway.runtimes.embedded.state_dir import forget
    from headway.runtimes.embedded.state_files import GIT_STATE_FILE

    (tmp_path / GIT_STATE_FILE).write_text('{"url": "x", "applied": "abc", "refused": null}')
    forget(tmp_path)
    assert not (tmp_path / GIT_STATE_FILE).exists(), "the next start must apply the branch again"


@pytest.mark.asyncio
async def test_a_repository_that_cannot_be_reached_is_an_event_once_not_only_a_log_line(tmp_path: Path) -> None:
    import asyncio

    from headway.runtimes.embedded.gitsync import watch

    config = GitConfig("http://alice:s3cret@127.0.0.1:1/site.git", ref="main", interval=0.1)
    sync = GitSync(source=GitSource(config, tmp_path), apply=lambda docs, source: [], state=tmp_path / "s.json")
    recorded: list[tuple[str, str, str, str]] = []
    stopping = asyncio.Event()
    task = asyncio.create_task(watch(sync, record=lambda *event: recorded.append(event), stopping=stopping))
    await asyncio.sleep(1.5)  # many polls, every one failing the same way
    stopping.set()
    await task
    assert [(key, kind, reason) for key, kind, reason, _ in recorded] == [("", "Warning", "GitSyncFailed")]
    assert "s3cret" not in recorded[0][3] and "127.0.0.1:1" in recorded[0][3]
