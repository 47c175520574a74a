"""The local HTTP side: health, readiness, Prometheus metrics, the token-protected JSON API with
event evidence downloads, and abuse (bad tokens, path traversal, oversized headers, a slow client)
refused cleanly while the gateway keeps serving."""

import http.client
import json
import re
import signal
import socket
import stat
import time
import urllib.request

import kg_e2e

TOKEN = "s3cret-token-for-tests"


def get(port, path, token=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    h = dict(headers or {})
    if token:
        h["Authorization"] = f"Bearer {token}"
    conn.request("GET", path, headers=h)
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, r.getheader("Content-Type"), body


def last_run_port(gw):
    """The local API's port of the gateway's latest run (a reload starts the API again on a new port)."""
    last_run = gw.output().split(" starting with ")[-1]
    return int(re.search(r"local API on \S+ \(port (\d+)\)", last_run).group(1))


def post(port, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", path, headers={"Authorization": f"Bearer {TOKEN}"})
    r = conn.getresponse()
    r.read()
    conn.close()
    return r.status


def reload_metrics(port):
    """(kg_config_last_reload_successful, kg_config_last_reload_timestamp_seconds)"""
    text = get(port, "/metrics")[2].decode()
    return (int(re.search(r"^kg_config_last_reload_successful (\d+)$", text, re.M).group(1)),
            int(re.search(r"^kg_config_last_reload_timestamp_seconds (\d+)$", text, re.M).group(1)))


def sensor_ids(port):
    import json
    return [s["sensor"] for s in json.loads(get(port, "/api/sensors", token=TOKEN)[2])]


def test_local_side(broker, collector, clips, gateways, tmp_path):
    clip = clips("black-api", [("normal", 6), ("black", 8), ("normal", 30)])
    cam = kg_e2e.camera("cam", clip, input={"loop": False})
    config = kg_e2e.base_config(broker, [cam], tmp_path)
    config["api"] = {"listen": "127.0.0.1:0", "token": TOKEN, "header_timeout": "2s"}
    config["evidence"].update({"clip_pre": "2s", "clip_post": "5s"})
    gw = gateways(config)
    port = gw.api_port()

    assert get(port, "/healthz")[0] == 200
    kg_e2e.wait_until(lambda: get(port, "/readyz")[0] == 200, 15, what="ready")

    # An event with evidence, then the API shows it.
    start = kg_e2e.wait_until(lambda: [e for e in collector.events() if e["state"] == "start"], 20, what="an event")[0]
    # Its clip while its post-roll is recorded: not yet, which is not "no such evidence" (the
    # evidence review: the same 404 as an id that never was).
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", f"/api/events/{start['id']}/clip.mp4", headers={"Authorization": f"Bearer {TOKEN}"})
    r = conn.getresponse()
    assert (r.status, r.getheader("Retry-After"), r.read()) == (
        503, "5", b"the clip is still being recorded (its post-roll); ask again shortly\n")
    conn.close()
    assert json.loads(get(port, f"/api/events/{start['id']}", token=TOKEN)[2])["clip_pending"] is True
    kg_e2e.wait_until(lambda: collector.on(f"kitchen/test-site/events/{start['id']}/clip"), 15, what="the clip")
    # Ended, the event is its `end` message with what its earlier ones named: the start's snapshot
    # and clip were null in the end message, and the API said so (the evidence review).
    kg_e2e.wait_until(lambda: [e for e in collector.events() if e["id"] == start["id"] and e["state"] == "end"],
                      20, what="the event's end")
    event = json.loads(get(port, f"/api/events/{start['id']}", token=TOKEN)[2])
    assert event["state"] == "end" and event["evidence"]["snapshot"] == start["evidence"]["snapshot"], event
    assert event["evidence"]["clip"] == start["evidence"]["clip"] and event["evidence"]["snapshot_end"], event
    assert (event["has_snapshot"], event["has_best"], event["has_clip"], event["clip_pending"]) == (True, True, True, False)
    # Pictures of the staff at work: for the gateway's user and group only, the clip as the
    # snapshots (it had the umask's 0644, its folders 0755: the evidence review).
    clip_file = tmp_path / "evidence" / start["evidence"]["clip"]
    assert [oct(stat.S_IMODE(p.stat().st_mode)) for p in (clip_file, clip_file.parent, clip_file.parent.parent)] == \
        ["0o640", "0o750", "0o750"]

    status, ctype, body = get(port, "/metrics")
    text = body.decode()
    assert status == 200 and ctype.startswith("text/plain")
    assert 'kg_camera_online{camera="cam"} 1' in text
    assert 'kg_camera_fps_analysed{camera="cam"}' in text
    assert 'kg_camera_check_seconds{camera="cam"}' in text
    assert 'kg_events_total{check="camera_health",state="start"} 1' in text
    assert "kg_mqtt_connected 1" in text and "process_resident_memory_bytes" in text
    for line in text.splitlines():  # every sample line is "name{labels} number"
        if line and not line.startswith("#"):
            float(line.rsplit(" ", 1)[1])

    assert get(port, "/api/cameras")[0] == 401
    assert get(port, "/api/cameras", token="wrong")[0] == 401
    # The scheme is case-insensitive (RFC 9110 11.1); the token is not.
    assert get(port, "/api/cameras", headers={"Authorization": f"bearer {TOKEN}"})[0] == 200
    assert get(port, "/api/cameras", headers={"Authorization": f"bearer {TOKEN.upper()}"})[0] == 401
    status, ctype, body = get(port, "/api/cameras", token=TOKEN)
    assert status == 200 and ctype == "application/json"
    cams = json.loads(body)
    assert cams[0]["camera"] == "cam" and cams[0]["online"] is True
    events = json.loads(get(port, "/api/events?limit=10", token=TOKEN)[2])
    assert events[0]["id"] == start["id"]
    # A limit that is not one is refused and named, not read as the default.
    for bad in ["0", "1001", "99999", "ten", ""]:
        status, _, body = get(port, f"/api/events?limit={bad}", token=TOKEN)
        assert (status, body) == (400, f"limit: expected a whole number from 1 to 1000, not '{bad}'\n".encode()), bad
    assert get(port, "/api/outbox/dead?limit=-1", token=TOKEN)[:1] == (400,)
    assert get(port, "/api/events?x=1&limit=5x", token=TOKEN)[0] == 400
    assert len(json.loads(get(port, "/api/events?limit=%31", token=TOKEN)[2])) == 1  # decoded: 1
    assert get(port, "/api/outbox/dead?limit=1000", token=TOKEN)[0] == 200
    status, ctype, jpeg = get(port, f"/api/events/{start['id']}/snapshot.jpg", token=TOKEN)
    assert status == 200 and ctype == "image/jpeg" and jpeg[:2] == b"\xff\xd8"
    status, ctype, mp4 = get(port, f"/api/events/{start['id']}/clip.mp4", token=TOKEN)
    assert status == 200 and ctype == "video/mp4" and mp4[4:8] == b"ftyp"
    # A player that seeks, or a download resumed, asks for a part; HEAD reads no body.
    status, ctype, part = get(port, f"/api/events/{start['id']}/clip.mp4", token=TOKEN,
                              headers={"Range": "bytes=100-"})
    assert status == 206 and part == mp4[100:]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("HEAD", f"/api/events/{start['id']}/clip.mp4", headers={"Authorization": f"Bearer {TOKEN}"})
    r = conn.getresponse()
    assert r.status == 200 and r.getheader("Content-Length") == str(len(mp4)) and r.read() == b""
    assert r.getheader("Accept-Ranges") == "bytes"
    conn.close()
    assert get(port, f"/api/events/{start['id']}/clip.mp4", token=TOKEN,
               headers={"Range": f"bytes={len(mp4)}-"})[0] == 416

    # Abuse, each refused cleanly.
    for path in ["/api/events/../../../../etc/passwd", "/api/events/%2e%2e%2fetc%2fpasswd/snapshot.jpg",
                 "/api/events/" + "a" * 200, "/../etc/passwd"]:
        assert get(port, path, token=TOKEN)[0] == 404, path
    assert get(port, "/healthz", headers={"X-Big": "x" * 20000})[0] == 431
    slow = socket.create_connection(("127.0.0.1", port))
    slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never finishes the headers
    t0 = time.time()
    assert get(port, "/healthz")[0] == 200  # others are served meanwhile
    slow.settimeout(5)
    assert slow.recv(100) == b""  # closed by the header timeout (2 s)
    assert time.time() - t0 < 4.5
    slow.close()

    broker.stop()  # readiness follows the broker
    kg_e2e.wait_until(lambda: get(port, "/readyz")[0] == 503, 10, what="not ready without the broker")
    assert b"broker not connected" in get(port, "/readyz")[2]
    broker.start()
    assert gw.terminate() == 0

    # After a restart (a power cut, an upgrade) the earlier event's evidence is still served: the
    # room links to it, and the files are on disk until the evidence budget deletes them.
    gw = gateways(config)
    # The log goes on from the first run's: its API line is the second.
    ports = lambda: re.findall(r"local API on \S+ \(port (\d+)\)", gw.output())
    port = int(kg_e2e.wait_until(lambda: ports()[1:], 15, what="the restarted gateway's API")[0])
    assert get(port, f"/api/events/{start['id']}/snapshot.jpg", token=TOKEN)[2] == jpeg
    # ... and the event itself is listed, from what the outbox kept of the run before.
    listed = json.loads(get(port, "/api/events?limit=10", token=TOKEN)[2])
    assert start["id"] in [e["id"] for e in listed], listed
    assert json.loads(get(port, f"/api/events/{start['id']}", token=TOKEN)[2])["check"] == "camera_health"
    assert get(port, f"/api/events/{start['id']}/clip.mp4", token=TOKEN)[2] == mp4
    assert get(port, f"/api/events/{start['id']}/clip.mp4", token=TOKEN,
               headers={"Range": "bytes=100-"})[2] == mp4[100:]
    assert get(port, f"/api/events/{'0' * 26}/clip.mp4", token=TOKEN)[0] == 404
    assert get(port, f"/api/events/{start['id']}/clip.mp4")[0] == 401
    assert gw.terminate() == 0


def test_sighup_during_a_reload_queues_another(broker, gateways, tmp_path):
    """SIGHUP is the daemon's reload signal at every moment of its life: one that arrives while a reload
    rebuilds the gateway (or while the first start loads its models) reloads once more. Before, the
    signal had its default action between two runs and killed the gateway for good (systemd does not
    restart a death by SIGHUP)."""
    config = kg_e2e.base_config(broker, [], tmp_path)
    del config["cameras"]  # a sensors-only gateway: reloads are quick, the race window is the same
    config["sensors"] = [{"id": "fridge", "source": {"mqtt": {"topic": "fridge/temp"}}}]
    config["api"] = {"listen": "127.0.0.1:0", "token": TOKEN}
    gw = gateways(config)
    starts = lambda: gw.output().count(" starting with ")
    kg_e2e.wait_until(lambda: starts() == 1, 10, what="the first start")
    gw.proc.send_signal(signal.SIGHUP)  # while the first start builds the gateway, or right after
    kg_e2e.wait_until(lambda: starts() == 2 or not gw.running(), 10, interval=0.01, what="the first reload")
    assert gw.running(), f"the gateway died of a SIGHUP during its start:\n{gw.output()[-3000:]}"
    kg_e2e.wait_until(lambda: "local API on" in gw.output().split(" starting with ")[-1], 10, interval=0.01,
                      what="the reloaded gateway serving")

    # A second SIGHUP sent the moment the running gateway has stopped for a reload, before the next
    # one is built: it must queue a further reload, not kill the process.
    for n in range(3):
        gw.proc.send_signal(signal.SIGHUP)
        kg_e2e.wait_until(lambda: gw.output().count("stopped for the reload") == 2 + 2 * n or not gw.running(), 10,
                          interval=0.001, what="the gateway stopping for the reload")
        gw.proc.send_signal(signal.SIGHUP)
        kg_e2e.wait_until(lambda: starts() == 4 + 2 * n or not gw.running(), 15, interval=0.01,
                          what="the queued reload")
        assert gw.running(), f"the gateway died of a SIGHUP during a reload:\n{gw.output()[-3000:]}"
        kg_e2e.wait_until(lambda: "local API on" in gw.output().split(" starting with ")[-1], 10,
                          what="the gateway serving again")
    port = last_run_port(gw)
    assert get(port, "/healthz")[0] == 200
    assert gw.terminate() == 0


def test_a_reload_runs_the_configuration_it_checked(broker, gateways, tmp_path):
    """What a reload accepted is what runs next, not whatever the file holds once the gateway has
    stopped (it used to read and check the file a second time, loading every model once more)."""
    import yaml

    config = kg_e2e.base_config(broker, [], tmp_path)
    del config["cameras"]
    config["sensors"] = [{"id": "first", "source": {"mqtt": {"topic": "t/first"}}}]
    config["api"] = {"listen": "127.0.0.1:0", "token": TOKEN}
    gw = gateways(config)
    port = gw.api_port()
    assert sensor_ids(port) == ["first"]

    config["sensors"] = [{"id": "checked", "source": {"mqtt": {"topic": "t/checked"}}}]
    gw.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", "/api/reload", headers={"Authorization": f"Bearer {TOKEN}"})
    assert conn.getresponse().status == 202
    conn.close()
    # Changed again within the 300 ms the gateway waits before it stops for the reload.
    config["sensors"] = [{"id": "later", "source": {"mqtt": {"topic": "t/later"}}}]
    gw.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    kg_e2e.wait_until(lambda: "local API on" in gw.output().split(" starting with ")[-1] and
                      gw.output().count(" starting with ") == 2, 15, what="the reloaded gateway serving")
    port = last_run_port(gw)
    assert sensor_ids(port) == ["checked"]
    made = reload_metrics(port)
    assert made[0] == 1 and abs(made[1] - time.time()) < 60, made

    # A reload accepted, then the file broken and a reload refused within those 300 ms: the refusal
    # holds, and the configuration of before runs on. The accepted one used to start after the
    # refusal was logged, a copy of the file that was neither what ran nor what is on disk (a review).
    config["sensors"] = [{"id": "accepted", "source": {"mqtt": {"topic": "t/accepted"}}}]
    gw.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    assert post(port, "/api/reload") == 202
    gw.config_path.write_text("site: [\n")
    assert post(port, "/api/reload") == 422
    time.sleep(1.5)
    assert gw.output().count(" starting with ") == 2, gw.output()[-2000:]
    assert "the reload accepted before is not made either" in gw.output()
    assert sensor_ids(port) == ["checked"]
    refused = reload_metrics(port)
    assert refused[0] == 0 and refused[1] >= made[1], refused
    assert gw.terminate() == 0


def test_a_reload_that_cannot_start_goes_back_to_the_running_configuration(broker, gateways, tmp_path):
    """A reloaded configuration that passes the checks but cannot be built (here its outbox is held by
    another process, as when an installer copies a second gateway's file) is logged and the previous
    configuration runs again. The gateway used to exit, and systemd restarted it into the same file:
    an unattended box lost its cameras, sensors and alerts until someone came."""
    import fcntl
    import yaml

    config = kg_e2e.base_config(broker, [], tmp_path)
    del config["cameras"]
    config["sensors"] = [{"id": "fridge", "source": {"mqtt": {"topic": "t/fridge"}}}]
    config["api"] = {"listen": "127.0.0.1:0", "token": TOKEN}
    gw = gateways(config)
    port = gw.api_port()
    assert sensor_ids(port) == ["fridge"]
    assert reload_metrics(port) == (1, 0)  # none asked for yet

    held = tmp_path / "other" / "outbox.db"
    held.parent.mkdir()
    with open(str(held) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        config["outbox"] = {"path": str(held)}
        config["sensors"] = [{"id": "freezer", "source": {"mqtt": {"topic": "t/freezer"}}}]
        gw.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        gw.proc.send_signal(signal.SIGHUP)
        kg_e2e.wait_until(lambda: gw.output().count(" starting with ") == 3 or not gw.running(), 20,
                          what="the reload and the start after it")
        assert gw.running(), f"the gateway exited on a reload it could not start:\n{gw.output()[-3000:]}"
        failed = [line for line in gw.output().splitlines() if "reload failed" in line]
        assert len(failed) == 1, gw.output()[-3000:]
        assert str(held) in failed[0] and "another kitchen-gateway runs on it" in failed[0], failed[0]
        assert "starting the previous configuration again" in failed[0]
        kg_e2e.wait_until(lambda: "local API on" in gw.output().split(" starting with ")[-1], 15,
                          what="the previous configuration serving again")
        port = last_run_port(gw)
        assert sensor_ids(port) == ["fridge"]  # the configuration that ran, not the one that failed
        # Said where a site's Prometheus sees it, not in the log alone.
        assert reload_metrics(port)[0] == 0
        kg_e2e.wait_until(lambda: get(port, "/readyz")[0] == 200, 10, what="ready again (the broker reconnected)")
        assert not held.exists()  # the failed run never opened the other gateway's outbox

    # The file on disk is what a later reload checks and starts again, now that it can.
    gw.proc.send_signal(signal.SIGHUP)
    kg_e2e.wait_until(lambda: gw.output().count(" starting with ") == 4 and
                      "local API on" in gw.output().split(" starting with ")[-1], 20, what="the next reload")
    port = last_run_port(gw)
    assert sensor_ids(port) == ["freezer"]
    assert reload_metrics(port)[0] == 1
    assert gw.terminate() == 0


def test_an_outbox_that_cannot_be_opened_runs_in_memory_and_says_so(broker, gateways, tmp_path):
    """An outbox file that cannot be opened at all (here its folder is a file; in the field a wrong
    owner of /var/lib/kitchen-gateway) leaves the gateway running on memory: alerts still flow, but a
    restart loses what is queued. Readiness and /metrics say so; it used to be one log line at the
    start, and a box ran "ready" for months without durability."""

    (tmp_path / "not-a-folder").write_text("a file where the outbox's folder should be")
    config = kg_e2e.base_config(broker, [], tmp_path)
    del config["cameras"]
    config["outbox"] = {"path": str(tmp_path / "not-a-folder" / "outbox.db")}
    # So is an evidence folder that cannot be written: said at the start, not at the first event's
    # snapshot, days later (the installer review).
    config["evidence"] = {**config.get("evidence", {}), "path": str(tmp_path / "not-a-folder" / "evidence")}
    config["sensors"] = [{"id": "fridge", "source": {"mqtt": {"topic": "t/fridge"}}}]
    # A camera (down): a sensors-only site keeps no pictures, and is not failed for its evidence folder.
    config["cameras"] = [kg_e2e.camera("cam", f"rtsp://127.0.0.1:{kg_e2e.free_port()}/none")]
    config["api"] = {"listen": "127.0.0.1:0", "token": TOKEN}
    gw = gateways(config)
    port = gw.api_port()
    kg_e2e.wait_until(lambda: b"broker not connected" not in get(port, "/readyz")[2], 15, what="the broker")
    status, _, body = get(port, "/readyz")
    assert status == 503, body
    assert b"outbox in memory only, lost on a restart" in body and b"not-a-folder" in body, body
    assert f"evidence folder {tmp_path}/not-a-folder/evidence cannot be written".encode() in body, body
    assert "no snapshot or clip is kept until it can" in gw.output()
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    assert re.search(r"^kg_outbox_durable 0$", metrics, re.M), metrics
    assert "events will be kept in memory only" in gw.output()
    # Still serving the room: its retained `gateway` message names the stream of the memory outbox.
    import json
    info = json.loads(kg_e2e.wait_until(lambda: kg_e2e.retained(broker, "kitchen/test-site/gateway"), 10,
                                        what="the retained gateway message"))
    assert re.fullmatch(r"[0-9a-f]{16}", info.get("stream", "")), info
    assert gw.terminate() == 0

    # A usable folder: durable and ready.
    config["outbox"] = {"path": str(tmp_path / "outbox" / "outbox.db")}
    config["evidence"]["path"] = str(tmp_path / "evidence-durable")
    del config["cameras"]
    gw = gateways(config, "durable")
    port = gw.api_port()
    kg_e2e.wait_until(lambda: get(port, "/readyz")[0] == 200, 15, what="ready with a durable outbox")
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    assert re.search(r"^kg_outbox_durable 1$", metrics, re.M), metrics
    assert gw.terminate() == 0


def test_a_port_taken_at_start_is_tried_again(broker, gateways, tmp_path):
    """A port still held at start (the previous process closing it, another service) is not given up
    for the life of the process: the gateway tries again with back-off and serves once it is free.
    Meanwhile the parents' side not served is in /readyz and /metrics, not in the log alone (the
    installer review)."""
    blockers = []
    for _ in range(2):
        blocker = socket.socket()
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        blockers.append(blocker)
    port, public = (b.getsockname()[1] for b in blockers)
    config = kg_e2e.base_config(broker, [], tmp_path)
    del config["cameras"]
    config["sensors"] = [{"id": "fridge", "source": {"mqtt": {"topic": "t/fridge"}}}]
    config["api"] = {"listen": f"127.0.0.1:{port}", "token": TOKEN}
    config["public"] = {"listen": f"127.0.0.1:{public}", "hls_dir": str(tmp_path / "hls")}
    gw = gateways(config)
    kg_e2e.wait_until(lambda: "local API not started" in gw.output(), 10, what="the taken port logged")
    time.sleep(2)
    assert gw.output().count("local API not started") == 1  # once, not at every try
    blockers[0].close()
    kg_e2e.wait_until(lambda: "local API started after all" in gw.output(), 15, what="the API on the freed port")
    assert get(port, "/healthz")[0] == 200
    status, _, body = get(port, "/readyz")
    assert status == 503 and b"public side not listening: cannot listen on" in body, (status, body)
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    assert re.search(r'^kg_http_listening\{side="public"\} 0$', metrics, re.M), metrics
    assert re.search(r'^kg_http_listening\{side="api"\} 1$', metrics, re.M), metrics
    blockers[1].close()
    kg_e2e.wait_until(lambda: "public side started after all" in gw.output(), 70, what="the public side on its port")
    kg_e2e.wait_until(lambda: get(port, "/readyz")[0] == 200, 10, what="ready with both sides listening")
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    assert re.search(r'^kg_http_listening\{side="public"\} 1$', metrics, re.M), metrics
    assert gw.terminate() == 0


def test_a_reload_that_would_not_see_a_changed_secret_is_refused_and_says_why(broker, gateways, tmp_path):
    """systemd reads secrets.env again for the unit's `--check-config ... --reloading $MAINPID`, but the
    gateway keeps the environment it started with: a rotated password passed the check and was never
    used, and a variable added since refused the SIGHUP with only "1 error(s)" in the log. The check
    now names what changed, and the refused reload names its errors."""
    import os
    import subprocess
    import yaml

    config = kg_e2e.base_config(broker, [], tmp_path)
    del config["cameras"]
    config["site"]["name"] = "${KG_TEST_SITE_NAME}"
    config["sensors"] = [{"id": "fridge", "source": {"mqtt": {"topic": "t/fridge"}}}]
    gw = gateways(config, env={"KG_TEST_SITE_NAME": "No. 1 canteen"})
    kg_e2e.wait_until(lambda: "[mqtt] connected" in gw.output(), 20, what="the gateway connected")

    def check(**env):
        return subprocess.run([kg_e2e.GATEWAY_BIN, "--check-config", str(gw.config_path), "--reloading",
                               str(gw.proc.pid)], capture_output=True, text=True, timeout=30,
                              env=dict(os.environ, **env))

    same = check(KG_TEST_SITE_NAME="No. 1 canteen")
    assert same.returncode == 0, same.stderr
    rotated = check(KG_TEST_SITE_NAME="No. 2 canteen")
    assert rotated.returncode == 2, rotated.stdout + rotated.stderr
    assert "KG_TEST_SITE_NAME is set otherwise here than in the running gateway" in rotated.stderr, rotated.stderr
    assert "systemctl restart kitchen-gateway" in rotated.stderr
    assert "canteen" not in rotated.stderr  # names, never values (a password's)
    assert "configuration OK" not in rotated.stdout, rotated.stdout  # it said OK, then refused
    assert "configuration OK" in same.stdout

    # A variable the running gateway never had: refused in its log with the error and what to do.
    config["mqtt"]["client_id"] = "${KG_TEST_ADDED_SINCE}"
    gw.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    gw.proc.send_signal(signal.SIGHUP)
    kg_e2e.wait_until(lambda: "reload refused" in gw.output(), 15, what="the reload refused")
    time.sleep(0.5)
    out = gw.output()
    assert "mqtt.client_id: environment variable 'KG_TEST_ADDED_SINCE' is not set" in out, out[-3000:]
    assert "needs a restart, not a reload" in out, out[-3000:]
    assert gw.running()
    assert gw.terminate() == 0
