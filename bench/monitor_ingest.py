#!/usr/bin/python3
"""Benchmark of the monitoring room's ingest rate: what sequence numbers cost per event message.

One real kitchen-monitor (its database on the disk of --dir: every commit is an fsync, which is
the cost measured) subscribes to a real Mosquitto. A test client plays a gateway and publishes
--events event messages at QoS 1 as fast as the broker takes them, alternately without sequence
numbers (a gateway of an older version) and numbered (one stream, no gaps: docs/mqtt.md, "Sequence
numbers and replay"), --rounds rounds of each. A round's time runs from its first publish to the
moment its last event is in the monitor's API (one publisher: the broker delivers in order and the
monitor stores one message after the other, so the last one in means all are in). The machine is
shared: the modes take turns so that a busy spell costs both, and the median round is what counts.

Prints each round, then per mode the median time and rate, the monitor's CPU time an event (a busy
machine disturbs it less than the wall time; waiting for an fsync is not in it), and the ratio
numbered/unnumbered; docs/monitor.md quotes them. Exit status 1 if the monitor did not store every
event (nothing is judged on the times). Usage (after scripts/build.sh):
bench/monitor_ingest.py [--events 2000] [--rounds 5] [--dir DIR] [--monitor build/gateway/kitchen-monitor]
"""

import argparse
import base64
import datetime
import http.client
import json
import os
import pathlib
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import paho.mqtt.client as mqtt
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
import kg_e2e  # noqa: E402

OPERATOR, PASSWORD = "bench", "bench-password-0123"
SITE, STREAM = "sch-0901", "00be9c4000be9c40"


class Monitor:
    """kitchen-monitor on a generated config, its log in <workdir>/monitor.log."""

    def __init__(self, binary, workdir, broker, name="bench-monitor", extra=None):
        cfg = {
            # Two monitors on one broker need two client ids: the broker closes the first at the second's connect.
            "mqtt": {"url": broker.url, "client_id": f"{name}-{os.getpid()}"},
            "db": {"path": str(workdir / "monitor.db")},
            "http": {"listen": "127.0.0.1:0", "operators": [{"name": OPERATOR, "password": PASSWORD}]},
            **(extra or {}),
        }
        config = workdir / "monitor.yaml"
        config.write_text(yaml.safe_dump(cfg, sort_keys=False))
        self.log_path = workdir / "monitor.log"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([binary, "--config", str(config)], stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        found = kg_e2e.wait_until(lambda: self.alive() and re.search(r"dashboard on \S+ \(port (\d+)\)", self.log()),
                                  10, what="the monitor's dashboard port")
        self.port = int(found.group(1))
        kg_e2e.wait_until(lambda: self.alive() and "[mqtt] connected" in self.log(), 10,
                          what="the monitor connected to the broker")
        self.auth = "Basic " + base64.b64encode(f"{OPERATOR}:{PASSWORD}".encode()).decode()

    def alive(self):
        if self.proc.poll() is not None:
            raise SystemExit(f"kitchen-monitor exited with {self.proc.returncode}:\n{kg_e2e.tail(self.log_path)}")
        return True

    def log(self):
        return self.log_path.read_text(errors="replace")

    def get(self, path):
        """(status, body) of a GET on the monitor's API."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", path, headers={"Authorization": self.auth})
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    def metric(self, line_start):
        text = self.get("/metrics")[1].decode()
        m = re.search(rf"^{re.escape(line_start)} (\d+)$", text, re.M)
        return int(m.group(1)) if m else None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(15)


def now_iso():
    t = datetime.datetime.now(datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def event(event_id, seq=None):
    """A camera alert's start in the gateway's format (docs/schemas/event.schema.json), numbered with
    `seq` of STREAM when given."""
    msg = {"message_id": f"{event_id}:start", "id": event_id, "site": SITE, "camera": "cooking",
           "check": "bin_lid", "label": "open", "severity": 2, "state": "start", "start_time": now_iso(),
           "end_time": None, "time": now_iso(), "score": 0.9, "top_score": 0.9, "boxes": [], "zone": None,
           "evidence": {"snapshot": None, "snapshot_end": None, "clip": None, "errors": []}}
    if seq is not None:
        msg.update(stream=STREAM, seq=seq)
    return msg


TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """utime + stime of a process so far."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def run_round(client, monitor, payloads, last_id):
    """(seconds from the first publish until `last_id` is in the API, the monitor's CPU seconds meanwhile)."""
    c0 = cpu_seconds(monitor.proc.pid)
    t0 = time.monotonic()
    infos = [client.publish(f"kitchen/{SITE}/events", p, qos=1) for p in payloads]
    for info in infos:
        info.wait_for_publish(60)
    # Polled, not waited on in the monitor's log: the API is what the room sees.
    while monitor.get(f"/api/alerts/{last_id}")[0] != 200:
        if time.monotonic() - t0 > 300:
            raise SystemExit(f"{last_id} not in the API after 300 s:\n{kg_e2e.tail(monitor.log_path, 3000)}")
        time.sleep(0.02)
    return time.monotonic() - t0, cpu_seconds(monitor.proc.pid) - c0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=2000, help="event messages per round (default 2000)")
    ap.add_argument("--rounds", type=int, default=5, help="rounds of each mode (default 5)")
    ap.add_argument("--dir", help="where the broker and the monitor's database go (default: a temporary "
                                  "folder; it must be on a real disk, not a tmpfs, for the fsyncs to count)")
    ap.add_argument("--monitor", default=str(ROOT / "build/gateway/kitchen-monitor"))
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="kg-bench-monitor-", dir=args.dir) as tmp:
        workdir = pathlib.Path(tmp)
        # As deploy/mosquitto/mosquitto.conf: Mosquitto's default queue (1000 messages a client)
        # drops QoS 1 messages a round publishes faster than the monitor stores them.
        broker = kg_e2e.Broker(workdir, extra_conf="max_queued_messages 100000\n")
        monitor = None
        client = None
        try:
            monitor = Monitor(args.monitor, workdir, broker)
            client = mqtt.Client(client_id=f"bench-gateway-{os.getpid()}", clean_session=True)
            client.max_inflight_messages_set(100)
            client.connect("127.0.0.1", broker.port)
            client.loop_start()

            times = {"unnumbered": [], "numbered": []}
            cpu = {"unnumbered": [], "numbered": []}
            seq = 0
            stored = 0
            # A first round of each mode is not counted: the database file and SQLite's cache grow.
            for r in range(args.rounds + 1):
                for mode in ("unnumbered", "numbered"):
                    payloads = []
                    for i in range(args.events):
                        event_id = f"19abbe0c{r:02x}{mode[0]}-{i:016x}"
                        if mode == "numbered":
                            seq += 1
                        payloads.append(json.dumps(event(event_id, seq if mode == "numbered" else None)))
                    seconds, cpu_s = run_round(client, monitor, payloads, event_id)
                    stored += args.events
                    label = "warm-up" if r == 0 else f"round {r}"
                    print(f"{label:8} {mode:10} {args.events} events {seconds:6.2f} s"
                          f" {args.events / seconds:6.0f} events/s, monitor CPU {cpu_s:5.2f} s", flush=True)
                    if r > 0:
                        times[mode].append(seconds)
                        cpu[mode].append(cpu_s)

            created = monitor.metric('kgm_messages_total{outcome="created"}')
            _, body = monitor.get("/api/sites")
            site = next(s for s in json.loads(body) if s["site"] == SITE)
            print(f"\nmonitor: {created} alerts created of {stored} published, site {SITE}: stream {site['stream']},"
                  f" {site['missing_messages']} missing, {site['lost_messages']} lost")
            median = {mode: statistics.median(t) for mode, t in times.items()}
            for mode, t in times.items():
                per_event_ms = statistics.median(cpu[mode]) / args.events * 1000
                print(f"{mode:10} median {median[mode]:.2f} s ({args.events / median[mode]:.0f} events/s)"
                      f" of {', '.join(f'{x:.2f}' for x in t)}; monitor CPU {per_event_ms:.2f} ms an event")
            print(f"numbered/unnumbered: {median['numbered'] / median['unnumbered']:.2f}")
            return 0 if created == stored and site["missing_messages"] == 0 else 1
        finally:
            if client is not None:
                client.loop_stop()
                client.disconnect()
            if monitor is not None:
                monitor.stop()
            broker.stop()


if __name__ == "__main__":
    sys.exit(main())
