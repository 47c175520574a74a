#!/usr/bin/python3
"""Soak benchmark: does one gateway leak over time while everything around it churns?

Canteen boxes run the gateway for months unattended. This runs one real gateway (the same peers as
the e2e tests: the GStreamer RTSP server of tests/support, Mosquitto, kg_e2e helpers) for --minutes
with 2 small cameras (640x360, 25 fps, camera_health at 2 analysed fps; cam0 also runs both hygiene
checks on the shipped models, cam1's public feed has a privacy mask, so it is re-encoded while watched)
and one MQTT fridge sensor, and meanwhile keeps churning what makes daemons of this kind leak:

  - cam0's stream ends every 40 s (the clip runs out): the gateway reconnects; each pass goes black
    for 10 s (a camera_health event: snapshot, clip, outbox);
  - cam1 freezes 10 s per pass (a `frozen` event), and its RTSP server is killed every
    --camera-drop-every seconds and comes back 12 s later (an `offline` event);
  - the fridge goes above its threshold for 20 s of every 80 (a sensor event);
  - SIGHUP every --reload-every seconds (the gateway rebuilds itself in the same process);
  - the broker is stopped for 10 s --broker-restarts times, evenly spread;
  - parents' viewers open and close HLS sessions and HTTP-FLV streams, and the page and its status;
  - the local API is read (health, readiness, metrics, cameras, sensors, events, their snapshots
    and clips).

Every --sample seconds it samples the gateway's RSS (with its anonymous part, r.anon: heap, malloc
arenas, stacks; and its file-backed part, r.file: library pages, which grow once as new code paths
run), open fds (/proc/PID/fd: sockets, pipes, files, a.ino = anon inodes: epoll, eventfd, timerfd),
threads (/proc/PID/task) and the outbox and evidence sizes on disk, and prints them as a table. The
verdict:

  - fds and threads at rest, before the churn (after --warmup-minutes of the same churn, which fills
    caches and pools once) and after it: the same state both times (both cameras streaming, broker
    up, no viewer, >= 30 s after the last reload), the median of 3 samples each;
  - the heap in use at rest, before and after, as glibc counts it (malloc_stats() called in the
    gateway through gdb; skipped without gdb): what a leak of memory grows;
  - RSS growth per hour, a least-squares fit over the second half of the churn, and RSS at rest
    before and after. Printed, not judged by default: over minutes it is dominated by glibc's
    per-thread arenas filling up to their high-water marks (freed memory kept for reuse), which is
    bounded, not a leak; the heap in use tells the two apart.

Exit status 1 when fds, threads or the heap in use at rest grew beyond the printed thresholds
(--fd-slack, --thread-slack, --heap-slack), or RSS beyond --max-rss-growth MiB/h when given; 0
otherwise.

Usage (after scripts/build.sh): bench/soak.py [--minutes 15] [--keep]
"""

import argparse
import collections
import http.client
import json
import os
import pathlib
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import paho.mqtt.client as mqtt

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
import kg_e2e  # noqa: E402

TOKEN = "soak-token-0123456789"


# --- what is sampled -------------------------------------------------------------------------------

def rss_mib(pid):
    """(total, anonymous, file-backed) resident MiB: anonymous is the heap, arenas and stacks; file-
    backed is mostly the shared libraries' pages, touched once as new code paths run."""
    status = pathlib.Path(f"/proc/{pid}/status").read_text()
    kib = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(Rss\w+):\s+(\d+) kB", status, re.M)}
    return (sum(kib.values()) / 1024, kib.get("RssAnon", 0) / 1024, kib.get("RssFile", 0) / 1024)


def fd_kinds(pid):
    """Open fds of the process by kind: socket, pipe, anon_inode:[eventfd]..., or the file's folder."""
    kinds = collections.Counter()
    d = pathlib.Path(f"/proc/{pid}/fd")
    for fd in os.listdir(d):
        try:
            target = os.readlink(d / fd)
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:"):
            kinds["socket"] += 1
        elif target.startswith("pipe:"):
            kinds["pipe"] += 1
        elif target.startswith("anon_inode:"):
            kinds[target] += 1
        else:
            kinds["file"] += 1
    return kinds


def threads(pid):
    return len(os.listdir(f"/proc/{pid}/task"))


def tree_size(path):
    """(MiB, files) under path; 0 when it does not exist yet."""
    size = files = 0
    for root, _, names in os.walk(path):
        for n in names:
            try:
                size += os.stat(os.path.join(root, n)).st_size
                files += 1
            except OSError:
                pass
    return size / 2**20, files


def outbox_mib(work):
    return sum(p.stat().st_size for p in work.glob("outbox.db*") if p.is_file()) / 2**20


class Sampler:
    def __init__(self, gw, work, t0):
        self.gw, self.work, self.t0 = gw, work, t0
        self.rows = []

    def sample(self, phase, note=""):
        pid = self.gw.proc.pid
        kinds = fd_kinds(pid)
        ev_mib, ev_files = tree_size(self.work / "evidence")
        rss, anon, file_backed = rss_mib(pid)
        row = {"t": time.monotonic() - self.t0, "phase": phase, "rss": rss, "rss_anon": anon, "rss_file": file_backed,
               "fds": sum(kinds.values()),
               "sockets": kinds["socket"], "pipes": kinds["pipe"], "files": kinds["file"],
               "anon": sum(v for k, v in kinds.items() if k.startswith("anon_inode")),
               "threads": threads(pid), "outbox": outbox_mib(self.work), "evidence": ev_mib,
               "evidence_files": ev_files, "note": note}
        self.rows.append(row)
        print(f"{row['t']:7.0f} {phase:<6} {row['rss']:8.1f} {anon:6.1f} {file_backed:6.1f} {row['fds']:5d} {row['sockets']:5d} {row['pipes']:5d} "
              f"{row['files']:5d} {row['anon']:5d} {row['threads']:7d} {row['outbox']:8.2f} {row['evidence']:8.1f} "
              f"{row['evidence_files']:6d}  {note}", flush=True)
        return row


HEADER = (f"{'t (s)':>7} {'phase':<6} {'RSS MiB':>8} {'r.anon':>6} {'r.file':>6} {'fds':>5} {'sock':>5} {'pipe':>5} {'file':>5} "
          f"{'a.ino':>5} "
          f"{'threads':>7} {'outbox':>8} {'evid MiB':>8} {'files':>6}  what happened since")


# --- the churn -------------------------------------------------------------------------------------

def get(port, path, token=None, read=True):
    """(status, body) of one GET on a fresh connection; (None, b'') when nothing answers."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
        r = conn.getresponse()
        body = r.read() if read else b""
        conn.close()
        return r.status, body
    except (OSError, http.client.HTTPException):
        return None, b""


class Counters:
    def __init__(self):
        self.lock = threading.Lock()
        self.c = collections.Counter()

    def add(self, key, n=1):
        with self.lock:
            self.c[key] += n


def viewer_loop(port, stop, counters, seed):
    """A parent after another: an HLS session or an FLV stream for 5-20 s, or just the page."""
    rnd = random.Random(seed)
    n = 0
    while not stop.is_set():
        n += 1
        kind = rnd.choice(["hls", "hls", "flv", "page"])
        camera = rnd.choice(["cam0", "cam1"])
        until = time.monotonic() + rnd.uniform(5, 20)
        try:
            if kind == "page":
                for path in ["/", "/public/status"]:
                    status, _ = get(port, path)
                    counters.add(f"page {status}")
            elif kind == "hls":
                sid = f"soak{seed}-{n}"
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                seen = set()
                while time.monotonic() < until and not stop.is_set():
                    conn.request("GET", f"/live/{camera}/index.m3u8?sid={sid}")
                    r = conn.getresponse()
                    text = r.read().decode(errors="replace")
                    counters.add(f"hls playlist {r.status}")
                    if r.status == 200:
                        uris = re.findall(r'URI="([^"]+)"', text) + [l for l in text.splitlines() if l and l[0] != "#"]
                        for uri in [u for u in uris if u not in seen][-3:]:
                            seen.add(uri)
                            conn.request("GET", f"/live/{camera}/{uri}")
                            r = conn.getresponse()
                            r.read()
                            counters.add(f"hls segment {r.status}")
                    stop.wait(1.0)
                conn.close()
            else:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("GET", f"/live/{camera}.flv")
                r = conn.getresponse()
                counters.add(f"flv {r.status}")
                if r.status == 200:
                    while time.monotonic() < until and not stop.is_set():
                        if not r.read1(65536):
                            break
                conn.close()  # the parent closes the tab mid-stream
        except (OSError, http.client.HTTPException) as e:
            counters.add(f"{kind} error {type(e).__name__}")
        stop.wait(rnd.uniform(0.5, 3))


def api_loop(port, stop, counters):
    """The installer's tools and the monitoring room reading the local API."""
    i = 0
    while not stop.is_set():
        i += 1
        for path in ["/healthz", "/readyz", "/metrics", "/api/cameras", "/api/sensors"]:
            status, _ = get(port, path, TOKEN)
            counters.add(f"api {status}")
        status, body = get(port, "/api/events?limit=20", TOKEN)
        counters.add(f"api {status}")
        if status == 200 and i % 3 == 0:
            try:
                events = json.loads(body)
            except ValueError:
                events = []
            for e in events[:2]:
                for what in ["snapshot.jpg", "clip.mp4"]:
                    status, _ = get(port, f"/api/events/{e.get('id')}/{what}", TOKEN)
                    counters.add(f"evidence {status}")
        stop.wait(2.0)


def fridge_loop(broker, stop, counters, cycling):
    """A Zigbee fridge probe reporting every second at 4 degC; while `cycling` is set, 60 s at 4 degC
    then 20 s at 9.5 (an event)."""
    client = mqtt.Client(client_id=f"soak-fridge-{os.getpid()}")
    client.reconnect_delay_set(min_delay=0.5, max_delay=2)
    client.connect_async("127.0.0.1", broker.port)
    client.loop_start()
    t0 = time.monotonic()
    while not stop.is_set():
        value = 9.5 if cycling.is_set() and (time.monotonic() - t0) % 80 >= 60 else 4.0
        info = client.publish("zigbee2mqtt/fridge", json.dumps({"temperature": value}))
        counters.add("fridge sent" if info.rc == mqtt.MQTT_ERR_SUCCESS else "fridge not sent")
        stop.wait(1.0)
    client.disconnect()
    client.loop_stop()


# --- the run ---------------------------------------------------------------------------------------

def config(broker, work, urls, api_port, public_port):
    cams = [kg_e2e.camera(f"cam{i}", url, public=True, checks=["camera_health"],
                          health={"offline_after": "4s", "confirm": "2s", "clear": "2s", "frozen_after": "4s"})
            for i, url in enumerate(urls)]
    for cam in cams:
        cam["analysis"] = {"fps": 2, "width": 320, "height": 180}
    # cam0 also runs both hygiene checks on the shipped models (the networks, their shared pass, the
    # colour conversion into them); cam1's public feed has a privacy mask, so it is decoded, masked
    # and re-encoded for as long as parents watch it.
    cams[0]["checks"] = ["camera_health", "mask", "head_covering"]
    cams[0]["analysis"] = {"fps": 2, "width": 640, "height": 360}
    cams[1]["privacy_masks"] = [[[0.25, 0.25], [0.75, 0.25], [0.75, 0.75], [0.25, 0.75]]]
    cfg = kg_e2e.base_config(broker, cams, work)
    cfg["detectors"] = {"mask": "auto", "head_covering": "auto"}
    cfg["evidence"].update({"max_size": "64MiB", "clip_pre": "2s", "clip_post": "2s"})
    # Fixed ports: a reload listens again on the same ones, so the churn never loses them.
    cfg["api"] = {"listen": f"127.0.0.1:{api_port}", "token": TOKEN}
    cfg["public"] = {"listen": f"127.0.0.1:{public_port}", "hls_dir": str(work / "hls"), "segment": "2s",
                     "privacy": {"width": 320, "fps": 5}}
    cfg["sensors"] = [{"id": "fridge", "location": "fridge", "interval": "1s", "stale_after": 3,
                       "source": {"mqtt": {"topic": "zigbee2mqtt/fridge", "value": "temperature"}},
                       "thresholds": [{"label": "too_warm", "above": 8, "for": "2s", "clear_for": "2s"}]}]
    cfg["log"] = {"level": "info"}
    return cfg


def heap_in_use(gw):
    """glibc's own count of heap bytes in use (malloc_stats(), called in the gateway through gdb; it
    prints to the gateway's stderr, its log), in MiB; None without gdb or ptrace rights.

    RSS alone cannot tell a leak from glibc keeping freed memory in its per-thread arenas (up to 8
    per core, each holding its high-water mark); this can."""
    if not shutil.which("gdb"):
        return None
    before = len(gw.output())
    try:
        subprocess.run(["gdb", "-p", str(gw.proc.pid), "-batch", "-ex", "call (void) malloc_stats()"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60, check=False)
    except subprocess.TimeoutExpired:
        return None
    try:
        found = kg_e2e.wait_until(lambda: re.search(r"Total \(incl\. mmap\):\s+system bytes\s+=\s+(\d+)\s+"
                                                    r"in use bytes\s+=\s+(\d+)", gw.output()[before:]), 5)
    except AssertionError:
        return None
    return int(found.group(2)) / 2**20, int(found.group(1)) / 2**20


def at_rest(sampler, phase, seconds=30):
    """Median fds / threads / RSS over 3 samples, `seconds` after the last disturbance, and the heap
    in use (glibc's count) after them."""
    time.sleep(seconds)
    rows = []
    for i in range(3):
        rows.append(sampler.sample(phase, "at rest" if i == 0 else ""))
        time.sleep(3)
    heap = heap_in_use(sampler.gw)
    return {"heap": heap[0] if heap else None, "arenas": heap[1] if heap else None} | {
        k: statistics.median(r[k] for r in rows) for k in ["fds", "threads", "rss", "rss_anon", "rss_file",
                                                              "sockets", "pipes", "files", "anon"]}


def slope_per_hour(rows, key):
    """Least-squares slope of rows[key] against time, per hour (0 with fewer than 3 rows)."""
    if len(rows) < 3:
        return 0.0
    xs = [r["t"] for r in rows]
    ys = [r[key] for r in rows]
    mx, my = statistics.mean(xs), statistics.mean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return 3600 * sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0


class Peers:
    """What the churn acts on: the gateway, the broker, cam1's RTSP server, the ports, the counters."""

    def __init__(self, gw, broker, rtsp1, api_port, public_port, counters, cycling, sampler):
        self.gw, self.broker, self.rtsp1 = gw, broker, rtsp1
        self.api_port, self.public_port = api_port, public_port
        self.counters, self.cycling, self.sampler = counters, cycling, sampler


def churn(p, args, seconds, broker_restarts, phase):
    """Everything at once for `seconds`; ends with cam1's server and the broker up and no viewer.
    Returns (reloads, camera drops, broker restarts)."""
    stop = threading.Event()
    p.cycling.set()
    workers = [threading.Thread(target=api_loop, args=(p.api_port, stop, p.counters), daemon=True)]
    workers += [threading.Thread(target=viewer_loop, args=(p.public_port, stop, p.counters, f"{phase}{i}"),
                                 daemon=True) for i in range(args.viewers)]
    for w in workers:
        w.start()
    churn_start = time.monotonic()
    end = churn_start + seconds
    next_sample = churn_start
    next_reload = churn_start + args.reload_every
    next_drop = churn_start + args.camera_drop_every / 2
    cam1_back = None
    gap = seconds / (broker_restarts + 1)
    broker_stops = [churn_start + gap * (i + 1) - 5 for i in range(broker_restarts)]
    broker_back = None
    happened = []
    reloads = drops = restarts = 0
    try:
        while True:
            now = time.monotonic()
            if now >= end and cam1_back is None and broker_back is None:
                break
            if now >= next_reload and now < end:
                p.gw.proc.send_signal(signal.SIGHUP)
                reloads += 1
                happened.append("SIGHUP")
                next_reload += args.reload_every
            if cam1_back is None and now >= next_drop and now < end:
                p.rtsp1.kill()
                cam1_back = now + 12
                drops += 1
                happened.append("cam1 down")
                next_drop += args.camera_drop_every
            if cam1_back is not None and now >= cam1_back:
                p.rtsp1.start()
                cam1_back = None
                happened.append("cam1 up")
            if broker_back is None and broker_stops and now >= broker_stops[0]:
                broker_stops.pop(0)
                p.broker.stop()
                broker_back = now + 10
                restarts += 1
                happened.append("broker down")
            if broker_back is not None and now >= broker_back:
                p.broker.start()
                broker_back = None
                happened.append("broker up")
            if not p.gw.running():
                raise AssertionError(f"the gateway died:\n{kg_e2e.tail(p.gw.log_path, 4000)}")
            if now >= next_sample:
                p.sampler.sample(phase, ", ".join(happened))
                happened = []
                next_sample += args.sample
            time.sleep(0.2)
    finally:
        stop.set()
        p.cycling.clear()
        for w in workers:
            w.join(30)
    return reloads, drops, restarts


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=15, help="how long the churn runs (default 15)")
    ap.add_argument("--warmup-minutes", type=float, default=3,
                    help="churn before the 'before' measurement (default 3)")
    ap.add_argument("--sample", type=float, default=10, help="seconds between samples")
    ap.add_argument("--reload-every", type=float, default=60, help="seconds between SIGHUPs")
    ap.add_argument("--broker-restarts", type=int, default=3)
    ap.add_argument("--camera-drop-every", type=float, default=150, help="seconds between kills of cam1's server")
    ap.add_argument("--viewers", type=int, default=3, help="concurrent parents, each opening and closing streams")
    ap.add_argument("--fd-slack", type=int, default=4, help="fds at rest may differ by this much (default 4)")
    ap.add_argument("--thread-slack", type=int, default=1, help="threads at rest may differ by this much")
    ap.add_argument("--heap-slack", type=float, default=4.0,
                    help="MiB the heap in use at rest may grow by (default 4)")
    ap.add_argument("--max-rss-growth", type=float, default=None,
                    help="MiB per hour of RSS growth over the second half that fails the run (default: not judged)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (logs, evidence)")
    args = ap.parse_args()

    work = pathlib.Path(tempfile.mkdtemp(prefix="kg-bench-soak-"))
    print(f"# soak: {args.warmup_minutes:g} min of warm-up then {args.minutes:g} min of churn, 2 cameras 640x360 25 fps, 1 MQTT sensor, SIGHUP every "
          f"{args.reload_every:g} s, {args.broker_restarts} broker restarts, cam1 dropped every "
          f"{args.camera_drop_every:g} s, {args.viewers} viewers; {os.cpu_count()} cores; work in {work}", flush=True)
    clips = work / "clips"
    clips.mkdir()
    clip0 = kg_e2e.make_clip([("normal", 20), ("black", 10), ("normal", 10)], clips / "ends.mp4")
    clip1 = kg_e2e.make_clip([("normal", 30), ("frozen", 10), ("normal", 80)], clips / "frozen.mp4")
    broker = kg_e2e.Broker(work)
    rtsp0 = kg_e2e.RtspServer({"/cam0": clip0}, work)
    rtsp1 = kg_e2e.RtspServer({"/cam1": clip1}, work)
    api_port, public_port = kg_e2e.free_port(), kg_e2e.free_port()
    collector = kg_e2e.Collector(broker)
    counters = Counters()
    fridge_stop, cycling = threading.Event(), threading.Event()
    gw = None
    status = 0
    try:
        gw = kg_e2e.Gateway(work, config(broker, work, [rtsp0.url("/cam0"), rtsp1.url("/cam1")], api_port,
                                         public_port), name="gateway",
                         env={"KG_MODELS_DIR": str(ROOT / "models")})  # this checkout's models
        kg_e2e.wait_until(lambda: gw.output().count("connected to rtsp") >= 2, 30, what="both cameras")
        kg_e2e.wait_port(public_port, what="the public side")
        t0 = time.monotonic()
        sampler = Sampler(gw, work, t0)
        print(HEADER, flush=True)
        # The fridge reports all along: its readings are part of the state at rest.
        fridge = threading.Thread(target=fridge_loop, args=(broker, fridge_stop, counters, cycling), daemon=True)
        fridge.start()
        first = at_rest(sampler, "start")

        peers = Peers(gw, broker, rtsp1, api_port, public_port, counters, cycling, sampler)
        # Warm-up: the first clips, reloads, reconnects and viewers fill caches and pools once
        # (SQLite's page cache, the HLS segments in memory, FFmpeg's frame pools); "before" is
        # measured after it, so that what is compared is what keeps growing.
        churn(peers, args, args.warmup_minutes * 60, 1, "warmup")
        before = at_rest(sampler, "rest", seconds=max(35, args.reload_every / 2))
        reloads, drops, restarts = churn(peers, args, args.minutes * 60, args.broker_restarts, "churn")
        # The same state as before: both cameras up, broker up, nobody watching. The last reload is
        # at least 30 s back, viewers' connections closed, idle HTTP sessions timed out.
        after = at_rest(sampler, "rest", seconds=max(35, args.reload_every / 2))
        rows = [r for r in sampler.rows if r["phase"] == "churn"]
        second_half = [r for r in rows if r["t"] >= rows[0]["t"] + (rows[-1]["t"] - rows[0]["t"]) / 2]
        rss_slope = slope_per_hour(second_half, "rss")
        anon_slope = slope_per_hour(second_half, "rss_anon")
        fd_slope = slope_per_hour(second_half, "fds")
        thread_slope = slope_per_hour(second_half, "threads")

        events = collections.Counter()
        for e in collector.events():
            events[(e.get("camera") or e.get("sensor"), e.get("label"), e.get("state"))] += 1
        print()
        print(f"churn: {args.minutes:g} min, {reloads} SIGHUP reloads, {drops} drops of cam1's server, {restarts} broker "
              f"restarts, cam0's stream ended ~{int(args.minutes * 60 / 40)} times")
        print("events on the broker: " + ", ".join(f"{k[0]} {k[1]} {k[2]} x{v}" for k, v in sorted(events.items(),
                                                                                              key=str)))
        print("requests: " + ", ".join(f"{k} x{v}" for k, v in sorted(counters.c.items())))
        levels = collections.Counter(m.group(1) for m in re.finditer(r"^\S+ (\w+) +\[", gw.output(), re.M))
        print(f"gateway log: {sum(levels.values())} lines, " + ", ".join(f"{k} x{v}" for k, v in sorted(levels.items())))
        print()
        print(f"{'':<28} {'start':>8} {'before':>8} {'after':>8} {'change':>8}   (start: before the warm-up)")
        for key in ["fds", "sockets", "pipes", "files", "anon", "threads", "rss", "rss_anon", "rss_file"]:
            print(f"{key + ' at rest':<28} {first[key]:>8.1f} {before[key]:>8.1f} {after[key]:>8.1f} {after[key] - before[key]:>+8.1f}")
        if before["heap"] is not None and after["heap"] is not None:
            for key, what in [("heap", "heap in use (glibc)"), ("arenas", "heap held from the system")]:
                print(f"{what:<28} {first[key] or 0:>8.1f} {before[key]:>8.1f} {after[key]:>8.1f} {after[key] - before[key]:>+8.1f}")
        else:
            print("heap in use: not measured (needs gdb and the right to ptrace the gateway)")
        print(f"{'RSS during churn, 2nd half':<28} {min(r['rss'] for r in second_half):>8.1f} "
              f"{max(r['rss'] for r in second_half):>8.1f}  (min, max MiB)")
        print(f"trend over the 2nd half of the churn: RSS {rss_slope:+.1f} MiB/h (anonymous {anon_slope:+.1f}), fds {fd_slope:+.1f}/h, "
              f"threads {thread_slope:+.1f}/h")
        print()
        verdicts = [
            ("fds at rest", after["fds"] - before["fds"], args.fd_slack, "fds"),
            ("threads at rest", after["threads"] - before["threads"], args.thread_slack, "threads"),
        ]
        if before["heap"] is not None and after["heap"] is not None:
            verdicts.append(("heap in use at rest", after["heap"] - before["heap"], args.heap_slack, "MiB"))
        if args.max_rss_growth is not None:
            verdicts.append(("RSS growth, 2nd half", rss_slope, args.max_rss_growth, "MiB/h"))
        else:
            print(f"INFO: RSS growth, 2nd half: {rss_slope:+.1f} MiB/h, at rest {after['rss'] - before['rss']:+.1f} MiB "
                  f"(not judged: in 15 min glibc's arenas filling up to their high-water marks dominate it; "
                  f"the heap in use is judged instead)")
        for name, value, limit, unit in verdicts:
            ok = value <= limit
            print(f"{'PASS' if ok else 'FAIL'}: {name}: {value:+.1f} {unit} (threshold {limit:+g})")
            if not ok:
                status = 1
        if gw.terminate() != 0:
            print("FAIL: the gateway did not stop cleanly")
            status = 1
    finally:
        fridge_stop.set()
        if gw is not None and gw.running():
            gw.kill()
        collector.close()
        rtsp0.kill()
        rtsp1.kill()
        broker.kill()
        if args.keep or status:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
