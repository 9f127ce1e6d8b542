"""Git sync cost: one poll of a repository served by a real ``git daemon`` on 127.0.0.1, with and without news.

Run on demand: ``.venv/bin/python bench/gitsync.py``. Prints one JSON document (milliseconds, median of the
rounds): ``poll_unchanged_ms`` (a fetch that finds the branch where it was), ``poll_new_commit_ms`` (fetch, list
the tree, read the manifests, check them; the apply itself is a stub here), and the same for a repository of 200
manifest files.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.gitops.repo import served_repository
from tests.unit.runtimes.embedded.world import MANIFEST

from headway.runtimes.embedded.gitsync import GitConfig, GitSource, GitSync
from headway.spec.load import Document

ROUNDS = 15


def _stub(documents: Sequence[Document], _source: str) -> list[str]:
    return [f"{doc.kind}/{doc.name}" for doc in documents if doc.model is not None]


def _median_ms(action: Callable[[], object], rounds: int = ROUNDS) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return round(1000 * statistics.median(times), 1)


def measure(files: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as root, served_repository(Path(root)) as served:
        state = Path(root) / "state"
        state.mkdir()
        sync = GitSync(GitSource(GitConfig(served.url, ref="main"), state), _stub, state / "sync.json")
        texts = {f"app{i:03d}.yaml": MANIFEST.replace("name: web", f"name: web{i}") for i in range(files)}
        served.commit(texts, "first")
        sync.poll()
        unchanged = _median_ms(sync.poll)
        counter = iter(range(10_000))

        def new_commit() -> object:
            served.commit({"app000.yaml": MANIFEST.replace("web:v1", f"web:v{next(counter) + 2}")}, "bump")
            start = time.perf_counter()
            outcome = sync.poll()
            assert outcome.applied, outcome
            return time.perf_counter() - start

        samples = [float(str(new_commit())) for _ in range(ROUNDS)]
        return {"poll_unchanged_ms": unchanged, "poll_new_commit_ms": round(1000 * statistics.median(samples), 1)}


def main() -> None:
    one = measure(1)
    many = measure(200)
    print(json.dumps({"one_manifest": one, "two_hundred_manifests": many}, indent=2))


if __name__ == "__main__":
    main()
