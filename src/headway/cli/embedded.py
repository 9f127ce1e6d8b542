"""Embedded-mode commands: `headway up`, `apply`, `set image`, the rollout controls, `get`, `list`, `status`, `down`.

``get rollout`` and ``list rollouts`` read the same view the dashboard shows (``/dashboard/api``) and render it with
`headway.cli.views`, so every mode prints one tree; ``--watch`` redraws it on each change the daemon's long poll
reports. ``up --notify FILE`` (or ``<state-dir>/notify.yaml``) makes the daemon deliver rollout events to webhooks.

Every command but ``up`` (which starts it) and ``down`` (which may clean up after it) is a thin client of the
running daemon's local API: the daemon's address is in ``<state-dir>/daemon.json`` and its token in
``<state-dir>/token``, read here and sent automatically. The state directory is ``--state-dir``, else
``$HEADWAY_STATE_DIR``, else ``./.headway``. Failures are one line on stderr and exit status 1, never a traceback.

The rollout commands (get, list, promote, abort, retry, pause, resume, restart, undo, set image, status) also work
against a Kubernetes cluster: ``--context``/``-n``/``--kubeconfig``, ``HEADWAY_MODE=kubernetes`` or running as
``kubectl-headway`` switch to `headway.cli.kube` (see its docstring), where ``--watch`` polls the cluster.
"""

from __future__ import annotations

import contextlib
import functools
import json
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

import click
from click.core import ParameterSource
from rich.console import Console, RenderableType
from rich.live import Live

from headway.cli import kube, views
from headway.dashboard.model import RolloutView
from headway.loopback import DIRECT
from headway.manifest_files import ManifestFileError, load_manifest_text, read_bytes
from headway.private_files import append_private, private_dir
from headway.runtimes.embedded.state_files import ENDPOINT_FILE, GIT_CONFIG_FILE, GIT_STATE_FILE, TOKEN_FILE
from headway.spec import names

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
            raise click.ClickException(unreachable(state_dir))
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
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)  # noqa: S310 - http(s) only: our own endpoint, or a URL checked at load
        try:
            with DIRECT.open(request, timeout=timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            raise click.ClickException(_api_error(error)) from None
        except (urllib.error.URLError, OSError):
            raise click.ClickException(unreachable(self.state_dir, self.url)) from None


def rollout_path(name: str, *rest: str) -> str:
    """``/api/v1/rollouts/{name}[/rest...]`` with every segment quoted: a name never adds a segment or a query."""
    segments = [name, *rest]
    return "/api/v1/rollouts/" + "/".join(urllib.parse.quote(segment, safe="") for segment in segments)


def checked_name(value: str, *, cluster: bool, param: str = "NAME") -> str:
    """A rollout name argument checked as Kubernetes checks names, before it reaches any URL.

    Embedded mode also takes ``NAMESPACE/NAME``; a cluster command takes ``NAME`` (its namespace is ``-n``).
    A bad name is a usage error naming the argument and the rule it breaks."""
    try:
        if cluster:
            names.check_name(value, param)
        else:
            names.check_key(value, param)
    except names.InvalidNameError as error:
        part = "" if error.value == value else f" (its part {error.value!r})"
        raise click.BadParameter(
            f"{value!r} is not a valid rollout name{part}: {error.problem}", param_hint=param
        ) from None
    return value


def unreachable(state_dir: Path, url: str | None = None) -> str:
    """What to say (and do) when no instance answers: where it was looked for, and the command that starts one."""
    if url is None:
        try:
            url = str(json.loads((state_dir / ENDPOINT_FILE).read_text())["url"])
        except (OSError, ValueError, KeyError, TypeError):
            url = None
    where = f"the Headway instance at {url}" if url else "a running Headway instance"
    return f"cannot reach {where} (state dir {state_dir}): start it with `headway up -f FILE`"


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
        with DIRECT.open(url + "/healthz", timeout=2.0) as response:
            health = json.loads(response.read())
    except (OSError, ValueError):
        return None
    return {"url": url, "pid": pid} if isinstance(health, dict) and health.get("pid") == pid else None


def _read(file: Path) -> bytes:
    """A manifest file as the daemon will read it: a regular file, within the size limit."""
    try:
        return read_bytes(file)
    except ManifestFileError as error:
        raise click.ClickException(str(error)) from None


def _apply(api: Api, file: Path, *, only_new: bool = False) -> list[str]:
    query = urllib.parse.urlencode({"file": str(file), **({"onlyNew": "true"} if only_new else {})})
    answer = api.call("POST", f"/api/v1/apply?{query}", _read(file))
    applied: list[str] = answer["applied"]
    for name in applied:
        click.echo(f"{name} applied")
    return applied


def _rollout_names(file: Path) -> list[str]:
    """The Rollouts a manifest file declares (problems are reported by the daemon when it is applied)."""
    text = _read(file).decode(errors="replace")
    return [doc.name for doc in load_manifest_text(text, str(file)) if doc.kind == "Rollout"]


# --- up / down -------------------------------------------------------------------------------------------------


@click.command()
@click.option("-f", "--file", "file", type=click.Path(dir_okay=False, path_type=Path), default=None)
@state_dir_option
@click.option("--port", type=click.IntRange(0, 65535), default=0, help="API port on 127.0.0.1 (default: any free).")
@click.option("--timeout", type=click.FloatRange(min=0), default=60.0, show_default=True, help="Seconds to wait.")
@click.option(
    "--notify",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Notification config (sinks and subscriptions); default: <state-dir>/notify.yaml when present.",
)
@click.option(
    "--adopt",
    is_flag=True,
    help="Start even though the database lost rollouts whose processes still run: keep them serving and take "
    "each one's serving revision as stable, so the next apply rolls out through its steps.",
)
@click.option("--reset", is_flag=True, help="Stop whatever a previous instance left running, then start afresh.")
@click.option(
    "--git",
    "git_url",
    default=None,
    metavar="URL",
    help="GitOps: apply the manifests of this repository (a path, file://, git://, http(s)://, ssh://) at every "
    "new commit; kept for later starts (see --no-git).",
)
@click.option("--ref", "git_ref", default="HEAD", show_default=True, help="The branch (or tag) to follow.")
@click.option("--path", "git_path", default=".", show_default=True, help="The folder of manifests in the repository.")
@click.option("--git-interval", type=click.FloatRange(0.1, 86400), default=10.0, show_default=True, help="Seconds.")
@click.option("--no-git", is_flag=True, help="Stop following the repository set by an earlier --git.")
def up(  # noqa: C901 - one branch per kind it dispatches on, kept together on purpose
    file: Path | None,
    state_dir: Path,
    *,
    port: int,
    timeout: float,
    notify: Path | None,
    adopt: bool,
    reset: bool,
    git_url: str | None,
    git_ref: str,
    git_path: str,
    git_interval: float,
    no_git: bool,
) -> None:
    """Start Headway on this machine in the background and deploy FILE's rollouts as stable.

    On a state directory that already has rollouts (after `down`, or a crash), Headway resumes them where they
    were; objects of FILE that already exist are left as they are (change them with `headway apply`). If the
    database lost rollouts whose proxy or replicas still run, it refuses to start until told `--adopt` or
    `--reset`. With `--git`, the repository is the source of truth: each new commit of the branch is checked
    as a whole and applied, or refused with the file and field and nothing changed.
    """
    if adopt and reset:
        raise click.UsageError("--adopt and --reset exclude each other")
    git = _git_config(git_url, git_ref, git_path, git_interval, no_git=no_git)
    if file is not None:
        _read(file)  # a missing file fails before anything starts
    running = _running(state_dir) is not None
    if running and (adopt or reset):
        raise click.UsageError(f"headway is already running on {state_dir}: --adopt and --reset apply at start")
    if not running and not reset:
        _check_lost_state(state_dir, adopt=adopt)
    following = git is not None or (not no_git and (state_dir / GIT_CONFIG_FILE).exists())
    if file is None and not adopt and not following and (reset or not (state_dir / "headway.db").exists()):
        raise click.UsageError("the first `headway up` needs -f FILE (or --git URL)")
    if notify is not None:
        from headway.engine.notify import NotifyConfig, NotifyConfigError

        try:
            NotifyConfig.load(notify)  # a bad config fails here, with the field named, not in the daemon's log
        except NotifyConfigError as error:
            raise click.ClickException(str(error)) from None
    private_dir(state_dir)  # 0700: the token, the database and the logs are the owner's only
    if git is not None or no_git:
        from headway.runtimes.embedded import gitsync

        if git is not None:
            gitsync.save_config(state_dir / GIT_CONFIG_FILE, git)
        else:
            (state_dir / GIT_CONFIG_FILE).unlink(missing_ok=True)
        if running:
            click.echo("headway is already running: the git settings take effect at its next start (headway down)")
    if not running:
        _start_daemon(state_dir, port, notify, ["--adopt"] if adopt else ["--reset"] if reset else [])
    elif notify is not None:
        click.echo(f"headway is already running: --notify {notify} takes effect at its next start")
    api = Api(state_dir)
    click.echo(f"headway is running: API {api.url} (state in {state_dir}, log {state_dir / DAEMON_LOG})")
    names = [row["name"] for row in api.get("/api/v1/rollouts")["rollouts"]]
    if following and not names:
        names = _first_sync(api, state_dir, timeout)
    if file is not None:
        _apply(api, file, only_new=True)
        names = list(dict.fromkeys([*names, *_rollout_names(file)]))
    for name in names:
        view = _wait(api, name, timeout, quiet=False)
        where = f", traffic at {view['trafficUrl']}" if view.get("trafficUrl") else ""
        click.echo(f"rollout {name}: {view['phase']} with {view.get('currentImage')}{where}")


def _git_config(url: str | None, ref: str, path: str, interval: float, *, no_git: bool) -> Any:
    """The `--git` settings, checked before anything starts (a bad --ref or --path names the option)."""
    if url is None:
        if ref != "HEAD" or path != ".":
            raise click.UsageError("--ref and --path go with --git URL")
        return None
    if no_git:
        raise click.UsageError("--git and --no-git exclude each other")
    from headway.runtimes.embedded.gitsync import GitConfig

    try:
        return GitConfig(url=url, ref=ref, path=path, interval=interval)
    except ValueError as error:
        raise click.UsageError(str(error)) from None


def _first_sync(api: Api, state_dir: Path, timeout: float) -> list[str]:
    """Wait for the first commit to be applied (its rollouts' names) or refused (an error saying why)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        names = [row["name"] for row in api.get("/api/v1/rollouts")["rollouts"]]
        if names:
            return names
        try:
            refused = json.loads((state_dir / GIT_STATE_FILE).read_text()).get("refused")
        except (OSError, ValueError):
            refused = None
        if refused:
            raise click.ClickException(
                f"the repository's commit {refused[:12]} was refused (the reasons are in {state_dir / DAEMON_LOG}); "
                "fix it with a new commit: Headway applies it when it arrives"
            )
        time.sleep(0.2)
    raise click.ClickException(
        f"no rollout came from the repository within {timeout:g} s (see {state_dir / DAEMON_LOG})"
    )


def _check_lost_state(state_dir: Path, *, adopt: bool) -> None:
    """Refuse (unless ``adopt``) a start on a database that lost rollouts still running; an unreadable database
    is an error naming it. The daemon checks again under its lock; this says it before anything starts."""
    if not state_dir.exists():
        return
    from headway.core.errors import PermanentError
    from headway.runtimes.embedded.state_dir import (
        lost_state,  # the heavy imports only for `up` on an existing directory
    )
    from headway.stores.sqlite import StateError

    try:
        problem = lost_state(state_dir)
    except (StateError, PermanentError) as error:
        raise click.ClickException(str(error)) from None
    if problem is None:
        return
    if not adopt:
        raise click.ClickException(problem)
    click.echo("adopting the rollouts still running: their serving revisions become stable")


def _start_daemon(state_dir: Path, port: int, notify: Path | None = None, extra: list[str] | None = None) -> None:
    command = [sys.executable, "-m", "headway.bootstrap", "--state-dir", str(state_dir.resolve()), "--port", str(port)]
    command += extra or []
    if notify is not None:
        command += ["--notify", str(notify.resolve())]
    log_path = state_dir / DAEMON_LOG
    with append_private(log_path) as log:
        offset = log.tell()
        child = subprocess.Popen(  # noqa: S603 - a fixed argv, no shell
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
    from headway.runtimes.embedded.state_dir import (
        teardown,  # only when no daemon is alive: clean up what a crash left behind
    )
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


# --- where a rollout command acts: the embedded instance or a cluster ------------------------------------------


class RolloutTarget(Protocol):
    """What a rollout command acts on; each mode implements it (`EmbeddedTarget`, `headway.cli.kube.ClusterTarget`)
    and `rollout_target` chooses one, so no command decides the mode itself."""

    cluster: bool

    def control(self, verb: str, name: str, **options: Any) -> None:
        """Request ``verb`` (``promote``, ``abort``, ``undo``, ``set_image``...) on rollout ``name``; say so."""
        ...

    def get_rollout(self, name: str | None, output: str, *, watch: bool, watch_timeout: float) -> None: ...

    def list_rollouts(self, output: str, all_namespaces: bool, *, watch: bool, watch_timeout: float) -> None: ...

    def status(self, name: str, timeout: float | None) -> None:
        """Follow ``name`` until it settles; exit 1 if Degraded."""
        ...


class EmbeddedTarget:
    """The rollout commands against the embedded instance of ``state_dir``, through its local API."""

    cluster = False

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir

    def control(self, verb: str, name: str, **options: Any) -> None:
        api = Api(self.state_dir)
        if verb == "set_image":
            container, image = options["container"], options["image"]
            api.call("POST", rollout_path(name, "set-image"), {"container": container, "image": image})
            click.echo(f"rollout {name}: {container} set to {image}")
        elif verb == "undo":
            to_revision = options.get("to_revision")
            body = {} if to_revision is None else {"toRevision": to_revision}
            view = api.call("POST", rollout_path(name, "undo"), body)
            click.echo(f"rollout {name}: undo requested, image now {view.get('currentImage')}")
        else:
            full = bool(options.get("full"))
            view = api.call("POST", rollout_path(name, verb), {"full": full} if verb == "promote" else {})
            click.echo(f"rollout {name}: {'full ' if full else ''}{verb} requested ({view['phase']})")

    def get_rollout(self, name: str | None, output: str, *, watch: bool, watch_timeout: float) -> None:
        api = Api(self.state_dir)
        if name is None:
            _show_list(api, output=output, watch=watch, watch_timeout=watch_timeout)
            return
        _show(
            api,
            output=output,
            watch=watch,
            watch_timeout=watch_timeout,
            renderable=lambda: views.rollout_renderable(_view(api, name)),
            data=lambda: _view(api, name),
        )

    def list_rollouts(self, output: str, all_namespaces: bool, *, watch: bool, watch_timeout: float) -> None:
        _show_list(Api(self.state_dir), output=output, watch=watch, watch_timeout=watch_timeout)

    def status(self, name: str, timeout: float | None) -> None:
        view = _wait(Api(self.state_dir), name, timeout, quiet=False)
        if view["phase"] == "Degraded":
            sys.exit(1)


def target_for(
    state_dir: Path, kube_context: str | None, namespace: str | None, kubeconfig: Path | None
) -> RolloutTarget:
    """The one place a command's mode is decided: a cluster when `headway.cli.kube.target_of` names one (its
    flags, ``HEADWAY_MODE``, the kubectl plugin), else the embedded instance of ``state_dir``. A ``--state-dir``
    typed on the command line of a command that targets a cluster is a usage error (`kube.target_of`)."""
    context = click.get_current_context(silent=True)
    given = context is not None and context.get_parameter_source("state_dir") is ParameterSource.COMMANDLINE
    cluster = kube.target_of(kube_context, namespace, kubeconfig, state_dir_given=given)
    return kube.ClusterTarget(cluster) if cluster is not None else EmbeddedTarget(state_dir)


def rollout_target(function: Callable[..., None]) -> Callable[..., None]:
    """``--state-dir`` and kubectl's flags on a command, which receives the `RolloutTarget` they choose as
    ``target``."""

    @functools.wraps(function)
    def command(
        *args: Any,
        state_dir: Path,
        kube_context: str | None,
        namespace: str | None,
        kubeconfig: Path | None,
        **kwargs: Any,
    ) -> None:
        function(*args, target=target_for(state_dir, kube_context, namespace, kubeconfig), **kwargs)

    return state_dir_option(kube.cluster_options(command))


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
@click.argument("assignment", metavar="CONTAINER=VERSION", callback=lambda _c, _p, value: _assignment(value))
@rollout_target
def set_image(rollout: str, *, assignment: tuple[str, str], target: RolloutTarget) -> None:
    """Set the image (version) of one container of ROLLOUT, which starts a rollout."""
    container, image = assignment
    checked = checked_name(rollout, cluster=target.cluster, param="ROLLOUT")
    target.control("set_image", checked, container=container, image=image)


def _assignment(value: str) -> tuple[str, str]:
    container, sep, image = value.partition("=")
    if not sep or not container or not image:
        raise click.BadParameter(f"expected CONTAINER=VERSION, got {value!r}", param_hint="CONTAINER=VERSION")
    return container, image


def _control(verb: str, help_text: str) -> click.Command:
    @click.command(verb, help=help_text)
    @click.argument("name")
    @rollout_target
    def command(name: str, target: RolloutTarget) -> None:
        target.control(verb, checked_name(name, cluster=target.cluster))

    return command


abort = _control("abort", "Stop the update and send all traffic back to stable.")
retry = _control("retry", "Start an aborted update again from the first step.")
pause = _control("pause", "Hold the rollout where it is.")
resume = _control("resume", "Undo `pause`.")
restart = _control("restart", "Restart every replica of the live revisions, one at a time.")


@click.command()
@click.argument("name")
@click.option("--full", is_flag=True, help="Skip every remaining step and analysis.")
@rollout_target
def promote(name: str, *, full: bool, target: RolloutTarget) -> None:
    """Resume a paused rollout, or skip the current step."""
    target.control("promote", checked_name(name, cluster=target.cluster), full=full)


@click.command()
@click.argument("name")
@click.option("--to-revision", type=click.IntRange(min=1), default=None, help="Revision number (default: previous).")
@rollout_target
def undo(name: str, *, to_revision: int | None, target: RolloutTarget) -> None:
    """Roll back to an earlier revision's template."""
    target.control("undo", checked_name(name, cluster=target.cluster), to_revision=to_revision)


# --- get / status -------------------------------------------------------------------------------------------


@click.group("get")
def get_group() -> None:
    """Show rollouts."""


@get_group.command("rollout")
@click.argument("name", required=False)
@click.option("-o", "--output", type=click.Choice(["text", "json", "yaml"]), default="text", show_default=True)
@click.option("-w", "--watch", is_flag=True, help="Keep the view live until Ctrl-C.")
@click.option(
    "--watch-timeout", type=click.FloatRange(min=0), default=0.0, help="Stop watching after SECONDS (0: never)."
)
@rollout_target
def get_rollout(name: str | None, *, output: str, watch: bool, watch_timeout: float, target: RolloutTarget) -> None:
    """Show rollout NAME as a tree: status, step, weights, revisions, analysis runs (every rollout without NAME)."""
    checked = checked_name(name, cluster=target.cluster) if name is not None else None
    target.get_rollout(checked, output, watch=watch, watch_timeout=watch_timeout)


@click.group("list")
def list_group() -> None:
    """List things."""


@list_group.command("rollouts")
@click.option("-o", "--output", type=click.Choice(["text", "json", "yaml"]), default="text", show_default=True)
@click.option("-w", "--watch", is_flag=True, help="Keep the list live until Ctrl-C.")
@click.option(
    "--watch-timeout", type=click.FloatRange(min=0), default=0.0, help="Stop watching after SECONDS (0: never)."
)
@click.option("-A", "--all-namespaces", is_flag=True, help="Every namespace (cluster mode).")
@rollout_target
def list_rollouts(
    *, output: str, watch: bool, watch_timeout: float, all_namespaces: bool, target: RolloutTarget
) -> None:
    """One line per rollout: strategy, status, step, weights, replicas, image."""
    target.list_rollouts(output, all_namespaces, watch=watch, watch_timeout=watch_timeout)


def _show_list(api: Api, *, output: str, watch: bool, watch_timeout: float) -> None:
    """Every rollout of the instance, as a table or a dump, live with ``watch``."""
    _show(
        api, output=output, watch=watch, watch_timeout=watch_timeout, renderable=_list_of(api), data=lambda: _views(api)
    )


def _view(api: Api, name: str) -> RolloutView:
    """One rollout as the dashboard sees it (judge evidence and weight history included)."""
    namespace, _, short = name.rpartition("/")
    namespace = namespace or "default"
    try:
        quoted = "/".join(urllib.parse.quote(part, safe="") for part in (namespace, short))
        data = api.get(f"/dashboard/api/rollouts/{quoted}")
    except click.ClickException:
        known = [v.name if v.namespace == namespace else v.key for v in _views(api)]
        if short in known:
            raise
        where = "" if namespace == "default" else f" in namespace {namespace}"
        raise click.ClickException(
            f"no rollout named {short}{where} (known: {', '.join(sorted(known)) or 'none'})"
        ) from None
    return RolloutView.model_validate(data)


def _list_of(api: Api) -> Callable[[], RenderableType]:
    return lambda: views.list_renderable(_views(api))


def _views(api: Api) -> list[RolloutView]:
    return [RolloutView.model_validate(row) for row in api.get("/dashboard/api/rollouts")["rollouts"]]


def _show(
    api: Api,
    *,
    output: str,
    watch: bool,
    watch_timeout: float,
    renderable: Callable[[], RenderableType],
    data: Callable[[], RolloutView | list[RolloutView]],
) -> None:
    """Print once, or with ``watch`` keep a rich Live view fresh: each change the daemon's long poll reports
    redraws it, until Ctrl-C or ``watch_timeout``. ``-o json|yaml`` prints one document (per change)."""
    console = Console() if sys.stdout.isatty() else views.plain_console(width=120)
    if output != "text":
        click.echo(views.dump(data(), output), nl=False)
        if not watch:
            return
    if not watch:
        console.print(renderable())
        return
    deadline = time.monotonic() + watch_timeout if watch_timeout else None
    with contextlib.suppress(KeyboardInterrupt):
        if output != "text":
            for _ in _changes(api, deadline):
                click.echo(views.dump(data(), output), nl=False)
            return
        if not console.is_terminal:
            _frames(api, deadline, renderable, console)
            return
        with Live(renderable(), console=console, auto_refresh=False) as live:
            for _ in _changes(api, deadline):
                live.update(renderable(), refresh=True)


def _frames(api: Api, deadline: float | None, renderable: Callable[[], RenderableType], console: Console) -> None:
    """``--watch`` into a pipe or a log: the view in full, then again each time it looks different (as in cluster
    mode), so the output is the rollout's history; a change elsewhere in the instance prints nothing."""
    with console.capture() as captured:
        console.print(renderable())
    last = captured.get()
    console.out(last, end="", highlight=False)
    for _ in _changes(api, deadline):
        with console.capture() as captured:
            console.print(renderable())
        frame = captured.get()
        if frame != last:
            console.out("\n" + frame, end="", highlight=False)
            last = frame


def _changes(api: Api, deadline: float | None) -> Iterator[int]:
    """Each new sequence number the daemon's watch long-poll reports, until ``deadline`` (monotonic)."""
    sequence = int(api.get("/healthz")["sequence"])
    while True:
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            return
        wait = 10 if remaining is None else max(1, min(10, int(remaining + 0.999)))
        answer = api.get(f"/api/v1/watch?after={sequence}&timeout={wait}", timeout=wait + 10)
        if int(answer["sequence"]) != sequence:
            sequence = int(answer["sequence"])
            yield sequence


@click.command()
@click.argument("name")
@click.option("--timeout", type=click.FloatRange(min=0), default=0.0, help="Give up after SECONDS (0: wait forever).")
@rollout_target
def status(name: str, *, timeout: float, target: RolloutTarget) -> None:
    """Wait until rollout NAME is Healthy, Paused or Degraded; exit 1 if Degraded or on timeout."""
    target.status(checked_name(name, cluster=target.cluster), timeout or None)


def _wait(api: Api, name: str, timeout: float | None, *, quiet: bool) -> dict[str, Any]:
    """Follow the rollout through the watch API until it settles; print each new phase unless ``quiet``."""
    deadline = None if timeout is None else time.monotonic() + timeout
    last = ""
    while True:
        health = api.get("/healthz")
        view: dict[str, Any] = api.get(rollout_path(name))
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


COMMANDS = (
    up,
    down,
    apply,
    set_group,
    promote,
    abort,
    retry,
    pause,
    resume,
    restart,
    undo,
    get_group,
    list_group,
    status,
)
"""Every embedded-mode command, for `headway.cli.main` to register."""
