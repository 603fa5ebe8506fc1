"""The serving benchmark's server subprocess: configured with every ServerConfig field."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from oft.serve.bench_serving import serve_flags
from oft.serve.commands import _config, add_arguments
from oft.serve.server import ServerConfig


def test_serve_flags_rebuild_every_field():
    config = ServerConfig(
        host="localhost", port=8123, api_key=None, max_batch=3, batch_wait_ms=1.5, max_message_bytes=1048,
        max_prompt_tokens=32, max_connections=9, idle_timeout_s=1.5, body_timeout_s=2.5,
        ws_idle_timeout_s=3.5, ws_heartbeat_s=0.0, clip_actions=True,
    )  # fmt: skip
    # a field added to ServerConfig must be set here, differently from its default, and get its flag
    passed_otherwise = {"api_key", "hard_limit_factor"}  # $OFT_API_KEY; no flag (refused below)
    for f in dataclasses.fields(ServerConfig):
        if f.name not in passed_otherwise:
            assert getattr(config, f.name) != f.default, f"{f.name}: give it a non-default value"
    p = argparse.ArgumentParser()
    add_arguments(p)
    assert _config(p.parse_args(["ckpt", *serve_flags(config)])) == config


def test_serve_flags_refuse_a_field_without_a_flag():
    with pytest.raises(ValueError, match="hard_limit_factor 3: oft serve has no flag"):
        serve_flags(ServerConfig(hard_limit_factor=3))
