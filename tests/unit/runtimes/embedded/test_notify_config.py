"""Which notification config the embedded daemon starts with: ``--notify FILE``, else ``<state_dir>/notify.yaml``."""

from __future__ import annotations

from pathlib import Path

import pytest

from headway.engine.notify import NotifyConfigError
from headway.runtimes.embedded.state_dir import notify_config

CONFIG = "sinks: [{name: hook, url: 'http://127.0.0.1:9/x'}]\nsubscriptions: [{sinks: [hook]}]\n"


def test_no_file_means_no_notifications(tmp_path: Path) -> None:
    assert notify_config(tmp_path, None) is None


def test_state_dir_file_is_read_when_no_file_is_given(tmp_path: Path) -> None:
    (tmp_path / "notify.yaml").write_text(CONFIG)
    config = notify_config(tmp_path, None)
    assert config is not None and [sink.name for sink in config.sinks] == ["hook"]


def test_given_file_wins_and_must_exist(tmp_path: Path) -> None:
    (tmp_path / "notify.yaml").write_text("sinks: []\n")
    given = tmp_path / "other.yaml"
    given.write_text(CONFIG)
    config = notify_config(tmp_path, given)
    assert config is not None and len(config.sinks) == 1
    with pytest.raises(NotifyConfigError, match=r"missing\.yaml: cannot read"):
        notify_config(tmp_path, tmp_path / "missing.yaml")


def test_a_bad_state_dir_file_stops_the_start_naming_the_field(tmp_path: Path) -> None:
    (tmp_path / "notify.yaml").write_text("sinks: [{name: hook, url: 'ftp://x'}]\n")
    with pytest.raises(NotifyConfigError, match=r"sinks\[0\]\.url"):
        notify_config(tmp_path, None)
