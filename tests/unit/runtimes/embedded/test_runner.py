"""The embedded runner: applied manifests become rollouts, commands move them, timers and wake-ups drive passes."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest

from headway.core.hashing import pod_template_hash
from headway.platforms.fake import EPOCH
from headway.runtimes.embedded.runner import REVISION, ROLLOUT, CommandError, SteadyClock
from headway.spec.load import SpecError
from headway.spec.status import Phase
from headway.stores.base import NO_VERSION
from tests.unit.runtimes.embedded.world import MANIFEST, World


async def deployed(world: World) -> None:
    world.runner.apply_text(MANIFEST, "rollout.yaml")
    await world.turns(3)
    assert world.status().phase is Phase.HEALTHY


@pytest.mark.asyncio
async def test_an_applied_rollout_is_deployed_as_stable(world: World) -> None:
    applied = world.runner.apply_text(MANIFEST, "rollout.yaml")
    await world.turns(3)

    assert applied == ["Rollout/web"]
    status = world.status()
    assert status.phase is Phase.HEALTHY
    revision = world.platform.revision("default/web", status.stable_rs or "")
    assert revision is not None and revision.replicas == 2
    assert [e.reason for e in world.runner.events][:2] == ["Applied", "RolloutCreated"]


@pytest.mark.asyncio
async def test_set_image_canaries_and_promote_moves_past_the_pause(world: World) -> None:
    await deployed(world)

    world.runner.command("web", "set-image", container="app", image="web:v2")
    await world.turns(3)
    assert world.router.route("default/web").canary_weight == 20
    assert world.status().phase is Phase.PAUSED

    world.runner.command("web", "promote")
    await world.turns(3)
    assert world.router.route("default/web").canary_weight == 60

    await world.turns(4, step=5.0)  # the 10 s timed pause ends without a command
    status = world.status()
    assert status.phase is Phase.HEALTHY
    assert status.stable_rs == pod_template_hash(world.rollout().spec.template)


@pytest.mark.asyncio
async def test_promote_full_skips_every_step(world: World) -> None:
    await deployed(world)
    world.runner.command("web", "set-image", container="app", image="web:v2")
    await world.turns(2)

    world.runner.command("web", "promote", full=True)
    await world.turns(4)

    assert world.status().phase is Phase.HEALTHY
    assert world.status().stable_rs == pod_template_hash(world.rollout().spec.template)


@pytest.mark.asyncio
async def test_abort_sends_all_traffic_back_to_stable_and_retry_starts_again(world: World) -> None:
    await deployed(world)
    world.runner.command("web", "set-image", container="app", image="web:v2")
    await world.turns(3)

    world.runner.command("web", "abort")
    await world.turns(3)
    assert world.status().abort
    assert world.status().phase is Phase.DEGRADED
    assert world.router.route("default/web").canary_weight == 0

    world.runner.command("web", "retry")
    await world.turns(3)
    assert not world.status().abort
    assert world.router.route("default/web").canary_weight == 20


@pytest.mark.asyncio
async def test_undo_goes_back_to_the_previous_template_and_pause_holds(world: World) -> None:
    await deployed(world)
    first = world.status().stable_rs
    world.runner.command("web", "set-image", container="app", image="web:v2")
    await world.turns(2)
    world.runner.command("web", "promote", full=True)
    await world.turns(4)
    assert world.status().stable_rs != first

    world.runner.command("web", "pause")
    assert world.rollout().spec.paused
    world.runner.command("web", "resume")
    assert not world.rollout().spec.paused

    world.runner.command("web", "undo", to_revision=1)
    assert pod_template_hash(world.rollout().spec.template) == first
    with pytest.raises(CommandError, match="no revision 7"):
        world.runner.command("web", "undo", to_revision=7)


@pytest.mark.asyncio
async def test_commands_that_do_not_apply_say_why(world: World) -> None:
    await deployed(world)

    with pytest.raises(CommandError, match="nothing to abort"):
        world.runner.command("web", "abort")
    with pytest.raises(CommandError, match=r"container 'web' not found.*containers: app") as error:
        world.runner.command("web", "set-image", container="web", image="web:v2")
    assert error.value.status == 400
    with pytest.raises(CommandError, match="rollout 'nope' not found") as missing:
        world.runner.command("nope", "abort")
    assert missing.value.status == 404


@pytest.mark.asyncio
async def test_applying_only_new_objects_leaves_a_rollout_in_progress_alone(world: World) -> None:
    await deployed(world)
    world.runner.command("web", "set-image", container="app", image="web:v2")

    assert world.runner.apply_text(MANIFEST, "rollout.yaml", only_new=True) == []
    template = world.rollout().spec.template
    assert template is not None and template["spec"]["containers"][0]["image"] == "web:v2"
    other = MANIFEST.replace("name: web", "name: other")
    assert world.runner.apply_text(MANIFEST + "---\n" + other, "two.yaml", only_new=True) == ["Rollout/other"]


def test_an_invalid_manifest_is_refused_whole_with_field_paths(world: World) -> None:
    bad = MANIFEST.replace("setWeight: 60", "setWeight: 160") + "---\n" + MANIFEST.replace("name: web", "name: other")

    with pytest.raises(SpecError, match=r"steps\[2\]\.setWeight"):
        world.runner.apply_text(bad, "rollout.yaml")

    assert world.documents.list_documents(ROLLOUT) == []


@pytest.mark.asyncio
async def test_the_loop_reacts_to_a_wake_up_without_waiting_for_the_resync(world: World) -> None:
    world.runner.resync = 30.0
    loop = asyncio.create_task(world.runner.run())
    try:
        await asyncio.sleep(0.05)
        world.runner.apply_text(MANIFEST, "rollout.yaml")
        started = time.monotonic()
        seen = await world.runner.wait_for_change(world.runner.sequence, timeout=5.0)
        assert seen > 0
        assert time.monotonic() - started < 5.0
        deadline = time.monotonic() + 5.0
        while not any(e.reason == "RolloutCreated" for e in world.runner.events) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert any(e.reason == "RolloutCreated" for e in world.runner.events)
    finally:
        world.runner.stop()
        await asyncio.wait_for(loop, timeout=5.0)


@pytest.mark.asyncio
async def test_a_manifest_applied_over_a_serving_revision_with_no_saved_status_rolls_out_with_its_steps(
    world: World,
) -> None:
    """Issue #10 case 4: the database is lost while v4 keeps serving; re-applying v1 must canary v1 against v4
    through the steps, never replace v4 at full weight as a first deploy would."""
    world.runner.apply_text(MANIFEST.replace("web:v1", "web:v4"))
    await world.turns(3)
    v4 = world.status().stable_rs
    assert world.status().phase is Phase.HEALTHY and v4 is not None

    lost = World(now=world.now, platform=world.platform, router=world.router, runs=world.runs)  # a fresh store
    try:
        lost.runner.apply_text(MANIFEST)
        await lost.turns(3)
        status = lost.status()
        assert status.stable_rs == v4, "the serving revision was adopted as stable"
        assert status.current_pod_hash == pod_template_hash(lost.rollout().spec.template) != v4
        assert status.phase is Phase.PAUSED and status.current_step_index == 1
        assert world.router.route("default/web").canary_weight == 20, "v1 got the first step's weight, not 100"
        stable = world.platform.revision("default/web", v4)
        assert stable is not None and stable.replicas == 2, "v4 keeps serving"
        assert "RolloutAdopted" in [e.reason for e in lost.runner.events_after(0)]
    finally:
        lost.runner.close()


@pytest.mark.asyncio
async def test_a_first_deploy_with_nothing_serving_is_not_adopted(world: World) -> None:
    world.runner.apply_text(MANIFEST)
    await world.turns(3)
    assert world.status().phase is Phase.HEALTHY
    assert "RolloutAdopted" not in [e.reason for e in world.runner.events_after(0)]


def test_the_steady_clock_moves_with_real_time_not_with_steps_of_the_wall_clock() -> None:
    wall, ticks = [EPOCH], [100.0]
    clock = SteadyClock(wall=lambda: wall[0], monotonic=lambda: ticks[0])
    assert clock() == EPOCH
    ticks[0] += 5.0
    wall[0] += timedelta(hours=2)  # NTP steps the wall clock forward
    assert clock() == EPOCH + timedelta(seconds=5)
    ticks[0] += 1.0
    wall[0] -= timedelta(hours=3)  # and back
    assert clock() == EPOCH + timedelta(seconds=6)


def test_the_steady_clock_counts_time_spent_suspended() -> None:
    """It follows CLOCK_BOOTTIME (which a suspend advances), not CLOCK_MONOTONIC (which a suspend stops)."""
    import time

    from headway.runtimes.embedded.runner import _boot_time

    if not hasattr(time, "CLOCK_BOOTTIME"):
        pytest.skip("this system has no CLOCK_BOOTTIME")
    assert abs(_boot_time() - time.clock_gettime(time.CLOCK_BOOTTIME)) < 0.5
    clock = SteadyClock()
    assert clock._monotonic is _boot_time


def test_a_stored_rollout_that_no_longer_parses_is_said_on_the_rollout_once() -> None:
    world = World()
    world.documents.put_document(
        "Rollout",
        "default/old",
        {
            "apiVersion": "headway.dev/v1alpha1",
            "kind": "Rollout",
            "metadata": {"name": "old"},
            "spec": {"replicas": "2"},
        },
        NO_VERSION,
    )
    assert "default/old" not in world.runner.rollouts()
    world.runner.rollouts()
    events = [e for e in world.runner.events_after(0, "default/old") if e.reason == "InvalidSpec"]
    assert len(events) == 1 and events[0].type == "Warning" and "no longer parses" in events[0].message


@pytest.mark.asyncio
async def test_a_failure_after_the_pass_is_an_error_on_the_rollout_said_once(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    await deployed(world)
    real = world.documents.get_document

    def broken(kind: str, key: str) -> object:
        if kind == REVISION:  # read only after a pass, to remember the template of the revision it deployed
            raise OSError("the revision history cannot be read")
        return real(kind, key)

    monkeypatch.setattr(world.documents, "get_document", broken)
    world.runner.command("web", "set-image", container="app", image="web:v2")
    await world.turns(4)
    errors = [e for e in world.runner.events_after(0, "default/web") if e.reason == "ReconcileError"]
    assert len(errors) == 1, errors
    assert errors[0].type == "Warning" and "revision history" in errors[0].message


@pytest.mark.asyncio
async def test_the_loop_outlives_a_turn_that_fails(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    world.runner.resync = 0.05
    real = world.documents.list_documents
    failures = 0

    def flaky(kind: str) -> object:
        nonlocal failures
        if failures < 2:
            failures += 1
            raise OSError("database is locked")
        return real(kind)

    monkeypatch.setattr(world.documents, "list_documents", flaky)
    loop = asyncio.create_task(world.runner.run())
    try:
        world.runner.apply_text(MANIFEST, "rollout.yaml")
        deadline = time.monotonic() + 10.0
        while not any(e.reason == "RolloutCreated" for e in world.runner.events) and time.monotonic() < deadline:
            assert not loop.done(), "the runner loop ended"
            await asyncio.sleep(0.01)
        assert failures == 2
        assert any(e.reason == "RolloutCreated" for e in world.runner.events)
        [said] = [e for e in world.runner.events_after(0, "") if e.reason == "ReconcileError"]  # once, not twice
        assert said.type == "Warning" and "OSError: database is locked" in said.message
    finally:
        world.runner.stop()
        await asyncio.wait_for(loop, timeout=5.0)
