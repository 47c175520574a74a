"""Ingest end to end: a looping file, a real RTSP camera (GStreamer's RTSP server), an RTSP server
killed mid-stream and restarted on its port, a camera that accepts the connection and then sends
nothing (a stall) next to a healthy one, and HTTP and RTMP peers. Everything is judged by what the
gateway publishes on a real broker, and every message is validated against docs/schemas. These assert
rates and a stall's timing, so they run alone; the camera faults whose bounds are seconds wide are in
test_camera_faults.py, which runs beside other tests."""

import re
import signal
import subprocess
import threading
import time
import urllib.request

import kg_e2e
from kg_e2e import frames_flowing, latest_state, parse_time

STATE = kg_e2e.CAMERA_STATE


def labels(collector, cam):
    return [e["label"] for e in collector.events() if e["camera"] == cam]


def assert_streaming_steadily(collector, cam, first):
    """After ~10 s of streaming (one full rate window), the camera is analysed at analysis.fps (2),
    decodes the source's 25 fps in real time, and its frames are recent and keep coming."""
    state = latest_state(collector, cam)
    assert state["online"] is True, state
    assert 1 <= state["fps_analysed"] <= 3, state
    assert 15 <= state["fps_in"] <= 35, state  # 25 fps, paced in real time
    assert parse_time(state["last_frame_time"]) - parse_time(first["last_frame_time"]) >= 7, (first, state)
    assert parse_time(state["time"]) - parse_time(state["last_frame_time"]) < 2, state
    assert state["decode_errors"] == 0 and state["stalls_1h"] == 0, state
    return state


def test_a_looping_file_and_a_real_rtsp_camera_are_analysed_at_the_configured_rate(broker, collector, schemas,
                                                                                     make_clip, rtsp_server, gateway,
                                                                                     tmp_path):
    """A looping file and a real RTSP camera, read side by side by one gateway: one 10 s rate window
    serves both (they were two gateways, each waiting out its own)."""
    clip = make_clip([("normal", 6)])  # loops every 6 s
    server = rtsp_server({"/cam": make_clip([("normal", 90)])})
    started = time.time()
    gateway(kg_e2e.base_config(broker, [kg_e2e.camera("file", clip, input={"loop": True}),
                                        kg_e2e.camera("rtsp", server.url("/cam"))], tmp_path))
    # Each within the time it had from the gateway's start when it had a gateway of its own.
    first = {cam: collector.wait_for(lambda: frames_flowing(collector, cam), max(0.0, started + limit - time.time()),
                                     what=what)
             for cam, limit, what in [("file", 15, "frames from the file"), ("rtsp", 20, "frames over RTSP")]}
    count = len(collector.on(STATE.format("file")))
    time.sleep(11)  # a full 10 s rate window, across the file's loop boundaries
    for cam in ("file", "rtsp"):
        state = assert_streaming_steadily(collector, cam, first[cam])
        assert state["reconnects_1h"] == 0, state  # for the file: starting it again is not a reconnect
    assert len(collector.on(STATE.format("file"))) - count >= 8  # state_interval 1s
    assert collector.events() == []  # a looping normal picture and a steady camera are healthy
    schemas.validate_all(collector)


def test_an_rtsp_server_killed_mid_stream_and_restarted(broker, collector, schemas, make_clip, rtsp_server, gateway,
                                                         tmp_path):
    server = rtsp_server({"/cam": make_clip([("normal", 90)])})
    gateway(kg_e2e.base_config(broker, [kg_e2e.camera("rtsp", server.url("/cam"))], tmp_path))
    collector.wait_for(lambda: (s := frames_flowing(collector, "rtsp")) and s["fps_analysed"] >= 1, 20,
                       what="frames over RTSP")
    port = server.port

    killed_at = time.time()
    server.kill()  # mid-stream: no TEARDOWN, the TCP connection just dies

    def seen_offline():
        s = latest_state(collector, "rtsp")
        return (s and s["online"] is False) or "offline" in labels(collector, "rtsp")

    collector.wait_for(seen_offline, 15, what="the camera seen offline (state or offline event)")
    time.sleep(max(0.0, killed_at + 5 - time.time()))  # down for at least ~5 s
    restarted_at = time.time()
    server.start()
    assert server.port == port

    # Back online with frames decoded after the restart, and they keep coming.
    s1 = collector.wait_for(lambda: frames_flowing(collector, "rtsp", after=restarted_at), 20,
                            what="frames again after the restart")
    time.sleep(3)
    s2 = latest_state(collector, "rtsp")
    assert s2["online"] is True, s2
    assert parse_time(s2["last_frame_time"]) > parse_time(s1["last_frame_time"]), (s1, s2)
    assert s2["reconnects_1h"] >= 1, s2

    # If an offline event was opened it is closed, once; nothing else was reported (a camera that is
    # gone is not black or frozen).
    events = [e for e in collector.events() if e["camera"] == "rtsp"]
    if events:
        collector.wait_for(lambda: any(e["state"] == "end" for e in collector.events()), 10,
                           what="the offline event's end")
        events = [e for e in collector.events() if e["camera"] == "rtsp"]
        assert [(e["label"], e["state"]) for e in events if e["state"] != "update"] == \
            [("offline", "start"), ("offline", "end")], events
        assert len({e["id"] for e in events}) == 1, events
        assert parse_time(events[-1]["end_time"]) > parse_time(events[0]["start_time"])
    schemas.validate_all(collector)


def test_a_camera_that_never_answers_is_a_stall_and_the_others_keep_working(broker, collector, schemas, make_clip,
                                                                            silent_server, gateway, tmp_path):
    silent = silent_server()
    timeout = 2
    cams = [
        kg_e2e.camera("hung", silent.url(), input={"timeout": f"{timeout}s"}),
        kg_e2e.camera("good", make_clip([("normal", 6)]), input={"loop": True}),
    ]
    started = time.time()
    gateway(kg_e2e.base_config(broker, cams, tmp_path))
    state = collector.wait_for(lambda: (s := latest_state(collector, "hung")) and s["stalls_1h"] >= 1 and s,
                               # + the process's start and the next state report, on a loaded machine
                               timeout + 10, what="a stall counted within input.timeout + 10 s")
    assert silent.accepted >= 1  # it did connect: the stall is the silence, not a refused connection
    assert state["online"] is False, state
    assert state["last_frame_time"] is None, state
    print(f"stall counted {time.time() - started:.1f}s after start")

    # The healthy camera is served meanwhile: fresh states, fresh frames, at the configured rate.
    good_before = collector.wait_for(lambda: frames_flowing(collector, "good"), 5, what="the good camera")
    count = len(collector.on(STATE.format("good")))
    time.sleep(6)
    good = latest_state(collector, "good")
    assert len(collector.on(STATE.format("good"))) - count >= 4
    assert good["online"] is True and good["fps_analysed"] >= 1, good
    assert parse_time(good["last_frame_time"]) - parse_time(good_before["last_frame_time"]) >= 4
    assert parse_time(good["time"]) - parse_time(good_before["time"]) >= 4

    hung = latest_state(collector, "hung")
    assert hung["stalls_1h"] >= 2 and silent.accepted >= 2, hung  # it keeps retrying, with back-off
    assert labels(collector, "good") == []
    assert set(labels(collector, "hung")) <= {"offline"}
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


def test_a_camera_that_sends_packets_but_never_a_picture_is_a_stall(broker, collector, gateway, tmp_path):
    """No key frame in the stream (the IDR pictures cut out): the decoder never gives a picture while
    packets keep coming. The connection used to stay up for ever, never retried; it is a stall now,
    and the gateway reconnects (a new session makes most cameras send a key frame)."""
    clip = tmp_path / "nokey.ts"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25",
                    "-t", "8", "-c:v", "libx264", "-preset", "ultrafast", "-g", "50",
                    "-bsf:v", "filter_units=remove_types=5", "-f", "mpegts", str(clip)], check=True)
    stream = kg_e2e.PacedHttpStream(clip, clip.stat().st_size / 8)
    try:
        cam = kg_e2e.camera("nokey", f"http://127.0.0.1:{stream.port}/cam.ts", input={"timeout": "3s"})
        gw = gateway(kg_e2e.base_config(broker, [cam], tmp_path))
        state = collector.wait_for(lambda: (s := latest_state(collector, "nokey")) and s["reconnects_1h"] >= 1
                                   and s, 15, what="a reconnect")
        assert state["stalls_1h"] >= 1 and state["last_frame_time"] is None, state
        assert "packets but no picture" in state.get("last_error", ""), state
        gw.terminate()
    finally:
        stream.close()
    assert "packets but no picture for" in gw.output()


def test_a_camera_whose_video_stops_while_its_audio_goes_on_says_so(broker, collector, gateway, tmp_path):
    """A camera sends video for 2 s and its audio for 12 (MPEG-TS over HTTP, paced as sent): the stall
    is seen, and said as the video stopping. It was said as "packets but no picture (no key frame the
    decoder can start from?)", which sent an installer to the camera's GOP settings when its video
    encoder had stopped (the ingest review, over RTSP with PCMA audio)."""
    clip = tmp_path / "video-stops.ts"
    # Its bytes mostly audio, so that sending them evenly sends both in about real time.
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=160x90:rate=25",
                    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "12",
                    "-filter_complex", "[0:v]trim=duration=2[v]", "-map", "[v]", "-map", "1:a",
                    "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-b:v", "40k", "-pix_fmt", "yuv420p",
                    "-c:a", "mp2", "-b:a", "384k", "-t", "12", "-f", "mpegts", str(clip)], check=True)
    stream = kg_e2e.PacedHttpStream(clip, clip.stat().st_size / 12)
    try:
        cam = kg_e2e.camera("av", f"http://127.0.0.1:{stream.port}/cam.ts", input={"timeout": "3s"})
        gw = gateway(kg_e2e.base_config(broker, [cam], tmp_path))
        kg_e2e.wait_until(lambda: any(w in gw.output() for w in ("no video for", "packets but no picture",
                                                                 "no data for")), 20, what="the stall\n" + gw.output()[-3000:])
        gw.terminate()
    finally:
        stream.close()
    out = gw.output()
    assert "no video for 3000 ms, only the camera's other streams (its audio)" in out, out[-2000:]
    assert "packets but no picture" not in out


def test_an_rtsp_camera_over_udp_is_read_and_its_stall_is_seen_within_its_timeout(broker, collector, schemas,
                                                                                 make_clip, rtsp_server, gateway,
                                                                                 tmp_path):
    """RTP over UDP (input.transport: udp), from a real RTSP server: read, then the server frozen
    (SIGSTOP: no TEARDOWN, its TCP connection stays open, no RTP comes). FFmpeg's own UDP timeout
    fires a moment before the gateway's deadline and flushes its parser with a success code; that
    read was taken as data, and the stall was seen only one timeout later (6 s for a 3 s timeout,
    measured by a review). Back once the server runs again."""
    server = rtsp_server({"/cam": make_clip([("normal", 90)])})
    cam = kg_e2e.camera("udp", server.url("/cam"), input={"transport": "udp", "timeout": "3s"})
    gw = gateway(kg_e2e.base_config(broker, [cam], tmp_path))
    collector.wait_for(lambda: (s := frames_flowing(collector, "udp")) and s["fps_analysed"] >= 1, 20,
                       what="frames over RTP/UDP")
    frozen_at = time.monotonic()
    server.proc.send_signal(signal.SIGSTOP)
    try:
        kg_e2e.wait_until(lambda: "no data for 3000 ms" in gw.output(), 10, interval=0.05, what="the stall")
        seen_after = time.monotonic() - frozen_at
        collector.wait_for(lambda: (s := latest_state(collector, "udp")) and s["online"] is False, 10,
                           what="the camera offline")
    finally:
        server.proc.send_signal(signal.SIGCONT)
    # The timeout, plus the log's way out of the process; a second timeout (the fault) would be 6 s.
    assert seen_after < 4.8, f"the stall was seen {seen_after:.1f} s after the last packet"
    resumed_at = time.time()
    collector.wait_for(lambda: frames_flowing(collector, "udp", after=resumed_at), 30,
                       what="frames again once the server runs")
    schemas.validate_all(collector)


def test_rtp_packets_lost_over_udp_are_counted_and_said_with_the_remedy(broker, collector, schemas, make_clip,
                                                                      rtsp_server, gateway, tmp_path):
    """A network that loses RTP packets over UDP (the server numbers every packet and never sends one
    in 30, as a lossy link loses them). Only FFmpeg's log said so, and the gateway keeps only its
    errors: an installer saw smeared pictures and nothing counting why. The loss is counted in the
    camera's state and /metrics, and logged once (not once a packet, nor once a connection) with the
    remedy."""
    server = rtsp_server({"/cam": make_clip([("normal", 90)])}, drop_every=30)
    cam = kg_e2e.camera("lossy", server.url("/cam"), input={"transport": "udp"})
    gw = gateway(kg_e2e.base_config(broker, [cam], tmp_path))
    first = collector.wait_for(lambda: (s := frames_flowing(collector, "lossy")) and s["packets_lost"] >= 10 and s,
                               30, what="lost packets counted")
    # The camera restarted (a lossy link stalls now and then): its losses go on counting, and are
    # not said again at each connection (the review of the first version: 7 lines in 111 s).
    server.stop()
    server.start()
    restarted = time.time()
    state = collector.wait_for(
        lambda: (s := frames_flowing(collector, "lossy", after=restarted)) and s["packets_lost"] > first["packets_lost"]
        and s, 40, what="losses counted on the new connection")
    out = gw.output()
    assert out.count("[cam:lossy] connected to") >= 2, out[-3000:]
    said = re.findall(r"(\d+) RTP packets lost on the network", out)
    assert len(said) == 1 and int(said[0]) >= 1, out[-3000:]
    assert "RTP packets lost on the network since the camera was first read" in out
    assert "input.transport: tcp has them resent" in out
    with urllib.request.urlopen(f"http://127.0.0.1:{gw.api_port()}/metrics", timeout=10) as r:
        metrics = r.read().decode()
    lost = int(re.search(r'^kg_camera_packets_lost_total\{camera="lossy"\} (\d+)$', metrics, re.M).group(1))
    assert lost >= state["packets_lost"], metrics
    schemas.validate_all(collector)


class SlowAnswers(kg_e2e.Relay):
    """A relay to an RTSP server that holds each RTSP answer for `delay` seconds (the RTP it
    interleaves passes at once): a camera, or a link, slow to answer each step of the handshake."""

    def __init__(self, port, delay):
        self.delay = delay
        self.answers = 0
        super().__init__(port)

    def carry(self, client, server, n):
        def held(data):
            if data.startswith(b"RTSP/"):
                self.answers += 1
                time.sleep(self.delay)

        threading.Thread(target=self.pump, args=(client, server), daemon=True).start()
        threading.Thread(target=self.pump_held, args=(server, client, held), daemon=True).start()

    def pump_held(self, src, dst, before):
        try:
            while data := src.recv(65536):
                before(data)
                dst.sendall(data)
        except OSError:
            pass
        self.drop(src, dst)

    def url(self, mount="/cam"):
        return f"rtsp://127.0.0.1:{self.port}{mount}"


def test_a_camera_slow_to_answer_each_step_of_the_handshake_connects(broker, collector, make_clip, rtsp_server,
                                                                       gateway, tmp_path):
    """`input.timeout` bounds each answer, as FFmpeg's own `timeout` does, not the whole handshake:
    a camera that takes 1.4 s over each of OPTIONS, DESCRIBE, SETUP and PLAY (a loaded camera, a
    slow mobile link) connects with `timeout: 2s` (it never did: one deadline covered all four)."""
    server = rtsp_server({"/cam": make_clip([("normal", 90)])})
    slow = SlowAnswers(server.port, 1.4)
    try:
        gw = gateway(kg_e2e.base_config(broker, [kg_e2e.camera("slow", slow.url(), input={"timeout": "2s"})],
                                        tmp_path))
        state = collector.wait_for(lambda: frames_flowing(collector, "slow"), 30, what="frames from the slow camera")
        assert slow.answers >= 4, slow.answers
        assert state["reconnects_1h"] == 0, (state, gw.output())
        assert "no answer" not in gw.output(), gw.output()
    finally:
        slow.close()
