"""The world around each node type: which module of simulator/mp models it. A world is
MicroPython dialect (it runs beside the fakes in both runtimes) and has
`attach(board, params, seed, start_unix)`, which puts its fake chips on the board's pins and
buses and returns the world object (kept in board.extra["world"]): the truth benches and tests
compare the node's readings with."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

_MP_DIR = str(Path(__file__).resolve().parent / "mp")

WORLDS = {"fill_level": "world_bins", "air_quality": "world_air", "water_meter": "world_water", "traffic": "world_road"}


def module_name(node_type: str) -> str | None:
    return WORLDS.get(node_type)


def load(node_type: str):
    """The world module of a node type, or None when the type has no world."""
    name = module_name(node_type)
    if name is None:
        return None
    import simulator.mp  # noqa: F401  (registers `simboard` under its bare name)

    # Worlds and chips import each other by bare name, as inside the WASI MicroPython; the
    # directory goes last on the path so that nothing in it shadows the standard library.
    if _MP_DIR not in sys.path:
        sys.path.append(_MP_DIR)
    return importlib.import_module(name)


def attach(board, node_type: str, params: dict | None, seed: int, start_unix: int):
    mod = load(node_type)
    if mod is None:
        return None
    return mod.attach(board, dict(params or {}), seed, start_unix)
