#!/usr/bin/python3
"""Benchmark of the public side: what viewers cost the edge box.

One 1280x720 25 fps H.264 camera (about 2 Mbit/s, no B-frames, as most IP cameras send: FFmpeg's own
HLS muxer, the peer, cannot start on an RTSP stream with B-frames) is served by the real GStreamer RTSP server of
tests/support; the gateway ingests it with the camera_health check and serves it to parents. The
gateway's CPU (utime + stime from /proc) and resident memory are measured over the same window:

  1. with no viewer;
  2. with N concurrent HLS viewers on loopback (default 100), each behaving like a player: the
     playlist every second, the init segment once, every new segment once;
  3. with N HTTP-FLV viewers (one long-lived connection each);
  4. the same camera with a privacy mask (pixelate the ingest's pictures, re-encode at 640 px / 10 fps),
     no viewer; with --before GATEWAY, again with that binary (the code before a change), same run.

As a peer in the same run: FFmpeg itself remuxing the same RTSP stream to HLS (`ffmpeg -c copy -f
hls`), the cheapest a separate remuxer could be. Figures go to stdout; docs/performance.md quotes
them. Usage: bench/public_viewers.py [--viewers 100] [--seconds 20] [--before GATEWAY] (after scripts/build.sh).
"""

import argparse
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import threading
import time
import http.client

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
import kg_e2e  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(pid):
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mib(pid):
    return int(pathlib.Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE / 2**20


def measure(pid, seconds):
    """Mean CPU (% of one core) and mean / peak RSS (MiB) of a process over `seconds`."""
    c0, t0 = cpu_seconds(pid), time.monotonic()
    samples = []
    while time.monotonic() - t0 < seconds:
        samples.append(rss_mib(pid))
        time.sleep(0.5)
    cpu = (cpu_seconds(pid) - c0) / (time.monotonic() - t0) * 100
    return cpu, sum(samples) / len(samples), max(samples)


class HlsViewer(threading.Thread):
    def __init__(self, port, camera, sid, stop):
        super().__init__(daemon=True)
        self.port, self.camera, self.sid, self.stop = port, camera, sid, stop
        self.bytes = self.segments = self.errors = 0

    def run(self):
        seen = set()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        while not self.stop.is_set():
            try:
                conn.request("GET", f"/live/{self.camera}/index.m3u8?sid={self.sid}")
                r = conn.getresponse()
                text = r.read().decode()
                if r.status != 200:
                    self.errors += 1
                else:
                    uris = re.findall(r'URI="([^"]+)"', text) + [l for l in text.splitlines() if l and l[0] != "#"]
                    for uri in uris[-3:] if not seen else uris:
                        if uri in seen:
                            continue
                        seen.add(uri)
                        conn.request("GET", f"/live/{self.camera}/{uri}")
                        r = conn.getresponse()
                        body = r.read()
                        if r.status == 200:
                            self.bytes += len(body)
                            self.segments += 1
                        else:
                            self.errors += 1
            except (OSError, http.client.HTTPException):
                self.errors += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            self.stop.wait(1.0)
        conn.close()


class FlvViewer(threading.Thread):
    def __init__(self, port, camera, stop):
        super().__init__(daemon=True)
        self.port, self.camera, self.stop = port, camera, stop
        self.bytes = self.errors = self.reconnects = 0

    def run(self):
        # Like flv.js: when the stream ends (the camera reconnected), open it again.
        while not self.stop.is_set():
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                conn.request("GET", f"/live/{self.camera}.flv")
                r = conn.getresponse()
                if r.status != 200:
                    self.errors += 1
                    self.stop.wait(1.0)
                    continue
                while not self.stop.is_set():
                    chunk = r.read1(65536)
                    if not chunk:
                        self.reconnects += 1
                        break
                    self.bytes += len(chunk)
                conn.close()
            except (OSError, http.client.HTTPException):
                self.errors += 1
                self.stop.wait(1.0)


def run_gateway(workdir, broker, rtsp, privacy, name=None):
    cam = kg_e2e.camera("kitchen", rtsp.url("/cam"), public=True, checks=["camera_health"],
                        analysis={"fps": 2, "width": 640, "height": 360})
    if privacy:
        cam["privacy_masks"] = [[[0, 0], [0.4, 0], [0.4, 0.5], [0, 0.5]]]
    config = kg_e2e.base_config(broker, [cam], workdir)
    config["public"] = {"listen": "127.0.0.1:0", "hls_dir": str(workdir / "hls"), "segment": "2s",
                        "max_viewers_per_camera": 1000, "max_viewers_per_address": 1000, "max_connections": 2048}
    config["log"] = {"level": "info"}
    gw = kg_e2e.Gateway(workdir, config, name=name or ("privacy" if privacy else "gateway"))
    port = int(kg_e2e.wait_until(lambda: re.search(r"public side on \S+ \(port (\d+)\)", gw.output()), 10,
                                 what="the public side").group(1))
    kg_e2e.wait_until(lambda: kg_e2e_get(port, "/live/kitchen/index.m3u8").count(b".m4s") >= 2, 30,
                      what="the first segments")
    return gw, port


def kg_e2e_get(port, path):
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", path)
        body = conn.getresponse().read()
        conn.close()
        return body
    except OSError:
        return b""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--viewers", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--before", metavar="GATEWAY", help="another kitchen-gateway binary (the code before a change) "
                    "whose privacy mask is measured too, in the same run")
    args = ap.parse_args()
    work = pathlib.Path(tempfile.mkdtemp(prefix="kg-bench-viewers-"))
    clip = work / "cam720.mp4"
    print(f"making a 150 s 1280x720 25 fps H.264 clip at ~2 Mbit/s in {work}", flush=True)
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc2=size=1280x720:rate=25", "-t", "150", "-c:v", "libx264",
                    "-preset", "veryfast", "-bf", "0", "-b:v", "2M", "-maxrate", "2.5M", "-bufsize", "4M", "-g", "50",
                    "-pix_fmt", "yuv420p", str(clip)], check=True)
    broker = kg_e2e.Broker(work)
    rtsp = kg_e2e.RtspServer({"/cam": str(clip)}, work)
    rows = []
    try:
        gw, port = run_gateway(work, broker, rtsp, privacy=False)
        pid = gw.proc.pid
        time.sleep(3)
        base = measure(pid, args.seconds)
        rows.append(("gateway, 0 viewers", *base, "", ""))

        stop = threading.Event()
        viewers = [HlsViewer(port, "kitchen", f"v{i}", stop) for i in range(args.viewers)]
        for v in viewers:
            v.start()
        time.sleep(3)
        for v in viewers:
            v.bytes = v.segments = v.errors = 0
        hls = measure(pid, args.seconds)
        served = sum(v.bytes for v in viewers) * 8 / args.seconds / 1e6
        stop.set()
        for v in viewers:
            v.join(15)
        errors = sum(v.errors for v in viewers)
        rows.append((f"gateway, {args.viewers} HLS viewers", *hls, f"{served:.0f} Mbit/s", errors))

        stop = threading.Event()
        flv = [FlvViewer(port, "kitchen", stop) for _ in range(args.viewers)]
        for v in flv:
            v.start()
        time.sleep(3)
        for v in flv:
            v.bytes = 0
        flv_m = measure(pid, args.seconds)
        served = sum(v.bytes for v in flv) * 8 / args.seconds / 1e6
        stop.set()
        rows.append((f"gateway, {args.viewers} HTTP-FLV viewers", *flv_m, f"{served:.0f} Mbit/s",
                     sum(v.errors for v in flv)))
        gw.terminate()
        for v in flv:
            v.join(15)
        if any(v.reconnects for v in flv):
            print(f"(FLV viewers reopened the stream {sum(v.reconnects for v in flv)} times: the camera reconnected)")

        gw, port = run_gateway(work, broker, rtsp, privacy=True)
        time.sleep(3)
        priv = measure(gw.proc.pid, args.seconds)
        rows.append(("gateway with a privacy mask, 0 viewers", *priv, "", ""))
        gw.terminate()
        if args.before:
            ours, kg_e2e.GATEWAY_BIN = kg_e2e.GATEWAY_BIN, args.before
            try:
                gw, port = run_gateway(work, broker, rtsp, privacy=True, name="privacy-before")
            finally:
                kg_e2e.GATEWAY_BIN = ours
            time.sleep(3)
            before = measure(gw.proc.pid, args.seconds)
            gw.terminate()

        (work / "ffmpeg-hls").mkdir()
        peer = subprocess.Popen(["ffmpeg", "-nostdin", "-loglevel", "error", "-rtsp_transport", "tcp", "-i",
                                 rtsp.url("/cam"), "-c", "copy", "-f", "hls", "-hls_time", "2", "-hls_list_size", "6",
                                 "-hls_flags", "delete_segments", str(work / "ffmpeg-hls" / "index.m3u8")])
        time.sleep(3)
        ff = measure(peer.pid, args.seconds)
        rows.append(("peer: ffmpeg -c copy -f hls (remux only, no checks, no viewers)", *ff, "", ""))
        peer.terminate()
        peer.wait(10)
    finally:
        rtsp.kill()
        broker.kill()

    print(f"\n{'setup':<66} {'CPU % of a core':>15} {'RSS MiB mean':>12} {'peak':>6} {'served':>12} {'errors':>6}")
    for name, cpu, rss, peak, served, errors in rows:
        print(f"{name:<66} {cpu:>15.1f} {rss:>12.1f} {peak:>6.1f} {served:>12} {errors!s:>6}")
    base_cpu, base_rss = rows[0][1], rows[0][2]
    print(f"\nextra for {args.viewers} HLS viewers: {rows[1][1] - base_cpu:+.1f} % of a core, "
          f"{rows[1][2] - base_rss:+.1f} MiB")
    print(f"extra for {args.viewers} HTTP-FLV viewers: {rows[2][1] - base_cpu:+.1f} % of a core, "
          f"{rows[2][2] - base_rss:+.1f} MiB")
    print(f"privacy mask (pixelate + re-encode; the pictures are the ingest's): {rows[3][1] - base_cpu:+.1f} % of a "
          "core")
    if args.before:
        print(f"privacy mask with --before {args.before}: {before[0] - base_cpu:+.1f} % of a core "
              f"(gateway {before[0]:.1f} %, RSS {before[1]:.1f} MiB; this build's mask costs "
              f"{(rows[3][1] - base_cpu) / max(before[0] - base_cpu, 0.01):.2f}x that)")
    print(f"gateway (ingest + camera_health + HLS + FLV, 0 viewers) vs ffmpeg remux alone: "
          f"{base_cpu / max(rows[4][1], 0.01):.2f}x")


if __name__ == "__main__":
    main()
