#!/usr/bin/python3
"""Benchmark of what configuration reloads do to the alerts the monitoring room receives.

Three cameras, each a looping file (the gateway's own file input), whose condition lasts through
the whole run:

  - frozen: one picture repeated exactly (a hung encoder): camera_health's `frozen` (frozen_after
    4 s), and `unattended` (nobody moves at the station: unattended_after 8 s);
  - covered: 10 s of a normal scene, then a hand over the lens for good: camera_health's `covered`,
    judged against the sharpness learned from the normal seconds;
  - black: a black picture: camera_health's `black`, judged on each picture afresh (the peer
    condition: handed over across a reload since the 62nd session).

The gateway is reloaded (SIGHUP) --reloads times, --every seconds apart, with a file that changes
only the cameras' names (what an installer edits; nothing of how they are fetched or judged). One
condition is one alert: every start beyond the first is the room notified again, and asked to
acknowledge again, for what it already knows, and every `gateway stopped` end is the condition
shown over while it is not. Counted from the events the gateway publishes on a real broker.

With --before GATEWAY the same is run with that binary (the code before a change) in the same run,
as the peer. Figures go to stdout. Usage: bench/reload_alerts.py [--reloads 5] [--every 12]
[--before GATEWAY] (after scripts/build.sh).
"""

import argparse
import pathlib
import signal
import sys
import tempfile
import time

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
import kg_e2e  # noqa: E402

CONDITIONS = [("frozen", "frozen"), ("frozen", "unattended"), ("covered", "covered"), ("black", "black")]


def run(label, binary, work, broker, clips, args):
    """{(camera, label): (starts, ends said `gateway stopped`, other ends)} of one gateway binary."""
    cams = [kg_e2e.camera(name, clips[name], input={"loop": True}, health={"offline_after": "20s"},
                          checks=["camera_health", "unattended"] if name == "frozen" else ["camera_health"],
                          scene={"unattended_after": "8s"}, rules={"unattended": {"confirm": "2s", "clear": "2s"}})
            for name in clips]
    for cam in cams:
        if cam["id"] != "frozen":
            del cam["rules"]
    run_dir = work / label.replace(" ", "-")
    run_dir.mkdir()
    config = kg_e2e.base_config(broker, cams, run_dir)
    collector = kg_e2e.Collector(broker, "kitchen/test-site/events")
    ours, kg_e2e.GATEWAY_BIN = kg_e2e.GATEWAY_BIN, binary
    try:
        gw = kg_e2e.Gateway(run_dir, config, name="gateway")
    finally:
        kg_e2e.GATEWAY_BIN = ours

    def events():
        return [e for e in collector.events() if e.get("state") in ("start", "end")]

    def started(cam, what):
        return any(e["camera"] == cam and e["label"] == what and e["state"] == "start" for e in events())

    try:
        kg_e2e.wait_until(lambda: all(started(c, w) for c, w in CONDITIONS), 60, what="every condition raised")
        for i in range(args.reloads):
            for cam in cams:
                cam["name"] = f"{cam['id'].title()} {i + 1}"
            gw.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
            gw.proc.send_signal(signal.SIGHUP)
            time.sleep(args.every)
        assert gw.running(), gw.output()[-2000:]
    finally:
        gw.terminate()
        time.sleep(1)  # the ends the stop sent
        collector.close()
    counts = {}
    for cam, what in CONDITIONS:
        mine = [e for e in events() if e["camera"] == cam and e["label"] == what]
        starts = sum(1 for e in mine if e["state"] == "start")
        ends = [e.get("end_reason", "") for e in mine if e["state"] == "end"]
        # The last `gateway stopped` is the benchmark's own stop, not a reload's.
        stopped = max(0, ends.count("gateway stopped") - 1)
        counts[(cam, what)] = (starts, stopped, len(ends) - ends.count("gateway stopped"))
    return counts


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reloads", type=int, default=5)
    ap.add_argument("--every", type=float, default=12, help="seconds between reloads (over frozen_after, "
                    "confirm and unattended_after: a condition ended by a reload is raised again before the next)")
    ap.add_argument("--before", metavar="GATEWAY", help="another kitchen-gateway binary (the code before a "
                    "change), measured the same way in the same run")
    args = ap.parse_args()
    work = pathlib.Path(tempfile.mkdtemp(prefix="kg-bench-reload-alerts-"))
    print(f"clips and logs in {work}", flush=True)
    clips = {
        "frozen": kg_e2e.make_clip([("frozen", 20)], work / "frozen.mp4"),
        "covered": kg_e2e.make_clip([("normal", 10), ("covered", int(60 + args.reloads * args.every) * 2)],
                                    work / "covered.mp4"),
        "black": kg_e2e.make_clip([("black", 20)], work / "black.mp4"),
    }
    broker = kg_e2e.Broker(work)
    results = []
    try:
        for label, binary in [("this build", kg_e2e.GATEWAY_BIN)] + ([("before", args.before)] if args.before else []):
            results.append((label, run(label, binary, work, broker, clips, args)))
    finally:
        broker.kill()

    print(f"\n{args.reloads} reloads, {args.every:g} s apart; each condition lasts the whole run (one alert)")
    print(f"{'gateway':<12} {'camera/label':<20} {'alerts raised':>14} {'ended by a reload':>18} {'other ends':>11}")
    for label, counts in results:
        for (cam, what), (starts, stopped, other) in counts.items():
            print(f"{label:<12} {cam + '/' + what:<20} {starts:>14} {stopped:>18} {other:>11}")


if __name__ == "__main__":
    main()
