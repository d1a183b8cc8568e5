"""Put firmware, config.json and board.json on a node's flash (a host directory), laid out as
on the board: main.py at the root, packages under lib/."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

FIRMWARE_DIR = Path(__file__).resolve().parent.parent / "firmware"


def firmware_files(node_type: str) -> list[Path]:
    """The firmware files a node of this type needs, relative to firmware/."""
    out = [Path("main.py")]
    for sub in ("lib/telemetry", "lib/drivers"):
        out += sorted(p.relative_to(FIRMWARE_DIR) for p in (FIRMWARE_DIR / sub).rglob("*.py"))
    out += [Path("lib/nodes/__init__.py"), Path("lib/nodes") / (node_type + ".py")]
    return out


def install(flash_dir: Path, node_type: str, config: dict, profile: dict) -> None:
    flash_dir.mkdir(parents=True, exist_ok=True)
    for rel in firmware_files(node_type):
        dst = flash_dir / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.exists():
            dst.unlink()
        try:
            os.link(FIRMWARE_DIR / rel, dst)  # code is never written by the node: share it
        except OSError:
            shutil.copyfile(FIRMWARE_DIR / rel, dst)
    (flash_dir / "config.json").write_text(json.dumps(config))
    (flash_dir / "board.json").write_text(json.dumps(board_json(profile)))


def board_json(profile: dict) -> dict:
    """The profile as the board gets it: without the sources and description, which only
    cost heap when the firmware parses it."""
    return {k: v for k, v in profile.items() if k not in ("sources", "description")}
