"""Ingest end to end: a file, a real RTSP camera, an RTSP server that dies and comes back, and a
camera that accepts the connection and then sends nothing."""

import time

import kg_e2e

STATE = "kitchen/test-site/cameras/{}/state"


def latest_state(collector, cam):
    return collector.last_json(STATE.format(cam))


def test_a_looping_file_is_analysed_at_the_configured_rate(broker, collector, schemas, clips, gateways, tmp_path):
    clip = clips("short", [("normal", 4)])  # loops every 4 s
    gateways(kg_e2e.base_config(broker, [kg_e2e.camera("file", clip, input={"loop": True})], tmp_path))
    first = kg_e2e.wait_until(lambda: (s := latest_state(collector, "file")) and s["fps_analysed"] > 0 and s,
                              15, what="an analysing camera")
    time.sleep(11)  # spans two loops and a full rate window
    state = latest_state(collector, "file")
    assert state["online"] is True
    assert 1.5 <= state["fps_analysed"] <= 2.5, state
    assert 20 <= state["fps_in"] <= 30, state
    assert state["last_frame_time"] > first["last_frame_time"]
    assert state["reconnects_1h"] == 0  # looping is not reconnecting
    assert collector.events() == []
    schemas.validate_all(collector)


def test_a_real_rtsp_camera_that_dies_and_comes_back(broker, collector, schemas, clips, gateways, tmp_path):
    server = kg_e2e.RtspServer({"/cam": clips("long", [("normal", 90)])})
    try:
        gateways(kg_e2e.base_config(broker, [kg_e2e.camera("rtsp", server.url("/cam"))], tmp_path))
        kg_e2e.wait_until(lambda: (s := latest_state(collector, "rtsp")) and s["online"] and s["fps_analysed"] >= 1.5,
                          20, what="RTSP frames analysed")
        server.kill()  # mid-stream
        kg_e2e.wait_until(lambda: not latest_state(collector, "rtsp")["online"], 15, what="camera offline")
        offline = kg_e2e.wait_until(
            lambda: [e for e in collector.events() if e["label"] == "offline" and e["state"] == "start"], 10,
            what="an offline event")
        time.sleep(2)
        server.start()  # same port
        kg_e2e.wait_until(lambda: latest_state(collector, "rtsp")["online"], 20, what="camera back online")
        before = latest_state(collector, "rtsp")["last_frame_time"]
        time.sleep(3)
        after = latest_state(collector, "rtsp")
        assert after["last_frame_time"] > before  # frames resumed
        assert after["reconnects_1h"] >= 1
        ends = kg_e2e.wait_until(
            lambda: [e for e in collector.events() if e["label"] == "offline" and e["state"] == "end"], 10,
            what="the offline event's end")
        assert ends[0]["id"] == offline[0]["id"]
        assert len(offline) == 1 and len(ends) == 1
    finally:
        server.kill()
    schemas.validate_all(collector)


def test_a_camera_that_never_answers_is_a_stall_and_the_others_keep_working(broker, collector, schemas, clips,
                                                                            gateways, tmp_path):
    silent = kg_e2e.SilentServer()
    try:
        cams = [
            kg_e2e.camera("hung", f"rtsp://127.0.0.1:{silent.port}/cam", input={"timeout": "2s"}),
            kg_e2e.camera("good", clips("short", [("normal", 4)]), input={"loop": True}),
        ]
        t0 = time.time()
        gateways(kg_e2e.base_config(broker, cams, tmp_path))
        state = kg_e2e.wait_until(lambda: (s := latest_state(collector, "hung")) and s["stalls_1h"] >= 1 and s, 10,
                                  what="a stall counted")
        assert time.time() - t0 < 8
        assert state["online"] is False
        assert "no answer within 2000 ms" in state.get("last_error", "")
        time.sleep(5)
        good = latest_state(collector, "good")
        assert good["online"] is True and good["fps_analysed"] >= 1.5
        hung = latest_state(collector, "hung")
        assert hung["stalls_1h"] >= 2  # it keeps retrying, with back-off
    finally:
        silent.close()
    schemas.validate_all(collector)


def test_http_and_rtmp_cameras(broker, collector, schemas, clips, gateways, tmp_path):
    """An MP4 over plain HTTP (a real web server) and an RTMP stream (FFmpeg's own RTMP server in
    listen mode, the peer a media server would be) are read like any camera."""
    import functools
    import http.server
    import shutil
    import subprocess
    import threading

    clip = clips("long", [("normal", 90)])
    web_root = tmp_path / "www"
    web_root.mkdir()
    shutil.copy(clip, web_root / "cam.mp4")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(web_root))
    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    rtmp_port = kg_e2e.free_port()
    rtmp = subprocess.Popen(["ffmpeg", "-loglevel", "error", "-re", "-i", clip, "-c", "copy", "-f", "flv", "-listen", "1",
                             f"rtmp://127.0.0.1:{rtmp_port}/live/cam"], stdin=subprocess.DEVNULL)
    try:
        # No probe of the RTMP port: FFmpeg's listener serves exactly one connection. The gateway
        # retries until the listener is up.
        cams = [kg_e2e.camera("http", f"http://127.0.0.1:{web.server_address[1]}/cam.mp4"),
                kg_e2e.camera("rtmp", f"rtmp://127.0.0.1:{rtmp_port}/live/cam")]
        gateways(kg_e2e.base_config(broker, cams, tmp_path))
        for cam in ("http", "rtmp"):
            kg_e2e.wait_until(lambda: (s := latest_state(collector, cam)) and s["online"] and s["fps_analysed"] >= 1.5,
                              20, what=f"{cam} frames analysed")
    finally:
        rtmp.kill()
        rtmp.wait()
        web.shutdown()
    schemas.validate_all(collector)
