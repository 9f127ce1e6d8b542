"""`make demo` (``python -m headway.cli.demo``): the embedded mode's whole story on one machine, in under a minute.

The bundled sample app v1 runs as stable under a steady load; v2 (healthy) is canaried step by step and promoted;
v3 (30% errors, slower) is caught by the statistical judge, which compares it with stable from the proxy's own
counters, and is rolled back automatically. Everything is real: the controller runs in this process, the weighted
proxy and every app replica are their own processes, requests are real HTTP on 127.0.0.1. A live view shows the
rollout as it moves; a summary closes it (requests per version, failed requests, the bad version's exposure before
the rollback, every decision and why). The exit status is 0 only if the story went as it should: v2 promoted, v3
aborted by the analysis, and no request failed because of the machinery.

``make demo-gitops`` (``--gitops``) tells the same story in Git: each release is a commit to a local repository
that Headway follows as ``headway up --git`` does, and the rolled-back v3 is then undone with ``git revert``, which
Headway applies as a fast return to the v2 already running; the summary adds the commits it followed.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from headway.bootstrap.embedded import build_embedded
from headway.manifest_files import read_text
from headway.runtimes.embedded import gitsync
from headway.runtimes.embedded.daemon import detail
from headway.runtimes.embedded.proxies import PROXY_PLUGIN
from headway.runtimes.embedded.service import Embedded
from headway.spec.load import load_yaml

EXAMPLE_DIR = Path(__file__).resolve().parents[3] / "examples" / "embedded"
ROLLOUT = "demo"
RATE = 100.0
STEP_TIMEOUT = 60.0
DECISIONS = (
    "RolloutCreated",
    "RolloutUpdated",
    "RolloutStepCompleted",
    "AnalysisRunRunning",
    "AnalysisRunFailed",
    "RolloutAborted",
    "RolloutCompleted",
    "GitSynced",
    "GitSyncRefused",
)


@dataclass
class Story:
    """What the demo saw, for the live view and the summary."""

    phase: str = "starting"
    chapter: str = "starting Headway"
    v3_started: float | None = None
    v3_aborted: float | None = None
    v3_max_weight: int = 0
    v3_requests_at_abort: int = 0
    checks: list[tuple[str, bool]] = field(default_factory=list)


def _loadgen() -> ModuleType:
    path = EXAMPLE_DIR / "loadgen.py"
    if not path.exists():
        raise SystemExit(f"demo: {path} not found; run `make demo` from a clone of the repository")
    spec = importlib.util.spec_from_file_location("headway_demo_loadgen", path)
    assert spec is not None and spec.loader is not None  # noqa: S101 - an invariant for the type checker, not a check of input
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def manifest() -> str:
    """The example manifest, made fit for any machine: any free traffic port, the app by absolute path."""
    path = EXAMPLE_DIR / "rollout.yaml"
    documents = [document for document in load_yaml(read_text(path), str(path)) if document is not None]
    for document in documents:
        if document.get("kind") != "Rollout":
            continue
        canary = document["spec"]["strategy"]["canary"]
        canary["trafficRouting"]["plugins"][PROXY_PLUGIN]["port"] = 0
        container = document["spec"]["template"]["spec"]["containers"][0]
        container["command"] = [sys.executable, str(EXAMPLE_DIR / "app.py")]
    return yaml.safe_dump_all(documents)


class Commands:
    """The story told with the CLI's verbs: apply the manifest, then ``set image``."""

    label = ""

    def __init__(self, embedded: Embedded) -> None:
        self.runner = embedded.runner

    async def start(self, text: str) -> None:
        await self.runner.apply(text, "examples/embedded/rollout.yaml")

    async def release(self, image: str) -> None:
        await self.runner.act(ROLLOUT, "set-image", container="app", image=image)


class Commits:
    """The story told in Git (``make demo-gitops``): every release is a commit to a local repository that Headway
    follows, as ``headway up --git`` does, and the bad one is undone with ``git revert``."""

    label = " (GitOps)"

    def __init__(self, embedded: Embedded, root: Path) -> None:
        self.embedded = embedded
        self.work = root / "repository"
        self.text = ""
        self.commits: list[tuple[str, str]] = []

    def _git(self, *args: str) -> str:
        done = subprocess.run(  # noqa: S603 - a fixed argv, no shell
            ["git", "-c", "user.name=Headway Demo", "-c", "user.email=demo@headway.invalid", *args],  # noqa: S607 - git from PATH, as the user runs it
            cwd=self.work,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        return done.stdout.strip()

    def _commit(self, text: str, message: str) -> None:
        (self.work / "deploy").mkdir(parents=True, exist_ok=True)
        (self.work / "deploy" / "demo.yaml").write_text(text)
        self._git("add", "-A")
        self._git("commit", "-q", "-m", message)
        self.commits.append((self._git("rev-parse", "--short=12", "HEAD"), message))

    async def start(self, text: str) -> None:
        self.work.mkdir(parents=True)
        self._git("init", "-q", "-b", "main")
        self.text = text
        self._commit(text, "demo: v1")
        config = gitsync.GitConfig(url=str(self.work), ref="main", path="deploy", interval=0.3)
        self.embedded.sync_git(config)
        deadline = time.monotonic() + STEP_TIMEOUT
        while not any(key.endswith(f"/{ROLLOUT}") for key in self.embedded.runner.rollouts()):
            if time.monotonic() > deadline:
                raise TimeoutError("timed out waiting for the first commit to be applied")
            await asyncio.sleep(0.1)

    async def release(self, image: str) -> None:
        self._commit(re.sub(r"image: v\d+", f"image: {image}", self.text), f"demo: {image}")

    async def revert(self) -> None:
        self._git("revert", "--no-edit", "HEAD")
        self.commits.append((self._git("rev-parse", "--short=12", "HEAD"), self._git("log", "-1", "--format=%s")))


async def main_async(console: Console, *, gitops: bool = False) -> int:
    state_dir = Path(tempfile.mkdtemp(prefix="headway-demo-"))
    embedded = build_embedded(state_dir, resync=0.5)
    story = Story()
    load: Any = None
    driver: Commands | Commits = Commits(embedded, state_dir) if gitops else Commands(embedded)
    try:
        await embedded.start()
        runner = embedded.runner
        loadgen = _loadgen()
        with Live(console=console, refresh_per_second=4, transient=False) as live:

            def view() -> dict[str, Any]:
                return detail(runner, runner.rollout(ROLLOUT))

            async def until(check: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
                deadline = time.monotonic() + STEP_TIMEOUT
                while True:
                    current = view()
                    _observe(story, current, load)
                    live.update(_live(story, current, load, runner.events_after(0)))
                    if check(current):
                        return current
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"timed out waiting for {what}")
                    await asyncio.sleep(0.25)

            story.chapter = "v1 becomes stable" + driver.label
            await driver.start(manifest())
            await until(lambda v: v["phase"] == "Healthy" and v["readyReplicas"] >= 2, "v1 to become stable")
            proxy = embedded.proxies.get(f"default/{ROLLOUT}")
            assert proxy is not None  # noqa: S101 - an invariant for the type checker, not a check of input
            load = loadgen.LoadGenerator(proxy.url + "/", rate=RATE)
            running = asyncio.create_task(load.run())
            story.chapter = "v1 stable under load"
            await _sleep(until, 2.0)

            story.chapter = "v2 (healthy): canary step by step" + driver.label
            await driver.release("v2")
            promoted = await until(lambda v: v["phase"] == "Healthy" and v["stableImage"] == "v2", "v2 promoted")
            story.checks.append(("v2 canaried step by step and promoted", promoted["stableImage"] == "v2"))
            await _sleep(until, 2.0)

            story.chapter = "v3 (30% errors, slower): canary under analysis" + driver.label
            story.v3_started = time.monotonic()
            await driver.release("v3")
            aborted = await until(lambda v: v["aborted"], "v3 to be rolled back")
            story.v3_aborted = time.monotonic()
            story.v3_requests_at_abort = load.stats.versions.get("v3", 0)
            story.chapter = "v3 rolled back: traffic returns to v2"
            await until(lambda v: v["canaryWeight"] == 0, "traffic back on stable")
            await _sleep(until, 3.0)
            if isinstance(driver, Commits):
                story.chapter = "git revert of v3: Git agrees with what runs again"
                await driver.revert()
                reverted = await until(
                    lambda v: v["phase"] == "Healthy" and v["currentImage"] == "v2" and not v["aborted"],
                    "the revert to be applied",
                )
                story.checks.append(
                    ("git revert went back to the revision already running", reverted["stableImage"] == "v2")
                )
                await _sleep(until, 1.0)
            load.stop()
            await running
            live.update(_live(story, view(), load, runner.events_after(0)))
        by_analysis = "analysis run" in aborted["message"].lower()
        story.checks.append(("v3 caught by the analysis and rolled back", aborted["aborted"] and by_analysis))
        story.checks.append(("stable is still v2", view()["stableImage"] == "v2"))
        story.checks.append(("no request failed because of the machinery", load.stats.machinery_failures == 0))
        _summary(console, story, load, [e for e in runner.events_after(0) if e.rollout == f"default/{ROLLOUT}"])
        if isinstance(driver, Commits):
            _commits(console, driver.commits)
        return 0 if all(ok for _, ok in story.checks) else 1
    except (TimeoutError, OSError) as error:
        console.print(f"[bold red]demo failed:[/] {error}")
        return 1
    finally:
        if load is not None:
            load.stop()
        await embedded.close(teardown=True)
        shutil.rmtree(state_dir, ignore_errors=True)


async def _sleep(until: Callable[[Callable[[dict[str, Any]], bool], str], Awaitable[Any]], seconds: float) -> None:
    """Wait ``seconds`` while the live view keeps refreshing."""
    deadline = time.monotonic() + seconds
    await until(lambda _: time.monotonic() >= deadline, "a pause")


def _observe(story: Story, view: dict[str, Any], load: Any) -> None:
    story.phase = view["phase"] or "Pending"
    if view.get("currentImage") == "v3" and story.v3_aborted is None:
        story.v3_max_weight = max(story.v3_max_weight, int(view["canaryWeight"]))


def _live(story: Story, view: dict[str, Any], load: Any, events: Any) -> Group:
    step = f"step {view['step']}/{view['steps']}" if view.get("steps") and view.get("step") is not None else ""
    header = Text.assemble(
        ("● ", "bold cyan"),
        (story.chapter, "bold"),
        f"   phase {story.phase}  {step}  canary weight {view['canaryWeight']}%  ",
        f"stable {view.get('stableImage')}  current {view.get('currentImage')}",
    )
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("version", "requests", "app errors"):
        table.add_column(column, justify="right")
    if load is not None:
        for version in sorted(load.stats.versions):
            table.add_row(version, str(load.stats.versions[version]), str(load.stats.version_errors.get(version, 0)))
        table.add_row("machinery failures", "", str(load.stats.machinery_failures), style="dim")
    recent = [e for e in events if e.rollout == rollout_key_of(ROLLOUT)][-5:]
    lines = Text("\n".join(f"  {e.at:%H:%M:%S} {e.reason}: {_short(e.message, 110)}" for e in recent), style="dim")
    return Group(header, table, lines)


def rollout_key_of(name: str) -> str:
    return f"default/{name}"


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _why(message: str) -> str:
    """An analysis verdict is long (run, metric, limit, judge figures): keep the metric and the judge's figures."""
    metric = re.search(r'Metric "([^"]+)"', message)
    if "Fail:" in message and metric is not None:
        figures = message.split("Fail:", 1)[1].strip().rstrip('"')
        return f"judge failed metric {metric.group(1)!r}: {figures}"
    return _short(message, 200)


def _summary(console: Console, story: Story, load: Any, events: list[Any]) -> None:
    stats = load.stats
    console.rule("[bold]summary")
    requests = Table(title="requests per version", header_style="bold")
    for column in ("version", "requests", "failed (app errors)"):
        requests.add_column(column, justify="right")
    for version in sorted(stats.versions):
        requests.add_row(version, str(stats.versions[version]), str(stats.version_errors.get(version, 0)))
    requests.add_row("total", str(stats.completed), str(sum(stats.failures.values())), style="bold")
    requests.add_row("machinery", "", f"{stats.machinery_failures} {dict(stats.failures) or ''}", style="dim")
    console.print(requests)
    exposure = Table(title="canary exposure before rollback (v3)", header_style="bold")
    for column in ("requests to v3", "of which failed", "max canary weight", "seconds until rollback"):
        exposure.add_column(column, justify="right")
    seconds = (story.v3_aborted or 0.0) - (story.v3_started or 0.0)
    exposure.add_row(
        str(story.v3_requests_at_abort),
        str(stats.version_errors.get("v3", 0)),
        f"{story.v3_max_weight}%",
        f"{seconds:.1f}",
    )
    console.print(exposure)
    decisions = Table(title="decisions and why", header_style="bold", show_lines=False)
    decisions.add_column("time")
    decisions.add_column("decision")
    decisions.add_column("why")
    for event in events:
        if event.reason in DECISIONS:
            decisions.add_row(f"{event.at:%H:%M:%S}", event.reason, _why(event.message))
    console.print(decisions)
    for what, ok in story.checks:
        console.print(Text.assemble(("✔ " if ok else "✘ ", "bold green" if ok else "bold red"), what))
    console.print(f"load: {json.dumps({k: v for k, v in stats.as_dict().items() if k != 'versions'})}", style="dim")


def _commits(console: Console, commits: list[tuple[str, str]]) -> None:
    table = Table(title="commits Headway followed", header_style="bold")
    table.add_column("commit")
    table.add_column("message")
    for sha, message in commits:
        table.add_row(sha, message)
    console.print(table)


def main() -> None:
    console = Console(width=max(Console().width, 120))
    sys.exit(asyncio.run(main_async(console, gitops="--gitops" in sys.argv[1:])))


if __name__ == "__main__":
    main()
