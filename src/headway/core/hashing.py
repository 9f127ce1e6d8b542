"""Revision identity: a short, stable hash of the pod template, like Kubernetes' ``pod-template-hash``.

Two manifests with the same template (key order aside) give the same hash, so an undo to an old template finds
the old revision again instead of starting a new one. The hash is FNV-1a (32 bit) over canonical JSON, written
with Kubernetes' "safe" alphabet (no vowels, no look-alike digits) so it never spells a word and fits a label.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193


def fnv1a_32(data: bytes) -> int:
    value = _FNV_OFFSET
    for byte in data:
        value ^= byte
        value = (value * _FNV_PRIME) & 0xFFFFFFFF
    return value


def _encode(value: int) -> str:
    digits = str(value)
    return "".join(_SAFE_ALPHABET[ord(ch) % len(_SAFE_ALPHABET)] for ch in digits)


def pod_template_hash(template: Mapping[str, Any] | None, collision_count: int = 0) -> str:
    """The revision hash of a pod template; ``collision_count`` perturbs it after a (rare) name clash."""
    canonical = json.dumps(template or {}, sort_keys=True, separators=(",", ":"), default=str)
    data = canonical.encode()
    if collision_count:
        data += collision_count.to_bytes(4, "little")
    return _encode(fnv1a_32(data))
