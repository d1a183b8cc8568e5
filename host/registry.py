"""The device registry: one SQLite file the installer's provisioning writes and the town's
fleet tools read (where each node is, what it runs). One row per node id; re-provisioning
updates the row and keeps the id, the credentials and the first provisioning time."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    id TEXT PRIMARY KEY,            -- the node id: topics, MQTT user name
    type TEXT NOT NULL,             -- node type (fill_level, air_quality, ...)
    board TEXT NOT NULL,            -- board profile name (boards/*.json)
    location TEXT,                  -- free text: "Market Square, bin 3"
    lat REAL, lon REAL,             -- WGS84 degrees, for routes and maps
    firmware TEXT,                  -- firmware version written to it
    micropython TEXT,               -- the board's MicroPython version, as read at provisioning
    mqtt_user TEXT,                 -- its broker user name (= id)
    password_hash TEXT,             -- mosquitto PBKDF2 hash of its password (never the password)
    provisioned_at TEXT NOT NULL,   -- first provisioning, UTC ISO 8601
    updated_at TEXT NOT NULL        -- last provisioning
);
"""

FIELDS = ("id", "type", "board", "location", "lat", "lon", "firmware", "micropython", "mqtt_user",
          "password_hash", "provisioned_at", "updated_at")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Registry:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(self.path), timeout=30)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "Registry":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def get(self, node_id: str) -> dict | None:
        row = self.db.execute("SELECT * FROM devices WHERE id = ?", (node_id,)).fetchone()
        return dict(row) if row else None

    def all(self) -> list[dict]:
        return [dict(r) for r in self.db.execute("SELECT * FROM devices ORDER BY id")]

    def upsert(self, node_id: str, **fields) -> dict:
        """Insert or update one device; unknown fields are an error; provisioned_at is kept."""
        bad = set(fields) - set(FIELDS)
        if bad:
            raise ValueError("unknown registry fields: %s" % ", ".join(sorted(bad)))
        now = _now()
        old = self.get(node_id)
        row = dict(old or {"id": node_id, "provisioned_at": now})
        row.update({k: v for k, v in fields.items() if k not in ("id", "provisioned_at")})
        row["updated_at"] = now
        for k in ("type", "board"):
            if not row.get(k):
                raise ValueError("a device needs a %s" % k)
        cols = [k for k in FIELDS if k in row]
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO devices (%s) VALUES (%s)" % (
                ", ".join(cols), ", ".join("?" for _ in cols)), [row[k] for k in cols])
        return self.get(node_id)  # type: ignore[return-value]

    def locations(self) -> dict[str, tuple[float, float]]:
        """{node id: (lat, lon)} of the devices with a position."""
        return {r["id"]: (r["lat"], r["lon"]) for r in self.all() if r["lat"] is not None and r["lon"] is not None}
