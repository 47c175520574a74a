#!/usr/bin/python3
"""Benchmark of the monitoring room with a city's alert history: what the dashboard's reads cost
and whether they hold up ingest.

A city's room keeps years of alerts (retention.alerts, 730 days by default): --sites canteens x
about 3 alerts a day make 600,000 closed alerts, beside the few hundred still open. The benchmark
starts a real kitchen-monitor on a real Mosquitto, stops it once its database exists, fills the
history into that database (its own schema: the rows as ingest writes them, two messages an
alert), starts it again and times, --rounds times each, what a dashboard asks for:
/api/sites (every 20 s per open dashboard), one site's row (what the live updates build each
second for every site with news, timed by the ingest round below), the list of active alerts and its X-Total-Count, /api/checks.

The history holds one alert open for a month with --long updates (86 400: one every 30 s), stored
as a version before the room counted each alert's messages left it: it times --updates updates of it
and as many of a new alert, on the same monitor (the ratio is what a long history costs each
update), and GET /api/alerts/<id> of it.

Then it times ingest with the history present: --states camera state messages from every site
(each one makes the room rebuild the site's row within a second) and an alert start behind them,
until the alert is in the API; the same in the same run on a second monitor with an empty
database is the peer, and the ratio is what the history costs. Prints each figure; exit status 1
if an answer was not 200.

Last, it starts the monitor again with retention.alerts at half the history's age (about 300 000
alerts due at once: an upgrade, a retention shortened) and times an alert published at its start
until it is in the API, while the pass runs, and the pass itself. Usage (after scripts/build.sh):
bench/monitor_history.py [--sites 300] [--alerts 600000] [--open 1000] [--rounds 5] [--states 3000]
                         [--long 86400] [--updates 1000]
"""

import argparse
import json
import os
import pathlib
import random
import sqlite3
import statistics
import sys
import tempfile
import time

import paho.mqtt.client as mqtt

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
sys.path.insert(0, str(ROOT / "bench"))
import kg_e2e  # noqa: E402
from monitor_ingest import Monitor, cpu_seconds, now_iso  # noqa: E402

CHECKS = [("mask", "no_mask"), ("head_covering", "bare"), ("cleanliness", "dirty"), ("unattended", "unattended"),
          ("fridge_temp", "too_warm")]


def site_id(i):
    return f"sch-{i:04d}"


LONG_ID = "1a2b3c4d5e6f-0000000000000042"


def fill_history(db_path, sites, alerts, open_alerts, long_updates):
    """Closed alerts spread over two years, the last `open_alerts` of them open or acknowledged, and
    LONG_ID open for a month with `long_updates` updates."""
    rnd = random.Random(1)
    db = sqlite3.connect(db_path)
    db.execute("PRAGMA journal_mode=WAL")
    db.executemany("INSERT OR IGNORE INTO sites(site, availability, last_seen) VALUES (?, 'online', ?)",
                   [(site_id(i), now_iso()) for i in range(sites)])
    start = time.time() - 730 * 86400
    batch, messages = [], []
    for i in range(alerts):
        t = time.gmtime(start + i * (730 * 86400 / alerts))
        when = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", t)
        is_open = i >= alerts - open_alerts
        status = rnd.choice(["open", "acknowledged"]) if is_open else "closed"
        check, label = CHECKS[i % len(CHECKS)]
        event_id = f"{i:012x}-{rnd.getrandbits(64):016x}"
        batch.append((event_id, site_id(i % sites), "camera", "cooking", check, label, 1 + i % 3,
                      "start" if is_open else "end", when, None if is_open else when, 0.8, 0.9, None, "", 2, when, when,
                      status, None if is_open else "operator", None if is_open else when,
                      None if is_open else "cleared"))
        messages.append((f"{event_id}:start", event_id, 1, "start", when, when, '{"state":"start"}'))
        if not is_open:
            messages.append((f"{event_id}:end", event_id, 2, "end", when, when, '{"state":"end"}'))
        if len(batch) >= 20000 or i == alerts - 1:
            db.executemany(
                "INSERT INTO alerts(id, site, source_kind, source, check_name, label, severity, condition,"
                " start_time, end_time, score, top_score, value, unit, last_seq, received_at, updated_at, status,"
                " closed_by, closed_at, end_reason) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", batch)
            db.executemany("INSERT INTO event_messages VALUES (?,?,?,?,?,?,?)", messages)
            db.commit()
            batch, messages = [], []
    month_ago = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() - 30 * 86400))
    db.execute(
        "INSERT INTO alerts(id, site, source_kind, source, check_name, label, severity, condition, start_time,"
        " score, top_score, unit, last_seq, received_at, updated_at, status)"
        " VALUES (?, ?, 'camera', 'store', 'camera_health', 'offline', 1, 'update', ?, 1, 1, '', ?, ?, ?, 'open')",
        (LONG_ID, site_id(1), month_ago, long_updates + 1, month_ago, month_ago))
    db.executemany("INSERT INTO event_messages VALUES (?,?,?,?,?,?,?)",
                   [(f"{LONG_ID}:{'start' if n == 0 else f'update-{n}'}", LONG_ID, n + 1,
                     "start" if n == 0 else "update", month_ago, month_ago, '{"state":"update","score":1.0}')
                    for n in range(long_updates + 1)])
    db.commit()
    db.close()


def alert_message(event_id, site, state, n=0):
    return {"message_id": f"{event_id}:{state if state != 'update' else f'update-{n}'}", "id": event_id,
            "site": site, "camera": "store", "check": "camera_health", "label": "offline", "severity": 1,
            "state": state, "start_time": now_iso(), "end_time": None, "time": now_iso(), "score": 1.0,
            "top_score": 1.0, "boxes": [], "zone": None,
            "evidence": {"snapshot": None, "snapshot_end": None, "clip": None, "errors": []}}


def updates_round(monitor, broker, event_id, site, first, count):
    """Seconds and monitor CPU seconds for `count` updates of event_id, numbered from `first`, until
    every one is in its history (its `messages`)."""
    client = mqtt.Client(client_id=f"bench-updates-{os.getpid()}-{time.time_ns()}", clean_session=True)
    client.max_inflight_messages_set(100)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        expected = json.loads(monitor.get(f"/api/alerts/{event_id}")[1])["messages"] + count
        c0 = cpu_seconds(monitor.proc.pid)
        t0 = time.monotonic()
        infos = [client.publish(f"kitchen/{site}/events", json.dumps(alert_message(event_id, site, "update", n)),
                                qos=1) for n in range(first, first + count)]
        for info in infos:
            info.wait_for_publish(120)
        while True:
            status, body = monitor.get(f"/api/alerts/{event_id}")
            if status == 200 and json.loads(body)["messages"] >= expected:
                break
            if time.monotonic() - t0 > 600:
                raise SystemExit(f"updates of {event_id} not in the API after 600 s")
            time.sleep(0.05)
        return time.monotonic() - t0, cpu_seconds(monitor.proc.pid) - c0
    finally:
        client.loop_stop()
        client.disconnect()


def retention_round(binary, workdir, broker):
    """Starts the monitor with half the history past retention.alerts; (seconds until an alert
    published at its start is in the API, seconds of the pass by its log)."""
    log = workdir / "monitor.log"
    log.rename(workdir / "monitor-before-retention.log")
    t0 = time.monotonic()
    monitor = Monitor(binary, workdir, broker, extra={"retention": {"alerts": "365d"}})
    try:
        client = mqtt.Client(client_id=f"bench-retention-{os.getpid()}", clean_session=True)
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        event_id = f"1a2b3c4d5e70-{os.getpid():016x}"
        sent = time.monotonic()
        client.publish(f"kitchen/{site_id(2)}/events", json.dumps(alert_message(event_id, site_id(2), "start")),
                       qos=1).wait_for_publish(60)
        while monitor.get(f"/api/alerts/{event_id}")[0] != 200:
            if time.monotonic() - sent > 600:
                raise SystemExit("the alert published during the retention pass never came")
            time.sleep(0.02)
        latency = time.monotonic() - sent
        client.loop_stop()
        client.disconnect()
        kg_e2e.wait_until(lambda: "retention: deleted" in monitor.log(), 600, what="the retention pass's end")
        return latency, time.monotonic() - t0
    finally:
        monitor.stop()


def timed(monitor, path, rounds):
    """(median seconds, answer bytes) of GET path."""
    times, size = [], 0
    for _ in range(rounds):
        t0 = time.monotonic()
        status, body = monitor.get(path)
        times.append(time.monotonic() - t0)
        if status != 200:
            raise SystemExit(f"GET {path}: {status} {body[:200]!r}")
        size = len(body)
    return statistics.median(times), size


def ingest_round(monitor, broker, sites, states, tag):
    """Seconds and monitor CPU seconds from the first state published until an alert behind them is in the API."""
    client = mqtt.Client(client_id=f"bench-history-{tag}-{os.getpid()}", clean_session=True)
    client.max_inflight_messages_set(100)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        c0 = cpu_seconds(monitor.proc.pid)
        t0 = time.monotonic()
        infos = []
        for n in range(states):
            site = site_id(n % sites)
            state = {"camera": "cooking", "name": "Cooking line", "online": n % 2 == 0, "time": now_iso(),
                     "fps_in": 15.0, "fps_analysed": 2.0, "checks": []}
            infos.append(client.publish(f"kitchen/{site}/cameras/cooking/state", json.dumps(state), qos=1))
        last = f"{tag}-{os.getpid():08x}-5f0c2a9e8d7b6c5a"
        alert = {"message_id": f"{last}:start", "id": last, "site": site_id(0), "camera": "cooking", "check": "mask",
                 "label": "no_mask", "severity": 2, "state": "start", "start_time": now_iso(), "end_time": None,
                 "time": now_iso(), "score": 0.9, "top_score": 0.9, "boxes": [], "zone": None,
                 "evidence": {"snapshot": None, "snapshot_end": None, "clip": None, "errors": []}}
        infos.append(client.publish(f"kitchen/{site_id(0)}/events", json.dumps(alert), qos=1))
        for info in infos:
            info.wait_for_publish(120)
        while monitor.get(f"/api/alerts/{last}")[0] != 200:
            if time.monotonic() - t0 > 600:
                raise SystemExit(f"{last} not in the API after 600 s:\n{kg_e2e.tail(monitor.log_path, 3000)}")
            time.sleep(0.05)
        return time.monotonic() - t0, cpu_seconds(monitor.proc.pid) - c0
    finally:
        client.loop_stop()
        client.disconnect()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sites", type=int, default=300)
    ap.add_argument("--alerts", type=int, default=600000, help="alerts in the history (default 600000)")
    ap.add_argument("--open", type=int, default=1000, help="of them open or acknowledged (default 1000)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--states", type=int, default=3000, help="state messages in the ingest round (default 3000)")
    ap.add_argument("--long", type=int, default=86400, help="updates of the month-long alert (default 86400)")
    ap.add_argument("--updates", type=int, default=1000, help="updates timed on it and on a new one (default 1000)")
    ap.add_argument("--dir", help="where the broker and the databases go (default: a temporary folder)")
    ap.add_argument("--monitor", default=str(ROOT / "build/gateway/kitchen-monitor"))
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="kg-bench-history-", dir=args.dir) as tmp:
        root = pathlib.Path(tmp)
        broker = kg_e2e.Broker(root, extra_conf="max_queued_messages 100000\n")
        monitors = []
        try:
            full, empty = root / "history", root / "empty"
            full.mkdir()
            empty.mkdir()
            first = Monitor(args.monitor, full, broker)
            first.stop()
            # Monitor() reads the dashboard's port from the log: the next start's, not this one's.
            (full / "monitor.log").rename(full / "monitor-first.log")
            t0 = time.monotonic()
            fill_history(full / "monitor.db", args.sites, args.alerts, args.open, args.long)
            print(f"history: {args.alerts} alerts ({args.open} open) of {args.sites} sites written in"
                  f" {time.monotonic() - t0:.0f} s, database {(full / 'monitor.db').stat().st_size / 2**20:.0f} MiB")
            monitor = Monitor(args.monitor, full, broker)
            monitors.append(monitor)
            for label, path in [("/api/sites", "/api/sites"),
                                ("/api/alerts (active)", "/api/alerts?limit=1000"),
                                ("/api/alerts one site", f"/api/alerts?site={site_id(7)}"),
                                ("closed, one site", f"/api/alerts?status=closed&site={site_id(7)}"),
                                ("closed", "/api/alerts?status=closed"), ("all", "/api/alerts?status=all"),
                                ("active, one check", "/api/alerts?check=mask"),
                                ("the month-long alert", f"/api/alerts/{LONG_ID}"),
                                ("/api/checks", "/api/checks"), ("/metrics", "/metrics")]:
                seconds, size = timed(monitor, path, args.rounds)
                print(f"{label:24} median {seconds * 1000:8.1f} ms of {args.rounds}, {size} bytes", flush=True)
            fresh = f"1a2b3c4d5e6f-{os.getpid():016x}"
            publish_one = mqtt.Client(client_id=f"bench-fresh-{os.getpid()}", clean_session=True)
            publish_one.connect("127.0.0.1", broker.port)
            publish_one.loop_start()
            publish_one.publish(f"kitchen/{site_id(1)}/events", json.dumps(alert_message(fresh, site_id(1), "start")),
                                qos=1).wait_for_publish(60)
            publish_one.loop_stop()
            publish_one.disconnect()
            kg_e2e.wait_until(lambda: monitor.get(f"/api/alerts/{fresh}")[0] == 200, 60, what="the new alert")
            per_update = {}
            for name, event_id, first in (("month-long", LONG_ID, args.long + 1), ("new", fresh, 1)):
                seconds, cpu_s = updates_round(monitor, broker, event_id, site_id(1), first, args.updates)
                per_update[name] = cpu_s / args.updates
                print(f"updates of the {name:10} alert: {args.updates} in {seconds:6.2f} s, monitor CPU"
                      f" {cpu_s * 1000 / args.updates:.2f} ms an update", flush=True)
            print(f"an update of the month-long alert / of a new one: monitor CPU"
                  f" {per_update['month-long'] / per_update['new']:.2f}x")
            peer = Monitor(args.monitor, empty, broker, name="bench-peer")
            monitors.append(peer)
            results = {}
            for r in range(2):
                for name, m in (("history", monitor), ("empty", peer)):
                    seconds, cpu_s = ingest_round(m, broker, args.sites, args.states, f"{name}{r}")
                    results.setdefault(name, []).append(seconds)
                    print(f"ingest {name:8} round {r + 1}: {args.states} states and an alert in {seconds:6.2f} s,"
                          f" monitor CPU {cpu_s:5.2f} s", flush=True)
            h, e = min(results["history"]), min(results["empty"])
            print(f"ingest with the history / with an empty database: {h:.2f} s / {e:.2f} s = {h / e:.2f}x")
            monitor.stop()
            monitors.remove(monitor)
            latency, pass_s = retention_round(args.monitor, full, broker)
            print(f"retention of about half the history at start: an alert in the API {latency * 1000:.0f} ms after"
                  f" it was published, the pass done {pass_s:.1f} s after the start")
            return 0
        finally:
            for m in monitors:
                m.stop()
            broker.stop()


if __name__ == "__main__":
    sys.exit(main())
