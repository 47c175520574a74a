"""The test peers by themselves, without the gateway: if one of these fails, the gateway's end-to-end
results mean nothing. Clips have the picture properties the health tests rely on, the RTSP server
serves H.264 in real time and survives kill/restart on its port, and serves H.265 copies of the
clips, the broker stops and restarts on its port with the collector following, the silent server
never answers, the schemas reject what breaks them (including bad date-times)."""

import json
import signal
import socket
import subprocess
import time

import cv2
import numpy as np
import pytest

import kg_e2e

SEGMENT = 3  # seconds per segment of the probe clip


def decode_grey(path):
    """Every frame, scaled to the analysis size (320x180) and converted to grey levels 0..255."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        small = cv2.resize(frame, (320, 180), interpolation=cv2.INTER_AREA)
        frames.append(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY).astype(np.float32))
    cap.release()
    return frames


def ffprobe(args):
    out = subprocess.run(["ffprobe", "-v", "error", "-of", "json", *args], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def probe_clip(tmp_path_factory):
    kinds = ["normal", "black", "frozen", "covered", "normal"]
    path = kg_e2e.make_clip([(k, SEGMENT) for k in kinds], tmp_path_factory.mktemp("probe") / "probe.mp4")
    frames = decode_grey(path)
    fps = 25
    # The frames of each segment, leaving out the first and last (transitions).
    segments = {}
    for i, kind in enumerate(kinds):
        segments.setdefault(kind, frames[i * SEGMENT * fps + 1:(i + 1) * SEGMENT * fps - 1])
    return path, frames, segments


def test_clip_format(probe_clip):
    path, frames, _ = probe_clip
    info = ffprobe(["-show_streams", "-show_format", path])
    video = info["streams"][0]
    assert (video["codec_name"], video["width"], video["height"], video["pix_fmt"]) == ("h264", 640, 360, "yuv420p")
    assert video["r_frame_rate"] == "25/1"
    assert len(info["streams"]) == 1  # no audio
    assert abs(float(info["format"]["duration"]) - 5 * SEGMENT) < 0.1
    assert len(frames) == 5 * SEGMENT * 25
    keys = ffprobe(["-select_streams", "v", "-skip_frame", "nokey", "-show_entries", "frame=pts", path])["frames"]
    assert [k["pts"] for k in keys] == [i * 50 * 512 for i in range(len(keys))], "GOP is not 50 frames"


def test_normal_frames_always_differ_like_a_sensor(probe_clip):
    normal = probe_clip[2]["normal"]
    diffs = [float(np.mean(np.abs(a - b))) for a, b in zip(normal, normal[1:])]
    assert min(diffs) > 2.0, diffs  # far above the gateway's frozen_diff (0.6)
    assert min(float(f.std()) for f in normal) > 40  # full of detail


def test_black_is_near_black_with_noise(probe_clip):
    black = probe_clip[2]["black"]
    assert max(float(f.mean()) for f in black) < 15
    assert any(float(np.mean(np.abs(a - b))) > 0 for a, b in zip(black, black[1:])), "no noise at all"


def test_frozen_frames_are_identical(probe_clip):
    frozen = probe_clip[2]["frozen"]
    assert all(np.array_equal(frozen[0], f) for f in frozen), "decoded frozen frames differ"
    assert float(frozen[0].std()) > 40  # the normal scene, not a blank one


def test_covered_is_dark_smooth_and_not_blank(probe_clip):
    covered, normal = probe_clip[2]["covered"], probe_clip[2]["normal"]
    means = [float(f.mean()) for f in covered]
    assert 35 <= min(means) and max(means) <= 70, (min(means), max(means))
    # Not uniform (that would be `blank`: stddev under 6), but without edges or detail.
    assert min(float(f.std()) for f in covered) > 10
    detail = max(float(cv2.Laplacian(f, cv2.CV_32F).var()) for f in covered)
    assert detail < 0.01 * min(float(cv2.Laplacian(f, cv2.CV_32F).var()) for f in normal), detail


def test_clips_are_cached(make_clip):
    first = make_clip([("normal", 1)])
    mtime = (kg_e2e.pathlib.Path(first).stat().st_mtime_ns)
    assert make_clip([("normal", 1)]) == first
    assert kg_e2e.pathlib.Path(first).stat().st_mtime_ns == mtime


def test_rtsp_server_serves_h264_in_real_time_and_restarts_on_its_port(rtsp_server, make_clip):
    clip = make_clip([("normal", 20)])
    server = rtsp_server({"/cam": clip, "/other": make_clip([("black", 20)])})
    for mount in ("/cam", "/other"):
        streams = ffprobe(["-rtsp_transport", "tcp", "-show_streams", server.url(mount)])["streams"]
        assert [(s["codec_name"], s["width"], s["height"]) for s in streams] == [("h264", 640, 360)]

    # Paced in real time: 75 frames (3 s at 25 fps) take about 3 s to arrive.
    t0 = time.time()
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-rtsp_transport", "tcp", "-i", server.url("/cam"),
                    "-frames:v", "75", "-f", "null", "-"], check=True, timeout=30)
    took = time.time() - t0
    assert 2.5 <= took <= 6, f"75 frames took {took:.1f}s"

    port = server.port
    server.kill()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    server.start()
    assert server.port == port
    streams = ffprobe(["-rtsp_transport", "tcp", "-show_streams", server.url("/cam")])["streams"]
    assert streams[0]["codec_name"] == "h264"


def test_hevc_copy_and_the_rtsp_server_serve_h265_as_cameras_send_it(rtsp_server, make_clip):
    """H.265 copies of the clips: same picture, a key frame every 50 frames, B-frames, tagged hvc1;
    the RTSP server serves them beside H.264 ones, choosing the payloader by the file's codec."""
    clip = make_clip([("normal", 6)])
    hevc = kg_e2e.hevc_copy(clip)
    video = ffprobe(["-show_streams", hevc])["streams"][0]
    assert (video["codec_name"], video["codec_tag_string"], video["width"], video["height"]) == (
        "hevc", "hvc1", 640, 360), video
    assert video["has_b_frames"] > 0 and video["r_frame_rate"] == "25/1", video
    keys = ffprobe(["-select_streams", "v", "-skip_frame", "nokey", "-show_entries", "frame=pts", hevc])["frames"]
    assert len(keys) == 3, keys  # frames 0, 50 and 100
    server = rtsp_server({"/hevc": hevc, "/avc": clip})
    for mount, codec in (("/hevc", "hevc"), ("/avc", "h264")):
        streams = ffprobe(["-rtsp_transport", "tcp", "-show_streams", server.url(mount)])["streams"]
        assert [(s["codec_name"], s["width"], s["height"]) for s in streams] == [(codec, 640, 360)], mount
    # Every frame of the H.265 stream decodes, from the first key frame on.
    r = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-rtsp_transport", "tcp", "-i", server.url("/hevc"),
                        "-frames:v", "60", "-f", "null", "-"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stderr == "", r.stderr


def test_rtsp_server_refuses_a_file_that_is_not_h264_or_h265(tmp_path):
    mpeg4 = tmp_path / "mpeg4.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc2=duration=1",
                    "-c:v", "mpeg4", str(mpeg4)], check=True)
    r = subprocess.run([kg_e2e.RTSP_SERVER_BIN, "--port", str(kg_e2e.free_port()), "--mount", f"/cam={mpeg4}"],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 2 and "READY" not in r.stdout, r
    assert "not H.264 or H.265" in r.stderr and "mpeg4.mp4" in r.stderr, r.stderr


def test_rtsp_server_stops_cleanly_with_a_client_playing(rtsp_server, make_clip):
    server = rtsp_server({"/cam": make_clip([("normal", 20)])})
    client = subprocess.Popen(["ffmpeg", "-nostdin", "-v", "error", "-rtsp_transport", "tcp", "-i", server.url("/cam"),
                               "-f", "null", "-"])
    try:
        time.sleep(2)
        assert client.poll() is None, "the client is not playing"
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(10) == 0
        client.wait(15)  # the client sees the end of the stream
    finally:
        client.kill()
        client.wait()


def test_rtsp_server_refuses_bad_arguments(tmp_path):
    for args in ([], ["--port", "1"], ["--port", "1", "--mount", "cam=x.mp4"],
                 ["--port", "1", "--mount", f"/cam={tmp_path}/missing.mp4"]):
        r = subprocess.run([kg_e2e.RTSP_SERVER_BIN, *args], capture_output=True, text=True, timeout=10)
        assert r.returncode == 2 and "READY" not in r.stdout, (args, r)


def test_broker_restarts_on_its_port_and_the_collector_follows(broker, collector):
    import paho.mqtt.publish as publish

    publish.single("kitchen/x/availability", "online", qos=1, retain=True, hostname="127.0.0.1", port=broker.port)
    collector.wait_for(lambda: collector.on("kitchen/x/availability"), 5, what="the message")
    assert kg_e2e.retained(broker, "kitchen/x/availability") == "online"
    assert kg_e2e.retained(broker, "kitchen/x/nothing") is None
    assert broker.clients_connected() >= 3  # the collector, the publisher, the retained reader: seen in its log
    port = broker.port
    collector.subscribed.clear()
    broker.stop()
    assert not broker.running()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    broker.start()
    assert broker.port == port
    assert collector.subscribed.wait(10), "the collector did not subscribe again"
    publish.single("kitchen/x/events", "{}", qos=1, hostname="127.0.0.1", port=broker.port)
    collector.wait_for(lambda: collector.on("kitchen/x/events"), 5, what="a message after the restart")
    assert kg_e2e.retained(broker, "kitchen/x/availability") is None  # persistence false
    broker.kill()
    assert not broker.running()


def test_silent_server_accepts_and_never_answers(silent_server):
    silent = silent_server()
    with socket.create_connection(("127.0.0.1", silent.port), timeout=2) as s:
        s.sendall(b"OPTIONS rtsp://127.0.0.1/cam RTSP/1.0\r\nCSeq: 1\r\n\r\n")
        s.settimeout(1.5)
        with pytest.raises(socket.timeout):
            s.recv(1)
    assert silent.accepted == 1


STATE = {"site": "test-site", "camera": "cam1", "name": "Cooking", "online": True, "fps_in": 25.0,
         "fps_analysed": 2.0, "frames_dropped": 0, "reconnects_1h": 1, "stalls_1h": 0, "breaks_1h": 0,
         "decode_errors": 0, "frames_damaged": 0, "packets_lost": 0, "check_errors": 0, "timestamp_jumps": 0, "failing_checks": [],
         "last_frame_time": "2026-11-24T06:30:00.480Z", "conditions": [], "time": "2026-11-24T06:30:00.500Z"}


def test_schemas_accept_the_documented_payloads_and_reject_broken_ones(schemas):
    topic = "kitchen/test-site/cameras/cam1/state"
    schemas.validate(topic, json.dumps(STATE).encode())
    schemas.validate("kitchen/test-site/availability", b"online")
    for broken in ({**STATE, "online": "yes"}, {**STATE, "extra": 1}, {**STATE, "time": "2026-11-24 06:30:00"},
                   {**STATE, "time": "2026-13-45T06:30:00.500Z"}, {**STATE, "last_frame_time": "yesterdayZ"}):
        assert schemas.errors(topic, json.dumps(broken).encode()), broken
    assert schemas.errors("kitchen/test-site/availability", b"maybe")
    assert schemas.errors(topic, b"not json")
    assert schemas.errors("kitchen/test-site/undocumented", b"{}")
    assert schemas.errors("kitchen/test-site/events/abc/snapshot", b"GIF89a")
