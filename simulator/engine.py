"""The virtual-time engine: many nodes in one CPython process.

Each node runs the shared boot loop (simulator/mp/bootloop.py) in a greenlet of its own. A node
runs until its clock passes the horizon the scheduler gave it (global time + one quantum), then
hands control back; the scheduler always resumes the node that is furthest behind, so nodes
stay within a quantum of each other and of the scenario's global events (Wi-Fi outages...).
Nothing waits on the wall clock.
"""

from __future__ import annotations

import heapq
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from greenlet import greenlet

from simulator import energy, flash, profiles, worlds
from simulator.loader import NodeModules
from simulator.mp import bootloop, simbattery, simboard, simnet
from simulator.scenario import Scenario


@dataclass
class Message:
    t_us: int
    topic: str
    payload: str


class SimNode:
    """One node: its board, its flash, its module table, and what it published."""

    def __init__(self, sim: "Simulation", spec, index: int):
        self.sim = sim
        self.spec = spec
        self.id = spec.id
        self.profile = profiles.load(spec.board)
        self.flash_dir = sim.workdir / spec.id
        config = spec.config
        if sim.broker is not None:  # the run's broker, without touching the scenario
            mqtt = dict(config.get("mqtt") or {}, host=sim.broker[0], port=sim.broker[1])
            config = dict(config, mqtt=mqtt)
        flash.install(self.flash_dir, spec.type, config, self.profile)
        self.board = simboard.Board(spec.id, self.profile, str(self.flash_dir),
                                    seed=sim.scenario.seed * 100003 + index,
                                    rtc_epoch=sim.scenario.start_unix - simboard.SECONDS_1970_TO_2000)
        self.board.network = sim.network
        self.board.ticks_offset_ms = spec.ticks_offset_ms
        self.board.console_sink = self._console
        self.messages: list[Message] = []
        self.log: list[tuple[int, str]] = []
        self.crashes = 0
        simbattery.attach(self.board)
        self.world = worlds.attach(self.board, spec.type, spec.world, sim.scenario.seed * 100003 + index,
                                   sim.scenario.start_unix)
        self.modules = NodeModules(self.board)

    # ---- the world around the board -----------------------------------------------------
    def _console(self, board, text: str) -> None:
        if text.startswith("PUB "):
            _, topic, payload = text.split(" ", 2)
            self.messages.append(Message(board.clock.now_us, topic, payload))
        else:
            self.log.append((board.clock.now_us, text))

    # ---- the program protocol of bootloop.run ---------------------------------------------
    def reset(self) -> None:
        self.modules.reset()

    def run_main(self) -> None:
        self.modules.run_main()

    def crashed(self, exc: BaseException) -> None:
        self.crashes += 1

    # ---- figures ------------------------------------------------------------------------------
    def readings(self) -> list[dict]:
        out = []
        for m in self.messages:
            if m.topic.endswith("/telemetry"):
                out.extend(json.loads(m.payload)["r"])
        return out

    def summary(self, span_us: int) -> dict:
        currents = self.profile["currents_ma"]
        e = self.board.energy_us
        # the board's states, plus what its sensors draw from their own supply
        sensors_mah = sum(p.charge_ma_us() for p in self.board.peripherals) / 3.6e9
        mah_day = energy.per_day(e, currents, span_us) + sensors_mah * 86_400_000_000 / max(1, span_us)
        awake = sum(us for st, us in e.items() if st not in (simboard.DEEP_SLEEP, simboard.OFF))
        b = self.profile.get("battery")
        return {
            "node": self.id,
            "type": self.spec.type,
            "board": self.spec.board,
            "readings": len(self.readings()),
            "reports": sum(1 for m in self.messages if m.topic.endswith("/telemetry")),
            "boots": self.board.boots,
            "awake_s": awake / 1e6,
            "mah_per_day": mah_day,
            "battery_days": energy.battery_days(mah_day, b["capacity_mah"]) if b else None,
            "crashes": self.crashes,
            # optical dust sensors wear out with laser hours (PMS5003: ~8,000 h)
            "laser_on_s": sum(p.laser_on_us for p in self.board.peripherals if hasattr(p, "laser_on_us")) / 1e6,
        }


class Simulation:
    def __init__(self, scenario: Scenario, workdir: Path | None = None, keep: bool = False,
                 only: set[str] | None = None, broker: tuple[str, int] | None = None,
                 tap: tuple[str, int] | None = None):
        """only: run just these node ids (a shard); seeds still follow the whole scenario.
        broker: (host, port) of a real MQTT broker: every node's config gets it, the nodes
        publish there through the firmware's own client, and a subscriber here records what
        arrives (instead of the console lines of the offline transport). tap: where that
        subscriber connects, when not to the nodes' broker address (a relay in between)."""
        self.broker = broker
        self.scenario = scenario
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="townsense-sim-", dir=_scratch_dir()))
        self.keep = keep
        self.network = simnet.NetworkWorld([
            simnet.AccessPoint(ap["ssid"], ap.get("key", ""), bytes([2, 0x54, 0x53, 0, 0, i + 1]),
                               ap.get("channel", 6), ap.get("rssi", -62))
            for i, ap in enumerate(scenario.aps)], scenario.outages())
        self.nodes = [SimNode(self, spec, i) for i, spec in enumerate(scenario.nodes)
                      if only is None or spec.id in only]
        self.by_id = {n.id: n for n in self.nodes}
        self.now_us = 0
        self._schedule_faults()
        self.tap = BrokerTap(self, tap or broker) if broker is not None else None

    # ---- faults ----------------------------------------------------------------------------
    def _schedule_faults(self) -> None:
        # Network outages live in the NetworkWorld (intervals); these are per-board events.
        for f in self.scenario.faults:
            if f.node is not None and f.node not in self.by_id:
                continue  # another shard's node
            if f.kind == "power_cut":
                off_ms = f.for_us // 1000
                self.by_id[f.node].board.call_at(f.at_us, lambda b, ms=off_ms: b.power_cut(ms))
            elif f.kind == "reset":
                self.by_id[f.node].board.call_at(f.at_us, _hard_reset)
            elif f.kind == "flash_full":
                self.by_id[f.node].board.call_at(f.at_us, lambda b, n=f.value: _fill_flash(b, n))

    # ---- the scheduler ---------------------------------------------------------------------------
    def run(self) -> list[dict]:
        until = self.scenario.duration_us
        quantum = self.scenario.quantum_ms * 1000
        sched = greenlet.getcurrent()
        heap = []
        for i, node in enumerate(self.nodes):
            node.glet = greenlet(lambda n=node: bootloop.run(n.board, n, until), parent=sched)
            node.board.clock.hook = sched.switch
            heap.append((0, i))
        heapq.heapify(heap)
        try:
            while heap:
                t, i = heapq.heappop(heap)
                node = self.nodes[i]
                self.now_us = t
                node.board.clock.horizon = t + quantum
                node.glet.switch()
                if not node.glet.dead:
                    heapq.heappush(heap, (node.board.clock.now_us, i))
        finally:
            for node in self.nodes:
                node.board.clock.hook = None
                node.glet = None
            if self.tap is not None:
                self.tap.stop()
        return [n.summary(until) for n in self.nodes]

    def close(self) -> None:
        if self._own_dir and not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)


class BrokerTap:
    """A paho-mqtt subscriber to everything under the nodes' prefixes: what reached the broker
    is what the town would see. Arrival times are the scheduler's sim time at arrival."""

    def __init__(self, sim: "Simulation", broker: tuple[str, int]):
        import threading

        import paho.mqtt.client as mqtt

        self.sim = sim
        self.ready = threading.Event()
        # A persistent session: what arrives while the tap reconnects (a broker restart) is
        # queued for it, as for the town's collector.
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="townsense-sim-tap-%x" % id(self),
                                  clean_session=False)
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        self.count = 0  # messages received
        self.client.on_connect = lambda c, u, f, rc, p=None: self._subscribe()
        self.client.on_subscribe = lambda *a: self.ready.set()
        self.client.on_message = self._message
        self.client.connect(broker[0], broker[1], keepalive=60)
        self.client.loop_start()
        if not self.ready.wait(10):
            raise RuntimeError("cannot subscribe at the broker %s:%d" % broker)

    def _subscribe(self):
        prefixes = {n.spec.config.get("prefix", "townsense") for n in self.sim.nodes}
        self.client.subscribe([(p + "/#", 1) for p in sorted(prefixes)])

    def _message(self, client, userdata, msg):
        if msg.retain:
            return  # a retained copy of an earlier message, not something sent now
        parts = msg.topic.split("/")
        node = self.sim.by_id.get(parts[-2]) if len(parts) >= 3 else None
        self.count += 1
        if node is not None:
            node.messages.append(Message(self.sim.now_us, msg.topic, msg.payload.decode("utf-8", "replace")))

    def stop(self, quiet_s: float = 0.3, limit_s: float = 15.0):
        """Wait until the tap is connected (it may be reconnecting after a broker outage: its
        session holds what came meanwhile) and nothing has arrived for quiet_s, then leave."""
        import time

        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            before = self.count
            time.sleep(quiet_s)
            if self.client.is_connected() and self.ready.is_set() and self.count == before:
                break
        self.client.disconnect()
        self.client.loop_stop()


def _scratch_dir() -> str | None:
    """Where the nodes' flash directories go: memory-backed when the machine has it (a node
    renames a file at every report; on a disk each rename costs a journal commit)."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return str(shm)
    return None


def _hard_reset(board) -> None:
    raise simboard.HardReset()


def _fill_flash(board, free_bytes: int) -> None:
    # Something else (a log, a bad update) eats the flash: leave only free_bytes.
    board.flash_budget = board.flash_used + free_bytes


def _run_shard(args) -> tuple[list[dict], dict[str, list[Message]]]:
    scenario, ids = args
    sim = Simulation(scenario, only=set(ids))
    try:
        rows = sim.run()
        return rows, {n.id: n.messages for n in sim.nodes}
    finally:
        sim.close()


def run_sharded(scenario: Scenario, jobs: int = 1) -> tuple[list[dict], dict[str, list[Message]]]:
    """Run the scenario split over `jobs` processes (nodes interact only through the network,
    so a shard needs nothing from another). Rows come back in the scenario's node order."""
    ids = [n.id for n in scenario.nodes]
    jobs = max(1, min(jobs, len(ids)))
    if jobs == 1:
        return _run_shard((scenario, ids))
    import multiprocessing

    shards = [ids[i::jobs] for i in range(jobs)]
    with multiprocessing.get_context("fork").Pool(jobs) as pool:
        parts = pool.map(_run_shard, [(scenario, shard) for shard in shards])
    rows = {r["node"]: r for part, _ in parts for r in part}
    msgs = {k: v for _, m in parts for k, v in m.items()}
    return [rows[i] for i in ids], msgs
