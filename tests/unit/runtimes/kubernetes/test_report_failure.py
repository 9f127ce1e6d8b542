"""The ``ReconcileError`` report of a failed pass: said once per distinct error, and never lost without a word."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pytest

from headway.bootstrap.kubernetes import build_controller
from headway.core.decision import Event
from headway.runtimes.kubernetes.controller import ControllerConfig, _Worker
from headway.runtimes.kubernetes.packed import pack


@pytest.mark.asyncio
async def test_a_report_that_fails_is_logged_and_made_again_on_the_retry(caplog: pytest.LogCaptureFixture) -> None:
    controller = build_controller(ControllerConfig(server="http://127.0.0.1:9", leader_election=False))
    posted: list[str] = []

    async def post_event(body: Mapping[str, Any], event: Event) -> None:
        if not posted:
            posted.append("refused")
            raise RuntimeError("the event could not be built")
        posted.append(event.message)

    controller.post_event = post_event  # type: ignore[method-assign]
    worker = _Worker(body=pack({"kind": "Rollout", "metadata": {"name": "web", "namespace": "default"}}))
    error = ValueError("a bug")
    try:
        with caplog.at_level(logging.ERROR, logger="headway.runtimes.kubernetes.controller"):
            await controller._report_failure(worker, error)
        assert "reporting the failure of default/web on the Rollout failed" in caplog.text
        await controller._report_failure(worker, error)  # the retry of the pass fails the same way
        await controller._report_failure(worker, error)  # and again: said once
    finally:
        await controller.client.close()
    assert posted[0] == "refused"
    assert len(posted) == 2 and "ValueError: a bug" in posted[1], posted
