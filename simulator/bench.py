"""`make bench`: figures, one a line as `name: value unit`. Never assertions: these machines are
shared and noisy; targets are in docs/bench.md."""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

from simulator import engine, scenario, wasi


def fig(name: str, value, unit: str) -> None:
    if isinstance(value, float):
        value = "%.1f" % value if abs(value) >= 10 else "%.3g" % value
    print("%s: %s %s" % (name, value, unit), flush=True)


def heartbeat(n: int, hours: float = 24) -> scenario.Scenario:
    return scenario.parse({"name": "bench-%d" % n, "hours": hours, "seed": 1, "nodes": [
        {"id": "hb-{n:04d}", "count": n, "type": "heartbeat", "board": "lolin-d32",
         "config": {"sample_s": 900, "report_s": 3600}}]})


def sim_speed(n: int, jobs: int = 1) -> tuple[float, float]:
    sc = heartbeat(n)
    t0 = time.perf_counter()
    engine.run_sharded(sc, jobs)
    wall = time.perf_counter() - t0
    return wall, sc.hours * 3600 / wall


def _publish_bytes(topic: str, payload: str) -> int:
    """A QoS 1 PUBLISH on the wire (MQTT 3.1.1 §3.3): fixed header, topic, packet id, payload,
    plus its PUBACK (4 bytes), each in its own TCP segment with 40 bytes of TCP/IP headers."""
    body = 2 + len(topic.encode()) + 2 + len(payload.encode())
    length_bytes = 1 if body < 128 else 2 if body < 16384 else 3
    return 1 + length_bytes + body + 40 + 4 + 40


def report_cycles(sample_s: int, report_s: int, hours: float = 24) -> dict:
    """A battery heartbeat node (lolin-d32) over a real broker (the embedded one) for `hours`:
    bytes on the wire per reading, awake time per wake, mAh per day."""
    from simulator.broker import EmbeddedBroker
    from simulator.mp import simboard

    sc = scenario.parse({"name": "bench-cycle", "hours": hours, "seed": 1, "nodes": [
        {"id": "hb-1", "type": "heartbeat", "board": "lolin-d32",
         "config": {"sample_s": sample_s, "report_s": report_s}}]})
    broker = EmbeddedBroker(log_level=50).start()
    sim = engine.Simulation(sc, broker=(broker.host, broker.port))
    node = sim.nodes[0]
    board = node.board
    marks = []  # (boot time, awake µs so far, bytes sent so far), at every boot

    def awake_us(b):
        return sum(us for st, us in b.energy_us.items() if st not in (simboard.DEEP_SLEEP, simboard.OFF))
    board.boot_hooks.append(lambda b: marks.append((b.now_us(), awake_us(b), b.net_bytes[0])))
    try:
        sim.run()
        summary = node.summary(sc.duration_us)
    finally:
        sim.close()
        broker.stop()
    marks.append((sc.duration_us, awake_us(board), board.net_bytes[0]))
    report_wakes, sample_wakes = [], []
    for (t0, a0, n0), (t1, a1, n1) in zip(marks, marks[1:]):
        (report_wakes if n1 > n0 else sample_wakes).append((a1 - a0) / 1e6)
    tele = [m for m in node.messages if m.topic.endswith("/telemetry")]
    readings = sum(len(json.loads(m.payload)["r"]) for m in tele)
    return {
        "readings": readings,
        "per_message": readings / max(1, len(tele)),
        "telemetry_bytes_per_reading": sum(_publish_bytes(m.topic, m.payload) for m in tele) / max(1, readings),
        "all_bytes_per_reading": sum(board.net_bytes) / max(1, readings),
        "awake_report_wake_s": statistics.median(report_wakes[1:] or report_wakes or [0]),
        "awake_sample_wake_s": statistics.median(sample_wakes or [0]),
        "mah_per_day": summary["mah_per_day"],
        "battery_years": summary["battery_days"] / 365.25,
    }


CYCLE_HEAP = 2 * 1024 * 1024  # room for the whole cycle with the collector off


def wasi_cycle(sample: bool, mpy: bool = True, mqtt: bool = True) -> wasi.WasiResult:
    """One power-on boot-to-sleep cycle (the heaviest: it connects, sets the clock and reports)
    of a battery heartbeat node, firmware installed as .mpy, in the WASI MicroPython; with
    mqtt, over the firmware's own MQTT client to a fresh embedded broker (a fresh session:
    the node subscribes, as after provisioning), else with the console transport."""
    from simulator.broker import EmbeddedBroker

    sc = heartbeat(1, hours=1)
    broker = EmbeddedBroker(log_level=50).start() if mqtt else None
    try:
        res = wasi.run_node(sc.nodes[0], sc, heap_bytes=CYCLE_HEAP, mode="cycle", mpy=mpy,
                            sample_every=1 if sample else 0,
                            broker=(broker.host, broker.port) if broker else None)
    finally:
        if broker:
            broker.stop()
    if not any(t == "CYCLE OK" for _, t in res.lines):
        raise RuntimeError("the cycle did not end in deep sleep:\n%s" % "\n".join(t for _, t in res.lines[-20:]))
    return res


def peak_heap(mqtt: bool = True) -> dict[str, int]:
    """Heap figures of one cycle, in bytes (docs/micropython-proof.md):
    baseline: what the simulator (fakes, boot loop) holds before the firmware starts: collected
      between boots at the runner's top level, exact;
    peak: the most the firmware holds at once: the heap in use, right after a collection, read
      at every blocking call, console line, import and open() of the cycle (the VM's memory is
      put back after each reading), minus the same reading at boot; it misses the frames of
      the calls in progress that the VM keeps on the heap (64-160 bytes each, few);
    ceiling: between two readings the heap in use grows at most by what is allocated: the
      largest reading-plus-allocations-until-the-next, minus the boot reading;
    alloc: bytes allocated during the cycle with the collector off, garbage included."""
    plain = wasi_cycle(sample=False, mqtt=mqtt)
    figures = {}
    for _, t in plain.lines:
        if t.startswith("BASE ") or t.startswith("ALLOC "):
            key, value = t.split()
            figures[{"BASE": "baseline", "ALLOC": "alloc"}[key]] = int(value)
    samples = wasi_cycle(sample=True, mqtt=mqtt).samples
    boot = samples[0][1]
    figures["peak"] = max(used for _, used, _, _ in samples) - boot
    figures["ceiling"] = max(samples[i][1] + samples[i + 1][2] - samples[i][2]
                             for i in range(len(samples) - 1)) - boot
    return figures


def core_figures() -> None:
    single = report_cycles(900, 900)
    batched = report_cycles(900, 3600)
    fig("wire_bytes_per_reading_single", single["telemetry_bytes_per_reading"],
        "B (one reading per telemetry message: PUBLISH + PUBACK, TCP/IP headers)")
    fig("wire_bytes_per_reading_batched", batched["telemetry_bytes_per_reading"],
        "B (%.0f readings per message, 15-min samples, hourly reports)" % batched["per_message"])
    fig("wire_bytes_all_traffic_per_reading_single", single["all_bytes_per_reading"],
        "B (whole sessions: Wi-Fi up to sleep, CONNECT, status, health, both directions)")
    fig("wire_bytes_all_traffic_per_reading_batched", batched["all_bytes_per_reading"], "B (same, hourly reports)")
    fig("awake_per_report_wake", batched["awake_report_wake_s"],
        "s (virtual, median: Wi-Fi, MQTT, publish, command window; first power-on excluded)")
    fig("awake_per_sample_wake", batched["awake_sample_wake_s"], "s (virtual, median, no radio)")
    fig("heartbeat_15min_hourly_mah_per_day", batched["mah_per_day"], "mAh/day (lolin-d32, over a broker)")
    fig("heartbeat_15min_hourly_battery_life", batched["battery_years"], "years on the profile's cell")


def fill_level_figures() -> None:
    from simulator import bench_bins

    sc = scenario.load("bins-town")
    jobs = os.cpu_count() or 1
    t0 = time.perf_counter()
    _, messages = engine.run_sharded(sc, jobs)
    fig("bins_sim_wall_50x30d", time.perf_counter() - t0, "s (%d processes)" % jobs)
    f = bench_bins.evaluate(sc, messages)
    fig("bins_median_abs_error", f["median_abs_error_pct_depth"], "%% of depth (target <= 2; p95 %.2f; %d readings)"
        % (f["p95_abs_error_pct_depth"], f["readings_compared"]))
    fig("bins_median_abs_fill_error", f["median_abs_fill_error_pts"], "fill points")
    fig("bins_collections_detected", f["collections_detected"], "(missed at >= 40 %% full: %d; below 40 %%, not "
        "detectable by design: %d; false: %d; median delay %.0f min; later than 3 h, the sensor blind: %d)"
        % (f["collections_missed"], f["collections_missed_below_40pct"], f["collections_false"],
           f["collection_detect_delay_median_s"] / 60, f["collection_detected_late"]))
    fig("bins_full_latency_median", f["bin_full_latency_median_s"] / 60, "min (max %.0f min; %d of %d fillings "
        "caught; false %d; repeated in one filling %d)" % (f["bin_full_latency_max_s"] / 60, f["bin_full_crossings_caught"],
                                                         f["bin_full_crossings_total"], f["bin_full_false"],
                                                         f["bin_full_repeated_in_one_spell"]))
    fig("bins_sensor_fault_events", f["sensor_fault_events"], "(lids left open, unplugged sensors, overfilled bins)")
    for board in ("lolin-d32", "firebeetle-esp32"):
        b = bench_bins.battery_life(board)
        fig("bin_battery_life_" + board, b["years"], "years on 3,000 mAh (%.2f mAh/day, sensor %.3f, awake %.0f s/day; "
            "30-min samples, 6-h reports; target >= 3)" % (b["mah_per_day"], b["sensor_mah_per_day"], b["awake_s_per_day"]))


def air_quality_figures() -> None:
    from simulator import bench_air

    sc = scenario.load("air-town")
    jobs = os.cpu_count() or 1
    t0 = time.perf_counter()
    _, messages = engine.run_sharded(sc, jobs)
    fig("air_sim_wall_6x30d", time.perf_counter() - t0, "s (%d processes)" % jobs)
    f = bench_air.evaluate(sc, messages)
    fig("air_hourly_pm25_mae", f["hourly_pm25_mae"], "ug/m3 against the world's hourly truth (median %.2f; "
        "dry hours, RH < 70 %%: %.2f; %d hours; raw optical readings over-read in fog)"
        % (f["hourly_pm25_median_abs_error"], f["hourly_pm25_mae_dry"], f["hours"]))
    fig("air_aqi_category_agreement", f["aqi_category_agreement_pct"], "%% of %d hours (NowCast AQI category, node vs truth)"
        % f["aqi_hours"])
    m = bench_air.energy("esp32-devkitc", 600, 600)
    fig("air_laser_hours_per_year", m["laser_h_per_year"], "h at the default 10-min cycle (PMS5003 life ~8,000 h)")
    fig("air_mains_mah_per_day", m["mah_per_day"], "mAh/day (esp32-devkitc on mains, 10-min cycle, session kept open)")
    b = bench_air.energy("firebeetle-esp32", 1800, 3600)
    fig("air_battery_mah_per_day", b["mah_per_day"], "mAh/day (firebeetle-esp32, 30-min cycle, hourly reports: "
        "%.0f days on 3,000 mAh; laser %.0f h/year)" % (b["battery_days"], b["laser_h_per_year"]))


def water_meter_figures() -> None:
    from simulator import bench_water

    rates = bench_water.max_rates()
    fig("water_max_lossless_pulse_rate_irq", rates["irq"], "Hz (light sleep, software debounce, reed bounce 0.5-3 ms; "
        "simulator timing model: ticks_ms granularity and the hold-off, no wake latency)")
    fig("water_max_lossless_pulse_rate_counter", rates["counter"], "Hz (PCNT, mains: awake)")
    s = bench_water.summary()
    fig("water_leak_latency_median", s["leak_latency_median_h"], "h (max %.1f; missed %d of 30; 2-20 l/h leaks; the "
        "rule needs 24 h without an hour of zero flow)" % (s["leak_latency_max_h"], s["leaks_missed"]))
    fig("water_false_leak_alarms", s["false_leaks"], "in %d normal household-days (target 0)" % s["household_days"])
    for board in ("lolin-d32", "firebeetle-esp32"):
        fig("water_mah_per_day_" + board, bench_water.energy(board), "mAh/day (battery, light sleep between "
            "pulses, 6-h reports)")


def traffic_figures() -> None:
    from simulator import bench_traffic, bench_traffic_cost

    for rate in (200, 800, 1800):
        r = bench_traffic.week(rate)
        what = "one lane at %d veh/h for a simulated week: %d vehicles" % (rate, r["truth"])
        fig("traffic_week_count_accuracy_%d_vph" % rate, r["count_accuracy_pct"],
            "%% (%d counted; %s; target >= 98)" % (r["counted"], what))
        fig("traffic_week_interval_accuracy_%d_vph" % rate, r["interval_accuracy_pct"],
            "% (1 - sum |node - truth| / truth over the 5-min intervals: misses and false counts do not cancel "
            "across intervals)")
        fig("traffic_week_detected_%d_vph" % rate, r["detected_pct"],
            "%% (vehicles matched to one detection; %d missed, %d false detections; two-wheelers %.0f %%)"
            % (r["missed"], r["false"], r["two_wheelers_detected_pct"]))
        fig("traffic_week_speed_mae_%d_vph" % rate, r["speed_mae_kmh"],
            "km/h (mean absolute error per vehicle, %d paired vehicles; target <= 5)" % r["n_speed"])
        fig("traffic_week_class_accuracy_%d_vph" % rate, r["class_accuracy_pct"],
            "% (length class right, per measured vehicle)")
    r = bench_traffic.week(1800, offset_m=1.2)
    fig("traffic_week_count_accuracy_1800_vph_at_1.2m", r["count_accuracy_pct"],
        "%% (%d counted of %d; the sensors 1.2 m from the lane centre, set into the road at the lane's "
        "edge, instead of 1.8 m at the kerb; detected %.1f %%, %d missed, %d false; speed error %.1f km/h)"
        % (r["counted"], r["truth"], r["detected_pct"], r["missed"], r["false"], r["speed_mae_kmh"]))
    n = bench_traffic.run(800)
    fig("traffic_node_vs_replay_800_vph", "%d / %d / %d" % (n["counted"], n["replay_counted"], n["truth"]),
        "vehicles (node in the engine / replay / truth, the same 20 minutes)")
    try:
        c = bench_traffic_cost.detector_cost()
        fig("traffic_detector_cost_wasi", c["us_per_sample"], "us per sample per sensor (Detector.feed, node "
            "rules, WASI MicroPython on this host; %.0f bytes allocated per sample)" % c["alloc_bytes_per_sample"])
        for kind in ("qmc5883l", "hmc5883l"):
            fig("traffic_read_cost_wasi_" + kind, bench_traffic_cost.read_into_cost_us(kind, 200),
                "us per sample read in the WASI MicroPython on this host (not an ESP32 figure)")
    except Exception as e:  # the cost bench needs the WASI runtime
        print("traffic_cost_wasi: unavailable (%r)" % (e,))


def main() -> int:
    core_figures()
    fill_level_figures()
    air_quality_figures()
    water_meter_figures()
    traffic_figures()
    wall1, speed1 = sim_speed(1)
    fig("sim_speed_1_node_24h", speed1, "virtual s per wall s")
    jobs = os.cpu_count() or 1
    wall, speed = sim_speed(1000, jobs)
    fig("sim_wall_1000_nodes_24h", wall, "s (%d processes)" % jobs)
    fig("sim_speed_1000_nodes_24h", speed, "virtual s per wall s")
    fig("sim_node_speed_1000_nodes_24h", speed * 1000, "node-virtual s per wall s")
    for mqtt, label in ((True, "mqtt"), (False, "console")):
        heap = peak_heap(mqtt)
        fig("mp_heap_fakes_baseline_" + label, heap["baseline"] / 1024, "KB (simulator, before the firmware starts)")
        fig("mp_heap_peak_cycle_" + label, heap["peak"] / 1024,
            "KB (firmware, most in use at once; target < 48 with the core)" if mqtt else
            "KB (same cycle, console transport instead of MQTT)")
        fig("mp_heap_peak_cycle_ceiling_" + label, heap["ceiling"] / 1024, "KB (most the peak can be between readings)")
        fig("mp_heap_alloc_cycle_upper_bound_" + label, heap["alloc"] / 1024, "KB (allocated in the cycle, garbage included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
