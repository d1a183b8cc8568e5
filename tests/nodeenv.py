"""Test helpers: a single simulated board with the node's module table, for exercising firmware
modules and fakes under CPython exactly as the engine runs them."""

from __future__ import annotations

import json
from pathlib import Path

from simulator import flash, profiles
from simulator.loader import NodeModules
from simulator.mp import simboard, simnet


class NodeEnv:
    def __init__(self, flash_dir: Path, board: str = "lolin-d32", node_type: str = "heartbeat",
                 config: dict | None = None, install: bool = True, config_file: bool = True):
        self.profile = profiles.load(board)
        cfg = {"node_id": "t-1", "type": node_type}
        cfg.update(config or {})
        if install:
            flash.install(flash_dir, node_type, cfg, self.profile)
            if not config_file:
                (flash_dir / "config.json").unlink()
        else:
            flash_dir.mkdir(parents=True, exist_ok=True)
        self.flash_dir = flash_dir
        self.board = simboard.Board("t-1", self.profile, str(flash_dir), seed=1,
                                    rtc_epoch=1_780_000_000 - simboard.SECONDS_1970_TO_2000)
        self.board.network = simnet.NetworkWorld()
        self.mods = NodeModules(self.board)

    def module(self, name: str):
        """Import a module as the node's firmware would (fakes and firmware alike)."""
        mod = self.mods._import(name, fromlist=("__name__",))
        return mod

    def console(self) -> list[str]:
        return [t for _, t in self.board.console]

    def read_json(self, rel: str):
        return json.loads((self.flash_dir / rel).read_text())
