"""Test helper: a runner over the fake adapters in virtual time; each turn first moves the fakes to its clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from headway.engine.reconcile import Engine
from headway.platforms.fake import EPOCH, FakePlatform
from headway.routers.fake import FakeRouter
from headway.runtimes.embedded.runner import MemoryDocuments, Runner
from headway.sim.runs import ScriptedRuns
from headway.spec.rollout import Rollout
from headway.spec.status import RolloutStatus
from headway.stores.memory import MemoryStore

MANIFEST = """\
apiVersion: headway.dev/v1alpha1
kind: Rollout
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: app
          image: web:v1
  strategy:
    canary:
      canaryService: web-canary
      stableService: web-stable
      scaleDownDelaySeconds: 0
      trafficRouting:
        plugins:
          headway.dev/proxy: {}
      steps:
        - setWeight: 20
        - pause: {}
        - setWeight: 60
        - pause: {duration: 10}
"""


@dataclass
class World:
    now: datetime = EPOCH
    platform: FakePlatform = field(default_factory=FakePlatform)
    router: FakeRouter = field(default_factory=FakeRouter)
    runs: ScriptedRuns = field(default_factory=ScriptedRuns)
    store: MemoryStore = field(default_factory=MemoryStore)
    documents: MemoryDocuments = field(default_factory=MemoryDocuments)

    def __post_init__(self) -> None:
        engine = Engine(platform=self.platform, router=self.router, runs=self.runs, store=self.store)
        self.runner = Runner(engine, self.documents, hooks=[self._advance], clock=lambda: self.now)

    async def _advance(self, now: datetime) -> None:
        self.platform.advance(now)
        self.router.advance(now)
        self.runs.advance(now)

    async def turns(self, count: int = 3, *, step: float = 1.0) -> None:
        """Let ``count`` loop turns happen, ``step`` virtual seconds apart."""
        for _ in range(count):
            self.now += timedelta(seconds=step)
            await self.runner.turn()

    def rollout(self) -> Rollout:
        return self.runner.rollout("web")

    def status(self) -> RolloutStatus:
        return self.runner.status(self.rollout())
