"""Board profiles (boards/*.json): what the firmware and the energy model know of a board."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

BOARDS_DIR = Path(__file__).resolve().parent.parent / "boards"


def names() -> list[str]:
    return sorted(p.stem for p in BOARDS_DIR.glob("*.json"))


@lru_cache(maxsize=None)
def load(name: str) -> dict:
    path = BOARDS_DIR / (name + ".json")
    if not path.exists():
        raise ValueError("unknown board %r (known: %s)" % (name, ", ".join(names())))
    return json.loads(path.read_text())
