"""Embedded-mode commands: `headway up`, `apply`, `set image`, the rollout controls, `get`, `status`, `down`.

Every command but ``up`` (which starts it) and ``down`` (which may clean up after it) is a thin client of the
running daemon's local API: the daemon's address is in ``<state-dir>/daemon.json`` and its token in
``<state-dir>/token``, read here and sent automatically. The state directory is ``--state-dir``, else
``$HEADWAY_STATE_DIR``, else ``./.headway``. Failures are one line on stderr and exit status 1, never a traceback.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
import yaml

from headway.runtimes.embedded.daemon import ENDPOINT_FILE, TOKEN_FILE
from headway.spec.load import load_text

DEFAULT_STATE_DIR = ".headway"
DAEMON_LOG = "daemon.log"
START_SECONDS = 20.0
SETTLED = ("Healthy", "Degraded", "Paused")

state_dir_option = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="HEADWAY_STATE_DIR",
    default=DEFAULT_STATE_DIR,
    show_default=True,
    help="Where the embedded runtime keeps its state, logs and API token.",
)


class Api:
    """The daemon's HTTP API as blocking calls; every failure becomes a `click.ClickException` with a reason."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        endpoint = _running(state_dir)
        if endpoint is None:
            raise click.ClickException(f"no headway is running in {state_dir}: start it with `headway up -f FILE`")
        self.url = endpoint["url"]
        self.pid = int(endpoint["pid"])
        try:
            self.token = (state_dir / TOKEN_FILE).read_text().strip()
        except OSError as error:
            raise click.ClickException(f"cannot read the API token in {state_dir}: {error.strerror}") from None

    def get(self, path: str, timeout: float = 10.0) -> Any:
        return self.call("GET", path, timeout=timeout)

    def call(self, method: str, path: str, body: bytes | Mapping[str, Any] | None = None, timeout: float = 10.0) -> Any:
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            raise click.ClickException(_api_error(error)) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise click.ClickException(f"headway at {self.url} did not answer: {reason}") from None


def _api_error(error: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(error.read())
    except (ValueError, OSError):
        return f"HTTP {error.code}"
    if not isinstance(body, dict):
        return f"HTTP {error.code}"
    problems = body.get("problems") or []
    return "\n".join([str(body.get("error", f"HTTP {error.code}")), *(f"  {p}" for p in problems)])


def _running(state_dir: Path) -> dict[str, Any] | None:
    """The endpoint of a live daemon on ``state_dir`` (its health answered), else None."""
    try:
        endpoint = json.loads((state_dir / ENDPOINT_FILE).read_text())
        url, pid = str(endpoint["url"]), int(endpoint["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=2.0) as response:
            health = json.loads(response.read())
    except (OSError, ValueError):
        return None
    return {"url": url, "pid": pid} if isinstance(health, dict) and health.get("pid") == pid else None


def _read(file: Path) -> bytes:
    try:
        return file.read_bytes()
    except OSError as error:
        raise click.ClickException(f"{file}: {(error.strerror or str(error)).lower()}") from None


def _apply(api: Api, file: Path, *, only_new: bool = False) -> list[str]:
    query = f"file={urllib.parse.quote(str(file))}" + ("&onlyNew=true" if only_new else "")
    answer = api.call("POST", f"/api/v1/apply?{query}", _read(file))
    applied: list[str] = answer["applied"]
    for name in applied:
        click.echo(f"{name} applied")
    return applied


def _rollout_names(file: Path) -> list[str]:
    """The Rollouts a manifest file declares (problems are reported by the daemon when it is applied)."""
    return [doc.name for doc in load_text(_read(file).decode(errors="replace"), str(file)) if doc.kind == "Rollout"]


# --- up / down -------------------------------------------------------------------------------------------------


@click.command()
@click.option("-f", "--file", "file", type=click.Path(dir_okay=False, path_type=Path), default=None)
@state_dir_option
@click.option("--port", type=click.IntRange(0, 65535), default=0, help="API port on 127.0.0.1 (default: any free).")
@click.option("--timeout", type=click.FloatRange(min=0), default=60.0, show_default=True, help="Seconds to wait.")
def up(file: Path | None, state_dir: Path, port: int, timeout: float) -> None:
    """Start Headway on this machine in the background and deploy FILE's rollouts as stable.

    On a state directory that already has rollouts (after `down`, or a crash), Headway resumes them where they
    were; objects of FILE that already exist are left as they are (change them with `headway apply`).
    """
    if file is not None:
        _read(file)  # a missing file fails before anything starts
    elif not (state_dir / "headway.db").exists():
        raise click.UsageError("the first `headway up` needs -f FILE")
    state_dir.mkdir(parents=True, exist_ok=True)
    if _running(state_dir) is None:
        _start_daemon(state_dir, port)
    api = Api(state_dir)
    click.echo(f"headway is running: API {api.url} (state in {state_dir}, log {state_dir / DAEMON_LOG})")
    names = [row["name"] for row in api.get("/api/v1/rollouts")["rollouts"]]
    if file is not None:
        _apply(api, file, only_new=True)
        names = list(dict.fromkeys([*names, *_rollout_names(file)]))
    for name in names:
        view = _wait(api, name, timeout, quiet=False)
        where = f", traffic at {view['trafficUrl']}" if view.get("trafficUrl") else ""
        click.echo(f"rollout {name}: {view['phase']} with {view.get('currentImage')}{where}")


def _start_daemon(state_dir: Path, port: int) -> None:
    command = [sys.executable, "-m", "headway.bootstrap", "--state-dir", str(state_dir.resolve()), "--port", str(port)]
    log_path = state_dir / DAEMON_LOG
    with log_path.open("ab") as log:
        offset = log.tell()
        child = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, close_fds=True
        )
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        endpoint = _running(state_dir)
        if endpoint is not None and endpoint["pid"] == child.pid:
            return
        if child.poll() is not None:
            tail = log_path.read_bytes()[offset:].decode(errors="replace").strip().splitlines()[-5:]
            raise click.ClickException("headway did not start:\n" + "\n".join(tail))
        time.sleep(0.05)
    child.terminate()
    raise click.ClickException(f"headway did not answer within {START_SECONDS:.0f} s; see {log_path}")


@click.command()
@state_dir_option
@click.option("--timeout", type=click.FloatRange(min=1), default=60.0, show_default=True)
def down(state_dir: Path, timeout: float) -> None:
    """Stop Headway and everything it started (replicas, proxies), leaving no process behind."""
    if not state_dir.exists():
        click.echo(f"nothing to stop: {state_dir} does not exist")
        return
    if _running(state_dir) is not None:
        api = Api(state_dir)
        api.call("POST", "/api/v1/shutdown")
        deadline = time.monotonic() + timeout
        while _alive(api.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(api.pid):
            raise click.ClickException(f"headway (PID {api.pid}) did not stop within {timeout:.0f} s")
        click.echo("headway stopped")
        return
    from headway.bootstrap import teardown  # only when no daemon is alive: clean up what a crash left behind
    from headway.stores.sqlite import StateError

    try:
        teardown(state_dir)
    except StateError as error:
        raise click.ClickException(str(error)) from None
    click.echo("headway was not running; stopped what it had left behind")


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


# --- apply / set image / controls ----------------------------------------------------------------------------


@click.command()
@click.option("-f", "--file", "file", type=click.Path(dir_okay=False, path_type=Path), required=True)
@state_dir_option
def apply(file: Path, state_dir: Path) -> None:
    """Apply FILE's manifests to the running Headway (a new template starts a rollout)."""
    _apply(Api(state_dir), file)


@click.group("set")
def set_group() -> None:
    """Change one field of a rollout."""


@set_group.command("image")
@click.argument("rollout")
@click.argument("assignment", metavar="CONTAINER=VERSION")
@state_dir_option
def set_image(rollout: str, assignment: str, state_dir: Path) -> None:
    """Set the image (version) of one container of ROLLOUT, which starts a rollout."""
    container, sep, image = assignment.partition("=")
    if not sep or not container or not image:
        raise click.BadParameter(f"expected CONTAINER=VERSION, got {assignment!r}", param_hint="CONTAINER=VERSION")
    Api(state_dir).call("POST", f"/api/v1/rollouts/{rollout}/set-image", {"container": container, "image": image})
    click.echo(f"rollout {rollout}: {container} set to {image}")


def _control(verb: str, help_text: str) -> click.Command:
    @click.command(verb, help=help_text)
    @click.argument("name")
    @state_dir_option
    def command(name: str, state_dir: Path) -> None:
        view = Api(state_dir).call("POST", f"/api/v1/rollouts/{name}/{verb}", {})
        click.echo(f"rollout {name}: {verb} requested ({view['phase']})")

    return command


abort = _control("abort", "Stop the update and send all traffic back to stable.")
retry = _control("retry", "Start an aborted update again from the first step.")
pause = _control("pause", "Hold the rollout where it is.")
resume = _control("resume", "Undo `pause`.")
restart = _control("restart", "Restart every replica of the live revisions, one at a time.")


@click.command()
@click.argument("name")
@click.option("--full", is_flag=True, help="Skip every remaining step and analysis.")
@state_dir_option
def promote(name: str, full: bool, state_dir: Path) -> None:
    """Resume a paused rollout, or skip the current step."""
    view = Api(state_dir).call("POST", f"/api/v1/rollouts/{name}/promote", {"full": full})
    click.echo(f"rollout {name}: {'full ' if full else ''}promote requested ({view['phase']})")


@click.command()
@click.argument("name")
@click.option("--to-revision", type=click.IntRange(min=1), default=None, help="Revision number (default: previous).")
@state_dir_option
def undo(name: str, to_revision: int | None, state_dir: Path) -> None:
    """Roll back to an earlier revision's template."""
    body = {} if to_revision is None else {"toRevision": to_revision}
    view = Api(state_dir).call("POST", f"/api/v1/rollouts/{name}/undo", body)
    click.echo(f"rollout {name}: undo requested, image now {view.get('currentImage')}")


# --- get / status -------------------------------------------------------------------------------------------


@click.group("get")
def get_group() -> None:
    """Show rollouts."""


@get_group.command("rollout")
@click.argument("name", required=False)
@click.option("-o", "--output", type=click.Choice(["text", "json", "yaml"]), default="text", show_default=True)
@state_dir_option
def get_rollout(name: str | None, output: str, state_dir: Path) -> None:
    """Show rollout NAME (every rollout when NAME is left out)."""
    api = Api(state_dir)
    data = api.get(f"/api/v1/rollouts/{name}") if name else api.get("/api/v1/rollouts")
    if output == "json":
        click.echo(json.dumps(data, indent=2))
    elif output == "yaml":
        click.echo(yaml.safe_dump(data, sort_keys=False), nl=False)
    elif name:
        click.echo("\n".join(render(data)))
    else:
        for row in data["rollouts"]:
            click.echo(_one_line(row))


def _one_line(view: Mapping[str, Any]) -> str:
    step = f"step {view['step']}/{view['steps']}, " if view.get("steps") else ""
    return (
        f"{view['name']}: {view['phase']}, {step}canary weight {view['canaryWeight']}%, "
        f"stable {view.get('stableImage')}, current {view.get('currentImage')}"
    )


def render(view: Mapping[str, Any]) -> list[str]:
    """A plain, readable view of one rollout (the shape `kubectl argo rollouts get` prints, without colour)."""
    phase = view["phase"] + (f" ({view['message']})" if view.get("message") else "")
    step = f", step {view['step']}/{view['steps']}" if view.get("steps") else ""
    lines = [
        f"Name:       {view['name']}",
        f"Namespace:  {view['namespace']}",
        f"Status:     {phase}",
        f"Strategy:   {view['strategy']}{step}, canary weight {view['canaryWeight']}%",
        f"Images:     {view.get('stableImage')} (stable)"
        + (f", {view['currentImage']} (updating)" if view.get("currentImage") != view.get("stableImage") else ""),
        f"Replicas:   desired {view['replicas']}, ready {view['readyReplicas']}",
    ]
    if view.get("trafficUrl"):
        lines.append(f"Traffic:    {view['trafficUrl']}")
    lines.append("Revisions:")
    for revision in reversed(view.get("revisions", [])):
        role = (
            "stable"
            if revision["hash"] == view.get("stableHash")
            else "canary"
            if revision["hash"] == view.get("currentHash")
            else ""
        )
        lines.append(
            f"  #{revision['number']:<3} {revision['hash']:<12} {revision.get('image') or '':<12} "
            f"ready {revision['ready']}/{revision['replicas']}  {role}".rstrip()
        )
    runs = view.get("analysisRuns", [])
    if runs:
        lines.append("Analysis runs:")
        lines.extend(f"  {run['name']}: {run['phase']} {run['message']}".rstrip() for run in runs)
    events = view.get("events", [])[-10:]
    if events:
        lines.append("Events:")
        lines.extend(f"  {e['at'][11:19]} {e['type']:<7} {e['reason']}: {e['message']}" for e in events)
    return lines


@click.command()
@click.argument("name")
@click.option("--timeout", type=click.FloatRange(min=0), default=0.0, help="Give up after SECONDS (0: wait forever).")
@state_dir_option
def status(name: str, timeout: float, state_dir: Path) -> None:
    """Wait until rollout NAME is Healthy, Paused or Degraded; exit 1 if Degraded or on timeout."""
    view = _wait(Api(state_dir), name, timeout or None, quiet=False)
    if view["phase"] == "Degraded":
        sys.exit(1)


def _wait(api: Api, name: str, timeout: float | None, *, quiet: bool) -> dict[str, Any]:
    """Follow the rollout through the watch API until it settles; print each new phase unless ``quiet``."""
    deadline = None if timeout is None else time.monotonic() + timeout
    last = ""
    while True:
        health = api.get("/healthz")
        view: dict[str, Any] = api.get(f"/api/v1/rollouts/{name}")
        line = f"{view['phase'] or 'Pending'}" + (f" - {view['message']}" if view.get("message") else "")
        if line != last and not quiet:
            click.echo(line)
            last = line
        if view["phase"] in SETTLED and view.get("currentHash") is not None:
            return view
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise click.ClickException(f"rollout {name} is still {view['phase']} after the timeout")
        wait = 5.0 if remaining is None else max(0.1, min(5.0, remaining))
        api.get(f"/api/v1/watch?after={health['sequence']}&timeout={int(wait) or 1}", timeout=wait + 10)


COMMANDS = (up, down, apply, set_group, promote, abort, retry, pause, resume, restart, undo, get_group, status)
"""Every embedded-mode command, for `headway.cli.main` to register."""
