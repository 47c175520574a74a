#!/usr/bin/python3
"""Benchmark of what a configuration reload does to a parent watching a public camera.

One 1280x720 25 fps H.264 camera (2 s key frames) is served by the real GStreamer RTSP server of
tests/support; the gateway ingests it with the camera_health check and serves it to parents on a
fixed port. A player asks for the playlist every 100 ms and fetches each new segment, as the
parents' page does; the gateway is reloaded (SIGHUP) --reloads times, --every seconds apart, with a
file that changes only a check's threshold (what an installer edits most). For each reload:

  - failed: the player's requests that did not get 200 (refused while the port was closed, 503
    while the stream started again, 404 for a segment that went with the old stream);
  - wait: the longest time the player went without a new segment, from 3 s before the reload to
    --every seconds after (a segment is 2 s: about 2 s is no interruption);
  - over: whether the stream started over (a new init segment: the page's player starts again).

With --before GATEWAY the same is run with that binary (the code before a change) in the same run,
as the peer. Figures go to stdout. Usage: bench/reload_viewers.py [--reloads 5] [--every 10]
[--before GATEWAY] (after scripts/build.sh).
"""

import argparse
import http.client
import pathlib
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
import kg_e2e  # noqa: E402


class Player(threading.Thread):
    """Asks for the playlist every 100 ms and for every segment it names that it has not fetched yet;
    notes when each new segment was first fetched, every request that failed, and each init segment."""

    def __init__(self, port, stop):
        super().__init__(daemon=True)
        self.port, self.stop = port, stop
        self.failures = []   # (time, what)
        self.segments = []   # time a new segment was fetched
        self.inits = []      # (time, init URI) at each change
        self.fetched = set()

    def get(self, path):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            conn.request("GET", path)
            r = conn.getresponse()
            body = r.read()
            conn.close()
            if r.status != 200:
                self.failures.append((time.monotonic(), str(r.status)))
                return None
            return body
        except OSError as e:
            self.failures.append((time.monotonic(), type(e).__name__))
            return None

    def run(self):
        while not self.stop.is_set():
            body = self.get("/live/kitchen/index.m3u8")
            if body is not None:
                text = body.decode()
                init = re.search(r'#EXT-X-MAP:URI="([^"]+)"', text)
                if init and (not self.inits or self.inits[-1][1] != init.group(1)):
                    self.inits.append((time.monotonic(), init.group(1)))
                for name in re.findall(r"^(\S+\.m4s)$", text, re.M):
                    if name not in self.fetched and self.get(f"/live/kitchen/{name}") is not None:
                        self.fetched.add(name)
                        self.segments.append(time.monotonic())
            time.sleep(0.1)


def run(label, binary, work, broker, rtsp, args):
    """The figures of each reload of one gateway binary."""
    port = kg_e2e.free_port()
    cam = kg_e2e.camera("kitchen", rtsp.url("/cam"), public=True, checks=["camera_health"],
                        analysis={"fps": 2, "width": 640, "height": 360})
    config = kg_e2e.base_config(broker, [cam], work)
    config["public"] = {"listen": f"127.0.0.1:{port}", "hls_dir": str(work / "hls"), "segment": "2s"}
    config["log"] = {"level": "info"}
    ours, kg_e2e.GATEWAY_BIN = kg_e2e.GATEWAY_BIN, binary
    try:
        gw = kg_e2e.Gateway(work, config, name=label.replace(" ", "-"))
    finally:
        kg_e2e.GATEWAY_BIN = ours
    rows = []
    stop = threading.Event()
    player = Player(port, stop)
    try:
        kg_e2e.wait_until(lambda: re.search(r"public side on", gw.output()), 10, what="the public side")
        player.start()
        kg_e2e.wait_until(lambda: len(player.segments) >= 3, 30, what="the first segments")
        threshold = 25
        for _ in range(args.reloads):
            time.sleep(args.every / 2)
            threshold += 1  # a check's threshold: nothing of how the camera is fetched or shown
            cam["health"] = {"black_luma": threshold}
            gw.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
            at = time.monotonic()
            gw.proc.send_signal(signal.SIGHUP)
            time.sleep(args.every / 2)
            end = time.monotonic()
            window = [t for t in player.segments if at - 3 <= t <= end]
            marks = [at - 3, *window, end]
            wait = max(b - a for a, b in zip(marks, marks[1:]))
            failed = [what for t, what in player.failures if at <= t <= end]
            over = any(at <= t <= end for t, _ in player.inits[1:])
            rows.append((wait, failed, over))
        assert gw.running(), gw.output()[-2000:]
    finally:
        stop.set()
        player.join(10)
        gw.terminate()
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reloads", type=int, default=5)
    ap.add_argument("--every", type=float, default=10, help="seconds between reloads")
    ap.add_argument("--before", metavar="GATEWAY", help="another kitchen-gateway binary (the code before a "
                    "change), measured the same way in the same run")
    args = ap.parse_args()
    work = pathlib.Path(tempfile.mkdtemp(prefix="kg-bench-reload-"))
    clip = work / "cam720.mp4"
    seconds = int(30 + args.reloads * args.every) * (2 if args.before else 1)
    print(f"making a {seconds} s 1280x720 25 fps H.264 clip in {work}", flush=True)
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc2=size=1280x720:rate=25", "-t", str(seconds), "-c:v", "libx264",
                    "-preset", "veryfast", "-bf", "0", "-b:v", "2M", "-g", "50", "-pix_fmt", "yuv420p", str(clip)],
                   check=True)
    broker = kg_e2e.Broker(work)
    rtsp = kg_e2e.RtspServer({"/cam": str(clip)}, work)
    results = []
    try:
        for label, binary in [("this build", kg_e2e.GATEWAY_BIN)] + ([("before", args.before)] if args.before else []):
            (work / "hls").mkdir(exist_ok=True)
            results.append((label, run(label, binary, work, broker, rtsp, args)))
    finally:
        rtsp.kill()
        broker.kill()

    print(f"\n{'gateway':<12} {'reloads':>7} {'failed requests':>16} {'wait for a new segment, s (median / max)':>42} "
          f"{'started over':>13}")
    for label, rows in results:
        waits = [w for w, _, _ in rows]
        failed = [f for _, fs, _ in rows for f in fs]
        kinds = ", ".join(f"{k} x{failed.count(k)}" for k in sorted(set(failed))) or "none"
        print(f"{label:<12} {len(rows):>7} {len(failed):>16} {statistics.median(waits):>31.1f} / {max(waits):4.1f}"
              f" {sum(1 for *_, o in rows if o):>9} of {len(rows)}")
        print(f"{'':<12} failed: {kinds}")
    print("(a segment is 2 s: a wait of about 2 s is no interruption)")


if __name__ == "__main__":
    main()
