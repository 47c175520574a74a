#!/usr/bin/python3
"""Benchmark: how many cameras one box carries.

N generated H.264 cameras (1280x720 or 1920x1080, 25 fps, about 2 or 4 Mbit/s, a textured moving
picture, GOP 2 s or 0.48 s) are served by the real GStreamer RTSP server of tests/support on
loopback. The gateway ingests them with camera_health and the hygiene checks (mask, head_covering;
detectors as configured, "auto" by default) at 2 analysed fps, 640x360. Over the same window:

  - the gateway's CPU (% of one core) and resident memory, total and per camera;
  - analysed fps per camera (its /metrics), sampled frames dropped before analysis;
  - alert latency: every clip goes black 25 s in; the time from the decoding of the first analysed
    black frame (the event's start_time) to the camera_health `black` start message arriving on the
    broker, minus the configured confirmation time (1 s), which is policy, not processing (at 2 fps
    the first black frame is analysed at most 0.5 s after it arrives);
  - peers, in the same run on the same streams: `ffmpeg -f null` decoding them (the decode floor)
    and kg-bench-naive, a cv::VideoCapture loop per camera running the same checks at the same rate
    (what a user would write instead). The gateway's CPU is reported as a ratio to each.

A camera count is "sustained" when every camera is analysed at >= 1.9 fps with under 5 % of its
sampled frames dropped. Usage (after scripts/build.sh):

  bench/cameras.py --cameras 1,2,4,8 [--resolution 720|1080] [--keyframes-only] [--seconds 25]
"""

import argparse
import http.client
import json
import os
import pathlib
import re
import statistics
import subprocess
import sys
import tempfile
import time

import paho.mqtt.client as mqtt

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
import kg_e2e  # noqa: E402

NAIVE_BIN = str(pathlib.Path(kg_e2e.GATEWAY_BIN).parents[1] / "bench" / "kg-bench-naive")
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
BLACK_AT = 25.0
CONFIRM = 1.0


def cpu_seconds(pid):
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mib(pid):
    return int(pathlib.Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE / 2**20


def measure(pid, seconds, during=None):
    c0, t0 = cpu_seconds(pid), time.monotonic()
    rss = []
    while time.monotonic() - t0 < seconds:
        rss.append(rss_mib(pid))
        if during:
            during()
        time.sleep(0.5)
    return (cpu_seconds(pid) - c0) / (time.monotonic() - t0) * 100, statistics.mean(rss)


def make_clip(path, resolution, gop):
    size, rate = ("1280x720", "2M") if resolution == 720 else ("1920x1080", "4M")
    def normal(seconds):
        return f"testsrc2=size={size}:rate=25:duration={seconds},noise=alls=10:allf=t"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y",
                    "-f", "lavfi", "-i", normal(BLACK_AT),
                    "-f", "lavfi", "-i", f"color=black:size={size}:rate=25:duration=10",
                    "-f", "lavfi", "-i", normal(25),
                    "-filter_complex", "[0:v][1:v][2:v]concat=n=3:v=1:a=0,format=yuv420p[v]", "-map", "[v]",
                    "-c:v", "libx264", "-preset", "veryfast", "-b:v", rate, "-maxrate", rate, "-bufsize", "4M",
                    "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0", str(path)], check=True)


def metrics(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    out = {}
    for name in ["kg_camera_fps_analysed", "kg_camera_fps_in", "kg_camera_frames_dropped_total"]:
        out[name] = {m.group(1): float(m.group(2)) for m in re.finditer(name + r'\{camera="([^"]+)"\} (\S+)', text)}
    return out


def run_gateway(work, n, urls, args, broker):
    cams = []
    for i, url in enumerate(urls):
        cam = kg_e2e.camera(f"cam{i}", url, checks=args.checks.split(","),
                            analysis={"fps": 2, "width": 640, "height": 360, "keyframes_only": args.keyframes_only},
                            health={"offline_after": "10s", "confirm": f"{CONFIRM:g}s", "clear": "2s",
                                    "frozen_after": "8s"})
        cams.append(cam)
    config = kg_e2e.base_config(broker, cams, work, detectors={"mask": args.detectors, "head_covering": args.detectors})
    config["evidence"]["clip_pre"] = "1s"
    gw = kg_e2e.Gateway(work, config, name=f"gateway-{n}")
    return gw


def run_one(work, n, args, clip):
    broker = kg_e2e.Broker(work)
    server = kg_e2e.RtspServer({f"/cam{i}": str(clip) for i in range(n)}, work)
    urls = [server.url(f"/cam{i}") for i in range(n)]
    arrivals = []  # (arrival time, payload) of every event message
    client = mqtt.Client(client_id=f"bench-{n}")
    client.on_message = lambda c, u, m: arrivals.append((time.time(), m.payload))
    client.connect("127.0.0.1", broker.port)
    client.subscribe("kitchen/+/events/#", qos=1)
    client.loop_start()
    row = {"cameras": n}
    try:
        gw = run_gateway(work, n, urls, args, broker)
        api = gw.api_port()
        kg_e2e.wait_until(lambda: gw.output().count("connected to rtsp") >= n, 30, what="every camera")
        time.sleep(4)
        m0 = metrics(api)
        server_c0 = cpu_seconds(server.proc.pid)
        cpu, rss = measure(gw.proc.pid, args.seconds)
        row["rtsp_server_cpu"] = (cpu_seconds(server.proc.pid) - server_c0) / args.seconds * 100
        m1 = metrics(api)
        fps = list(m1["kg_camera_fps_analysed"].values())
        dropped = sum(m1["kg_camera_frames_dropped_total"].values()) - sum(m0["kg_camera_frames_dropped_total"].values())
        analysed = sum(fps) * args.seconds
        row.update(gateway_cpu=cpu, gateway_rss=rss, rss_per_camera=rss / n, fps_min=min(fps), fps_mean=statistics.mean(fps),
                   dropped_pct=100 * dropped / max(1, analysed + dropped))
        # Alert latency: wait for each camera's black event (25 s into its session).
        deadline = time.time() + 40
        def black_starts():
            out = {}
            for when, payload in list(arrivals):
                try:
                    e = json.loads(payload)
                except ValueError:
                    continue
                if e.get("label") == "black" and e.get("state") == "start":
                    out.setdefault(e["camera"], (when, e))
            return out
        while time.time() < deadline and len(black_starts()) < n:
            time.sleep(0.5)
        latencies = []
        for when, e in black_starts().values():
            # start_time is the decode time of the first analysed black frame; the confirmation
            # time after it is policy, not processing.
            latencies.append(when - kg_e2e.parse_time(e["start_time"]) - CONFIRM)
        row["latency_median"] = statistics.median(latencies) if latencies else None
        row["latency_max"] = max(latencies) if latencies else None
        gw.terminate()

        if args.peers:
            # One ffmpeg per camera, as one decoder per stream: a single ffmpeg with N inputs reads
            # them on one thread and falls behind real time beyond ~8 streams.
            ffs = [subprocess.Popen(["ffmpeg", "-nostdin", "-loglevel", "error", "-rtsp_transport", "tcp", "-i", url,
                                     "-map", "0:v", "-f", "null", "-"]) for url in urls]
            time.sleep(4)
            c0 = sum(cpu_seconds(f.pid) for f in ffs)
            t0 = time.monotonic()
            time.sleep(args.seconds)
            row["ffmpeg_cpu"] = (sum(cpu_seconds(f.pid) for f in ffs) - c0) / (time.monotonic() - t0) * 100
            for f in ffs:
                f.terminate()
                f.wait(10)
            naive = subprocess.Popen([NAIVE_BIN, "--seconds", str(args.seconds + 8), "--checks", args.checks,
                                      "--mask-detector", "auto:mask" if args.detectors == "auto" else args.detectors,
                                      "--head-detector", "auto:head" if args.detectors == "auto" else args.detectors,
                                      *urls], stdout=subprocess.PIPE, text=True)
            time.sleep(4)
            row["naive_cpu"], row["naive_rss"] = measure(naive.pid, args.seconds)
            out, _ = naive.communicate(timeout=60)
            counts = [int(m.group(1)) for m in re.finditer(r"analysed (\d+)", out)]
            row["naive_fps"] = statistics.mean(counts) / (args.seconds + 8) if counts else 0
    finally:
        client.loop_stop()
        server.kill()
        broker.kill()
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cameras", default="1,2,4")
    ap.add_argument("--resolution", type=int, choices=[720, 1080], default=720)
    ap.add_argument("--keyframes-only", action="store_true")
    ap.add_argument("--checks", default="camera_health,mask,head_covering")
    ap.add_argument("--detectors", default="auto", help="auto, classic:..., or a manifest for both checks")
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--no-peers", dest="peers", action="store_false")
    args = ap.parse_args()
    work = pathlib.Path(tempfile.mkdtemp(prefix="kg-bench-cameras-"))
    gop = 12 if args.keyframes_only else 50
    clip = work / f"cam{args.resolution}-gop{gop}.mp4"
    print(f"# {args.resolution}p 25 fps, GOP {gop}, checks {args.checks}, detectors {args.detectors}, "
          f"keyframes_only {args.keyframes_only}; {os.cpu_count()} cores; work in {work}", flush=True)
    make_clip(clip, args.resolution, gop)
    rows = []
    for n in [int(x) for x in args.cameras.split(",")]:
        d = work / f"n{n}"
        d.mkdir()
        row = run_one(d, n, args, clip)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print()
    print("| cameras | RTSP server CPU % (the cameras' share, on this box only in the benchmark) | gateway CPU % | RSS MiB (per camera) | analysed fps min / mean | dropped | alert latency median / max s "
          "| ffmpeg -f null CPU % | gateway / ffmpeg | naive CPU % (fps) | gateway / naive | sustained |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        sustained = r["fps_min"] >= 1.9 and r["dropped_pct"] < 5
        lat = f"{r['latency_median']:.2f} / {r['latency_max']:.2f}" if r.get("latency_median") is not None else "-"
        cells = [str(r["cameras"]), f"{r['rtsp_server_cpu']:.0f}", f"{r['gateway_cpu']:.0f}", f"{r['gateway_rss']:.0f} ({r['rss_per_camera']:.0f})",
                 f"{r['fps_min']:.2f} / {r['fps_mean']:.2f}", f"{r['dropped_pct']:.1f} %", lat]
        if r.get("ffmpeg_cpu"):
            cells += [f"{r['ffmpeg_cpu']:.0f}", f"{r['gateway_cpu'] / r['ffmpeg_cpu']:.2f}x",
                      f"{r['naive_cpu']:.0f} ({r['naive_fps']:.2f})", f"{r['gateway_cpu'] / r['naive_cpu']:.2f}x"]
        else:
            cells += ["-"] * 4
        cells.append("yes" if sustained else "no")
        print("| " + " | ".join(cells) + " |")

if __name__ == "__main__":
    main()
