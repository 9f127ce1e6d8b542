"""Helpers for the real-server stories: the control plane (started once per session, also by bench/apiserver.py),
the controller under test, bodies and waits."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from headway.bootstrap.kubernetes import build_controller
from headway.kube.client import HTTP_ROUTES, REPLICA_SETS, SERVICES, KubeClient, rollouts
from headway.runtimes.kubernetes.controller import Controller, ControllerConfig
from tests.e2e.kubernetes.harness import eventually as _eventually

GROUP = "headway.dev"


def stand_in_crd(group: str, version: str, kind: str, plural: str) -> dict[str, Any]:
    """A CRD for a third-party kind a router writes (its schema is not what these tests exercise)."""
    approved = {"api-approved.kubernetes.io": "https://github.com/kubernetes-sigs/gateway-api/pull/1538"}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{group}",
            # The API server wants this annotation on *.k8s.io groups (the Gateway API's), and only there.
            "annotations": approved if group.endswith(".k8s.io") else {},
        },
        "spec": {
            "group": group,
            "names": {"kind": kind, "listKind": f"{kind}List", "plural": plural, "singular": kind.lower()},
            "scope": "Namespaced",
            "versions": [
                {
                    "name": version,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                    "subresources": {"status": {}},
                }
            ],
        },
    }


STAND_IN_CRDS = (
    stand_in_crd("gateway.networking.k8s.io", "v1", "HTTPRoute", "httproutes"),
    stand_in_crd("split.smi-spec.io", "v1alpha2", "TrafficSplit", "trafficsplits"),
)
"""The third-party kinds the routers under test write: the Gateway API's HTTPRoute and SMI's TrafficSplit."""


@dataclass(frozen=True)
class RealCluster:
    state: Path
    """The control plane's directory: ``audit.log``, ``logs/``, ``pki/``."""
    admin: Path
    """The admin kubeconfig (``system:masters``)."""
    controller: Path
    """A kubeconfig with a token of the ``headway-controller`` ServiceAccount (``deploy/base``'s RBAC)."""

    @property
    def audit_log(self) -> Path:
        return self.state / "audit.log"


REPO = Path(__file__).resolve().parents[3]


def _testbed() -> Path:
    """``shared/kube`` beside the repository (CI clones the repository next to a copy of ``shared/``); a git
    worktree one level further down finds it in the next directory up."""
    for ancestor in REPO.parents:
        if (ancestor / "shared" / "kube" / "up").is_file():
            return ancestor / "shared" / "kube"
    return REPO.parent / "shared" / "kube"


KUBE = _testbed()
PORTS = 6
"""`up` uses six consecutive ports from its base."""


def missing() -> str | None:
    if not (KUBE / "up").is_file():
        return f"no Kubernetes control plane for tests at {KUBE} (a clone without shared/)"
    for tool, package in (("etcd", "etcd-server"), ("kubectl", "kubectl"), ("openssl", "openssl"), ("curl", "curl")):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian: {package}); the real-server tests need it"
    return None


def _free(base: int) -> bool:
    for port in range(base, base + PORTS):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def _port_base() -> int:
    """A base whose six ports are free now, away from `up`'s default (16400) and from other sessions' choices."""
    start = 20000 + (os.getpid() * 7) % 20000
    for base in itertools.chain(range(start, 45000, 10), range(20000, start, 10)):
        if _free(base):
            return base
    raise RuntimeError("no six free ports for the control plane")


def kubectl(kubeconfig: Path, *args: str, check: bool = True) -> str:
    done = subprocess.run(
        ["kubectl", "--kubeconfig", str(kubeconfig), *args], check=False, capture_output=True, text=True, timeout=120
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def _token_kubeconfig(admin: Path, token: str, path: Path) -> Path:
    """A kubeconfig for the same server and CA as ``admin``, authenticating with a ServiceAccount ``token``."""
    config = yaml.safe_load(admin.read_text())
    cluster = config["clusters"][0]["cluster"]
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "test", "cluster": cluster}],
                "users": [{"name": "headway-controller", "user": {"token": token}}],
                "contexts": [{"name": "test", "context": {"cluster": "test", "user": "headway-controller"}}],
                "current-context": "test",
            }
        )
    )
    return path


@contextlib.contextmanager
def control_plane(state: Path) -> Iterator[RealCluster]:
    """Start the control plane with its state in ``state``, install Headway from ``deploy/base`` (and stand-in
    HTTPRoute and TrafficSplit CRDs) as admin, and mint a ``headway-controller`` ServiceAccount token; stop it on
    exit."""
    env = {**os.environ, "KUBE_PORT_BASE": str(_port_base())}
    try:
        started = subprocess.run(
            [str(KUBE / "up"), str(state)], check=False, capture_output=True, text=True, timeout=180, env=env
        )
        if started.returncode != 0:
            raise RuntimeError(f"the control plane did not start: {started.stderr.strip()[-2000:]}")
        admin = state / "kubeconfig"
        kubectl(admin, "apply", "-k", str(REPO / "deploy" / "base"))
        crd = state / "stand-in-crds.yaml"
        crd.write_text(yaml.safe_dump_all(STAND_IN_CRDS))
        kubectl(admin, "apply", "-f", str(crd))
        kubectl(admin, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        token = kubectl(admin, "create", "token", "headway-controller", "-n", "headway-system", "--duration=6h").strip()
        controller = _token_kubeconfig(admin, token, state / "controller.kubeconfig")
        yield RealCluster(state=state, admin=admin, controller=controller)
    finally:
        subprocess.run([str(KUBE / "down"), str(state)], check=False, capture_output=True, timeout=120)


@contextlib.asynccontextmanager
async def running(cluster: RealCluster, namespace: str, **config: Any) -> AsyncIterator[Controller]:
    """The controller in this event loop, as the ``headway-controller`` ServiceAccount, watching ``namespace``,
    holding a Lease of its own in ``headway-system`` (where deploy/base lets it); stopped gracefully afterwards."""
    settings: dict[str, Any] = {
        "kubeconfig": cluster.controller,
        "namespace": namespace,
        "lease_namespace": "headway-system",
        "lease_name": f"headway-{namespace}",
        "lease_seconds": 3.0,
        **config,
    }
    controller = build_controller(ControllerConfig(**settings))
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(controller.run(stop=stop, ready=ready))
    try:
        await asyncio.wait_for(ready.wait(), 30)
        yield controller
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await controller.client.close()


async def eventually(check: Any, *, timeout: float = 30.0, what: str = "") -> None:
    """The emulator suite's `eventually`, with a longer default: a real control plane takes its time."""
    await _eventually(check, timeout=timeout, what=what)


def template(name: str, image: str) -> dict[str, Any]:
    return {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": name, "image": image}]}}


def rollout_body(
    namespace: str,
    name: str = "web",
    *,
    image: str = "example/web:1",
    replicas: int = 2,
    group: str = GROUP,
    strategy: dict[str, Any] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """A Rollout; by default a replica-ratio canary (no router) with ``setWeight 50`` and an indefinite pause."""
    chosen = strategy or {"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}}
    return {
        "apiVersion": f"{group}/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": template(name, image),
            "strategy": chosen,
            **spec,
        },
    }


def web_template(
    namespace: str, url: str, *, name: str = "success-rate", group: str = GROUP, condition: str = "result >= 0.99"
) -> dict[str, Any]:
    """An AnalysisTemplate with one ``web`` metric reading ``{$.rate}`` from ``url``, measured once."""
    return {
        "apiVersion": f"{group}/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "metrics": [
                {
                    "name": name,
                    "successCondition": condition,
                    "failureLimit": 0,
                    "provider": {"web": {"url": url, "jsonPath": "{$.rate}"}},
                }
            ]
        },
    }


async def services(client: KubeClient, namespace: str, *names: str, app: str = "web") -> None:
    for name in names:
        body = {
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": {"app": app}, "ports": [{"port": 80, "targetPort": 8080}]},
        }
        await client.create(SERVICES, body)


async def http_route(client: KubeClient, namespace: str, name: str = "web") -> None:
    backends = [
        {"name": f"{name}-stable", "port": 80, "weight": 100},
        {"name": f"{name}-canary", "port": 80, "weight": 0},
    ]
    route = {
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"parentRefs": [{"name": "gateway"}], "rules": [{"backendRefs": backends}]},
    }
    await client.create(HTTP_ROUTES, route)


async def canary_weight(client: KubeClient, namespace: str, name: str = "web") -> int | None:
    route = await client.get(HTTP_ROUTES, name, namespace)
    if route is None:
        return None
    for ref in route["spec"]["rules"][-1]["backendRefs"]:
        if ref["name"] == f"{name}-canary":
            return int(ref.get("weight", 0))
    return None


async def status(client: KubeClient, namespace: str, name: str = "web", group: str = GROUP) -> dict[str, Any]:
    obj = await client.get(rollouts(group), name, namespace)
    return (obj or {}).get("status") or {}


async def replica_sets(client: KubeClient, namespace: str) -> list[dict[str, Any]]:
    return await client.list(REPLICA_SETS, namespace)


async def available_by_image(client: KubeClient, namespace: str) -> dict[str, int]:
    """Available pods per image, over every ReplicaSet in the namespace."""
    found: dict[str, int] = {}
    for rs in await replica_sets(client, namespace):
        image = rs["spec"]["template"]["spec"]["containers"][0]["image"]
        found[image] = found.get(image, 0) + int((rs.get("status") or {}).get("availableReplicas") or 0)
    return found


async def healthy_on(client: KubeClient, namespace: str, image: str, name: str = "web", group: str = GROUP) -> bool:
    """Healthy, with the stable ReplicaSet running ``image`` and every desired pod available."""
    obj = await client.get(rollouts(group), name, namespace)
    if obj is None:
        return False
    current = obj.get("status") or {}
    if current.get("phase") != "Healthy" or not current.get("stableRS"):
        return False
    if str(current.get("observedGeneration")) != str(obj["metadata"].get("generation")):
        return False
    rs = await client.get(REPLICA_SETS, f"{name}-{current['stableRS']}", namespace)
    if rs is None or rs["spec"]["template"]["spec"]["containers"][0]["image"] != image:
        return False
    return int((rs.get("status") or {}).get("availableReplicas") or 0) == int(obj["spec"].get("replicas", 1))


async def set_image(client: KubeClient, namespace: str, image: str, name: str = "web", group: str = GROUP) -> None:
    await client.patch(rollouts(group), name, namespace, {"spec": {"template": template(name, image)}})
