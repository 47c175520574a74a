#!/usr/bin/python3
"""Benchmark of the monitoring room with dashboards open: what the live site updates cost.

One real kitchen-monitor subscribes to a real Mosquitto. A test client plays --sites gateways (each
with --cameras cameras and --sensors sensors, as docs/mqtt.md describes them) and publishes
--messages camera and sensor state messages at QoS 1 as fast as the broker takes them, spread over
the sites as a city's gateways send them (each state every state_interval). Rounds alternate
between no dashboard open and --dashboards emulated dashboards: each holds /api/stream open and does
what src/monitor/dashboard.cpp does with the live events (the rows of a "sites" event are patched in;
a "site" event of the monitor before it, and its "alert", refetch /api/sites 150 ms later, at most
one fetch in flight). A round's time runs from its first publish until a last message (an alert,
published after the states) is in the API: the monitor stores one message after the other.

Prints each round, then per mode the median time and rate, the monitor's CPU time a message, and
with dashboards: /api/sites fetches a dashboard made a second, their median time and size, and the
site rows patched from the events. The ratio with/without dashboards is what a city's room pays for
its open dashboards. Usage (after scripts/build.sh):
bench/monitor_dashboards.py [--sites 300] [--messages 4000] [--dashboards 4] [--rounds 3]
"""

import argparse
import http.client
import json
import os
import pathlib
import statistics
import sys
import tempfile
import threading
import time

import paho.mqtt.client as mqtt

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
sys.path.insert(0, str(ROOT / "bench"))
import kg_e2e  # noqa: E402
from monitor_ingest import Monitor, cpu_seconds, now_iso  # noqa: E402


class Dashboard(threading.Thread):
    """An open dashboard: its live stream, and the fetches its events cause."""

    def __init__(self, monitor):
        super().__init__(daemon=True)
        self.monitor = monitor
        self.stop_flag = threading.Event()
        self.due = threading.Event()
        self.lock = threading.Lock()
        self.fetch_times = []
        self.fetch_bytes = []
        self.patched = 0
        self.rows_seen = False
        self.conn = None
        self.fetcher = threading.Thread(target=self.fetch_loop, daemon=True)

    def reset(self):
        with self.lock:
            self.fetch_times, self.fetch_bytes, self.patched = [], [], 0

    def run(self):
        self.fetcher.start()
        self.conn = http.client.HTTPConnection("127.0.0.1", self.monitor.port, timeout=60)
        self.conn.request("GET", "/api/stream", headers={"Authorization": self.monitor.auth})
        r = self.conn.getresponse()
        if r.status != 200:
            raise SystemExit(f"/api/stream answered {r.status}")
        event, data = None, []
        try:
            while not self.stop_flag.is_set():
                line = r.fp.readline()
                if not line:
                    return
                line = line.rstrip(b"\r\n")
                if line.startswith(b"event:"):
                    event = line[6:].strip().decode()
                elif line.startswith(b"data:"):
                    data.append(line[5:].strip())
                elif not line:
                    if event:
                        self.dispatch(event, b"\n".join(data))
                    event, data = None, []
        except (OSError, ValueError):
            return  # closed by stop()

    def dispatch(self, event, data):
        if event == "sites":  # rows to patch: this version's dashboard fetches no list for them
            with self.lock:
                self.patched += len(json.loads(data)["rows"])
                self.rows_seen = True
            return
        # An alert: the list before rows came with the events; now only the alerts' own list.
        if event == "site" or (event == "alert" and not self.rows_seen):
            self.due.set()

    def fetch_loop(self):
        while not self.stop_flag.is_set():
            if not self.due.wait(0.5):
                continue
            time.sleep(0.15)  # the dashboard's schedule(): events within 150 ms make one fetch
            self.due.clear()
            t0 = time.monotonic()
            status, body = self.monitor.get("/api/sites")
            elapsed = time.monotonic() - t0
            if status == 200:
                with self.lock:
                    self.fetch_times.append(elapsed)
                    self.fetch_bytes.append(len(body))

    def stop(self):
        self.stop_flag.set()
        self.due.set()
        if self.conn is not None and self.conn.sock is not None:
            try:
                self.conn.sock.shutdown(2)
            except OSError:
                pass


def site_id(i):
    return f"sch-{i:04d}"


def gateway_message(site, cameras, sensors):
    return {"site": site, "name": f"canteen {site}", "version": "bench", "started_at": now_iso(),
            "cameras": [{"id": f"cam{c}", "name": f"camera {c}", "public": False, "checks": ["mask"]}
                        for c in range(cameras)],
            "sensors": [{"id": f"fridge{s}", "name": f"fridge {s}", "kind": "temperature", "unit": "°C"}
                        for s in range(sensors)],
            "time": now_iso()}


def camera_state(site, camera, n):
    return {"site": site, "camera": camera, "name": camera, "online": True, "fps_in": 25.0 - (n % 3) * 0.1,
            "fps_analysed": 5.0, "frames_dropped": n, "reconnects_1h": 0, "stalls_1h": 0, "decode_errors": 0,
            "last_frame_time": now_iso(), "conditions": [], "time": now_iso()}


def sensor_state(site, sensor, n):
    return {"site": site, "sensor": sensor, "name": sensor, "kind": "temperature", "location": "fridge",
            "unit": "°C", "online": True, "value": round(3.0 + (n % 7) * 0.1, 1), "reading_time": now_iso(),
            "conditions": [], "time": now_iso()}


def alert(site, event_id):
    return {"message_id": f"{event_id}:start", "id": event_id, "site": site, "camera": "cam0", "check": "bin_lid",
            "label": "open", "severity": 2, "state": "start", "start_time": now_iso(), "end_time": None,
            "time": now_iso(), "score": 0.9, "top_score": 0.9, "boxes": [], "zone": None,
            "evidence": {"snapshot": None, "snapshot_end": None, "clip": None, "errors": []}}


def publish_all(client, messages):
    infos = [client.publish(topic, json.dumps(payload), qos=1) for topic, payload in messages]
    for info in infos:
        info.wait_for_publish(120)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sites", type=int, default=300)
    ap.add_argument("--cameras", type=int, default=4, help="cameras a site (default 4)")
    ap.add_argument("--sensors", type=int, default=3, help="sensors a site (default 3)")
    ap.add_argument("--messages", type=int, default=4000, help="state messages a round (default 4000)")
    ap.add_argument("--dashboards", type=int, default=4, help="dashboards open in every other round (default 4)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of each mode (default 3)")
    ap.add_argument("--dir", help="where the broker and the monitor's database go (default: a temporary folder)")
    ap.add_argument("--monitor", default=str(ROOT / "build/gateway/kitchen-monitor"))
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="kg-bench-dashboards-", dir=args.dir) as tmp:
        workdir = pathlib.Path(tmp)
        broker = kg_e2e.Broker(workdir, extra_conf="max_queued_messages 100000\n")
        monitor = client = None
        try:
            monitor = Monitor(args.monitor, workdir, broker)
            client = mqtt.Client(client_id=f"bench-gateways-{os.getpid()}", clean_session=True)
            client.max_inflight_messages_set(100)
            client.connect("127.0.0.1", broker.port)
            client.loop_start()

            sites = [site_id(i) for i in range(args.sites)]
            seed = []
            for s in sites:
                seed.append((f"kitchen/{s}/gateway", gateway_message(s, args.cameras, args.sensors)))
            publish_all(client, seed)
            for s in sites:
                client.publish(f"kitchen/{s}/availability", "online", qos=1).wait_for_publish(60)
            # The round's states: each source of each site in turn, as their state_intervals come round.
            sources = [(s, "cameras", f"cam{c}") for c in range(args.cameras) for s in sites] + \
                      [(s, "sensors", f"fridge{n}") for n in range(args.sensors) for s in sites]
            per_mode = {"none": [], "dashboards": []}
            cpu = {"none": [], "dashboards": []}
            fetches = {"rate": [], "time": [], "bytes": [], "patched": []}
            sent = 0
            for r in range(args.rounds + 1):  # the first round of each mode warms the database up
                for mode in ("none", "dashboards"):
                    boards = []
                    if mode == "dashboards":
                        boards = [Dashboard(monitor) for _ in range(args.dashboards)]
                        for b in boards:
                            b.start()
                        time.sleep(0.5)
                        for b in boards:
                            b.reset()
                    messages = []
                    for i in range(args.messages):
                        s, kind, source = sources[(sent + i) % len(sources)]
                        payload = camera_state(s, source, sent + i) if kind == "cameras" else \
                            sensor_state(s, source, sent + i)
                        messages.append((f"kitchen/{s}/{kind}/{source}/state", payload))
                    sent += args.messages
                    last = f"19abbe0c{r:02x}{mode[0]}-{sent:016x}"
                    messages.append((f"kitchen/{sites[0]}/events", alert(sites[0], last)))
                    c0 = cpu_seconds(monitor.proc.pid)
                    t0 = time.monotonic()
                    publish_all(client, messages)
                    while monitor.get(f"/api/alerts/{last}")[0] != 200:
                        if time.monotonic() - t0 > 300:
                            raise SystemExit(f"{last} not in the API after 300 s:\n{kg_e2e.tail(monitor.log_path)}")
                        time.sleep(0.02)
                    seconds = time.monotonic() - t0
                    cpu_s = cpu_seconds(monitor.proc.pid) - c0
                    label = "warm-up" if r == 0 else f"round {r}"
                    line = (f"{label:8} {mode:10} {args.messages} states {seconds:6.2f} s "
                            f"{args.messages / seconds:6.0f} /s, monitor CPU {cpu_s:5.2f} s")
                    for b in boards:
                        b.stop()
                    if boards:
                        with_times = [t for b in boards for t in b.fetch_times]
                        rate = sum(len(b.fetch_times) for b in boards) / len(boards) / seconds
                        patched = sum(b.patched for b in boards) / len(boards)
                        med = statistics.median(with_times) * 1000 if with_times else 0.0
                        size = statistics.median([x for b in boards for x in b.fetch_bytes]) if with_times else 0
                        line += (f"; a dashboard: {rate:.1f} /api/sites a second (median {med:.0f} ms, "
                                 f"{size / 1024:.0f} KiB), {patched:.0f} rows patched")
                        if r > 0:
                            fetches["rate"].append(rate)
                            fetches["time"].append(med)
                            fetches["bytes"].append(size)
                            fetches["patched"].append(patched)
                    print(line, flush=True)
                    if r > 0:
                        per_mode[mode].append(seconds)
                        cpu[mode].append(cpu_s)
                    for b in boards:
                        b.join(5)

            print()
            median = {m: statistics.median(t) for m, t in per_mode.items()}
            for m, t in per_mode.items():
                print(f"{m:10} median {median[m]:.2f} s ({args.messages / median[m]:.0f} states/s) of "
                      f"{', '.join(f'{x:.2f}' for x in t)}; monitor CPU "
                      f"{statistics.median(cpu[m]) / args.messages * 1000:.3f} ms a state")
            print(f"{args.dashboards} dashboards: {statistics.median(fetches['rate']):.1f} /api/sites fetches a "
                  f"dashboard a second, median {statistics.median(fetches['time']):.0f} ms and "
                  f"{statistics.median(fetches['bytes']) / 1024:.0f} KiB each; "
                  f"{statistics.median(fetches['patched']):.0f} site rows patched from events a round")
            print(f"with/without dashboards: time {median['dashboards'] / median['none']:.2f}, monitor CPU "
                  f"{statistics.median(cpu['dashboards']) / statistics.median(cpu['none']):.2f}")
            return 0
        finally:
            if client is not None:
                client.loop_stop()
                client.disconnect()
            if monitor is not None:
                monitor.stop()
            broker.stop()


if __name__ == "__main__":
    sys.exit(main())
