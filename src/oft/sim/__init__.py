"""Simulators behind one adapter interface, expert demonstrations, one rollout loop."""

from __future__ import annotations


def check_cameras(env: str, cameras) -> None:
    """Raise KeyError naming a camera simulator ``env`` ("metaworld", "aloha", "libero") cannot render, with
    the ones it can; before a command records or collects anything. Imports the adapter, not the simulator."""
    import importlib

    from oft.spec import unknown_name_message

    known = importlib.import_module(f"oft.sim.{env}").CAMERAS
    for cam in cameras or ():
        if cam not in known:
            raise KeyError(unknown_name_message(f"{env} camera", cam, known))
