"""``python -m headway.bootstrap --state-dir DIR --port P``: the embedded daemon's process (``headway up`` starts
it detached).

It refuses to start on lost state (`headway.runtimes.embedded.state_dir.lost_state`): a database that is
missing, empty or without the rollouts whose proxy or replicas still run. Taking that as a fresh start would
deploy over a running release at full weight; ``--adopt`` keeps them serving (each rollout's serving revision
becomes its stable one, see `headway.runtimes.embedded.runner.Runner.adopt_serving`) and ``--reset`` stops them
first. SIGTERM or SIGINT stops the controller only and leaves the data plane serving, like a crash would;
``POST /api/v1/shutdown`` (``headway down``) stops everything and forgets the rollouts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path

from headway.bootstrap.embedded import build_embedded
from headway.core.errors import PermanentError
from headway.runtimes.embedded import gitsync
from headway.runtimes.embedded.runner import SteadyClock
from headway.runtimes.embedded.state_dir import NOTIFY_FILE, lost_state, notify_config, reset
from headway.runtimes.embedded.state_files import GIT_CONFIG_FILE
from headway.stores.sqlite import StateError


async def _serve(
    state_dir: Path, port: int, notify: Path | None = None, *, adopt: bool = False, do_reset: bool = False
) -> int:
    if do_reset:
        await asyncio.to_thread(reset, state_dir)
    elif not adopt:
        problem = await asyncio.to_thread(lost_state, state_dir)
        if problem is not None:
            raise StateError(problem)
    git = gitsync.load_config(state_dir / GIT_CONFIG_FILE)  # before anything starts: a bad file fails the start
    embedded = build_embedded(state_dir, notify=notify_config(state_dir, notify), clock=SteadyClock())
    url = await embedded.start(port)
    if git is not None:
        embedded.sync_git(git)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: embedded.stop(teardown=False))
    print(json.dumps({"url": url, "pid": os.getpid()}), flush=True)
    await embedded.serve()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m headway.bootstrap", description="Run the embedded daemon.")
    parser.add_argument("--state-dir", required=True, help="where state, logs and the API token live")
    parser.add_argument("--port", type=int, default=0, help="API port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--notify", type=Path, default=None, help=f"notification config (default: {NOTIFY_FILE})")
    parser.add_argument("--log-level", default="INFO")
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--adopt", action="store_true", help="start even if the database lost running rollouts")
    choice.add_argument("--reset", action="store_true", help="stop what a previous instance left and start afresh")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return asyncio.run(_serve(Path(args.state_dir), args.port, args.notify, adopt=args.adopt, do_reset=args.reset))
    except (OSError, ValueError, StateError, PermanentError) as error:  # a locked, lost or unreadable state dir
        print(f"headway: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
