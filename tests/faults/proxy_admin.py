"""Calling a proxy's admin API from a test as Headway does: with the token, when the state directory has one.

Where a proxy admin token lives is up to the proxy's auth: its endpoint record, a token file next to it, or the
instance's token (`TOKEN_FILE`, what the CLI reads); the first found is sent, and none when there is none, so the
tests work whether or not the admin API asks for one.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from headway.runtimes.embedded.state_files import TOKEN_FILE


def endpoint(state_dir: Path, name: str = "web", namespace: str = "default") -> dict[str, Any]:
    """The endpoint record of the rollout's proxy (``listen``, ``admin``, ``pid``...), as the proxy wrote it."""
    data: dict[str, Any] = json.loads((state_dir / "proxies" / f"{namespace}_{name}.endpoint.json").read_text())
    return data


def headers(state_dir: Path, name: str = "web", namespace: str = "default") -> dict[str, str]:
    proxies = state_dir / "proxies"
    try:
        record = endpoint(state_dir, name, namespace)
    except (OSError, ValueError):
        record = {}
    if isinstance(record.get("token"), str):
        return {"Authorization": f"Bearer {record['token']}"}
    candidates = [proxies / "admin.token", *sorted(proxies.glob(f"{namespace}_{name}*token*")), state_dir / TOKEN_FILE]
    token = next((path for path in candidates if path.is_file()), None)
    return {"Authorization": f"Bearer {token.read_text().strip()}"} if token is not None else {}


def call(url: str, method: str, body: object, auth: dict[str, str]) -> tuple[int, Any]:
    """One blocking JSON request; (status, decoded body)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json", **auth}
    )
    try:
        with urllib.request.urlopen(request, timeout=5.0) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")
