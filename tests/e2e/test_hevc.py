"""H.265 (HEVC) cameras end to end, as many canteen cameras (Hikvision, Dahua, Uniview) send by default:
the real RTSP server serving H.265 copies of the tests' clips, the real gateway, a real broker. The
camera is analysed and raises its hygiene event with the evidence cut from its own packets (an MP4
tagged hvc1, which Apple players need); its public HLS is H.265 tagged hvc1 in a valid playlist;
HTTP-FLV and RTMP, which carry H.264 only, are refused with a reason instead of a stream that never
starts, while an H.264 camera beside it keeps them; a privacy-masked H.265 camera is re-encoded to
H.264 and has them all; and the parents' page tells a browser that cannot play H.265 so, instead of
showing a black player."""

import http.client
import json
import re
import subprocess
import time

import pytest

import kg_e2e
from kg_e2e import parse_time

FLOOR = [[0, 0.6], [1, 0.6], [1, 1], [0, 1]]
STATE = "kitchen/test-site/cameras/{}/state"


def get(port, path, method="GET", timeout=10):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request(method, path)
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, r.getheader("Content-Type"), body


def ffprobe(target, entries, *extra):
    r = subprocess.run(["ffprobe", "-v", "error", "-rw_timeout", "10000000", *extra, "-show_entries", entries,
                        "-of", "json", str(target)], capture_output=True, text=True, timeout=40)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def decode_errors(target, *extra):
    """What FFmpeg says decoding all of `target` (nothing when every frame decodes cleanly)."""
    r = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-rw_timeout", "10000000", "-i", str(target), *extra,
                        "-f", "null", "-"], capture_output=True, text=True, timeout=60)
    return r.stderr.strip() if r.returncode == 0 else f"exit {r.returncode}: {r.stderr}"


def camera_clip(make_clip):
    """The H.264 clip behind the RTSP cameras of the public-side tests (its H.265 copy beside it). Each
    test's RTSP server plays it from the start to each client, and no test keeps its gateway for more
    than about 22 s on a loaded 2-core box: 40 s outlasts them all, and encoding its H.265 copy costs 2/3
    of what the 60 s it was did."""
    return make_clip([("normal", 40)])


def public_port(gw):
    return int(kg_e2e.wait_until(lambda: re.search(r"public side on \S+ \(port (\d+)\)", gw.output()), 10,
                                 what="the public side").group(1))


def public_config(broker, tmp_path, cams, **public):
    config = kg_e2e.base_config(broker, cams, tmp_path)
    config["public"] = {"listen": "127.0.0.1:0", "hls_dir": str(tmp_path / "hls"), "segment": "1s", **public}
    return config


def sample_entry(init):
    """The video sample entry's type in an MP4 init segment (b"hvc1", b"hev1", b"avc1"...)."""
    for tag in (b"hvc1", b"hev1", b"avc1", b"avc3"):
        # A sample entry is a box: its size (4 bytes) then its type; the codec's config box follows.
        at = init.find(tag)
        if at >= 4 and init.find(b"hvcC" if tag.startswith(b"h") else b"avcC", at) > at:
            return tag
    return None


def check_playlist(port, camera, tmp_path, fps=25):
    """A live fMP4 media playlist as RFC 8216 asks: header, version, target duration, one map, each
    segment's EXTINF within the target and equal to what its media lasts (its frames at `fps`).
    Returns the init segment and the segments' bytes."""
    status, ctype, body = get(port, f"/live/{camera}/index.m3u8")
    assert status == 200 and ctype == "application/vnd.apple.mpegurl", (status, ctype)
    lines = body.decode().splitlines()
    assert lines[0] == "#EXTM3U", lines
    tags = {line.split(":", 1)[0]: line.split(":", 1)[1] for line in lines if line.startswith("#EXT-X-") and ":" in line}
    assert int(tags["#EXT-X-VERSION"]) >= 6, tags  # EXT-X-MAP in a media playlist needs version 6
    target = int(tags["#EXT-X-TARGETDURATION"])
    int(tags["#EXT-X-MEDIA-SEQUENCE"])
    assert "#EXT-X-ENDLIST" not in lines  # live
    maps = [line for line in lines if line.startswith("#EXT-X-MAP:")]
    assert len(maps) == 1 and lines.index(maps[0]) < next(i for i, l in enumerate(lines) if l.startswith("#EXTINF")), lines
    init_name = re.search(r'URI="([^"]+)"', maps[0]).group(1)
    status, ctype, init = get(port, f"/live/{camera}/{init_name}")
    assert status == 200 and ctype == "video/mp4" and init[4:8] == b"ftyp", (status, ctype, init[:16])
    segments = []
    for i, line in enumerate(lines):
        if not line.startswith("#EXTINF:"):
            continue
        extinf = float(line[8:].split(",")[0])
        uri = lines[i + 1]
        assert uri and not uri.startswith("#"), (line, uri)
        assert round(extinf) <= target, (extinf, target)  # RFC 8216 4.3.3.1
        status, ctype, data = get(port, f"/live/{camera}/{uri}")
        if status == 404:
            continue  # slid out of the window since the playlist was read
        assert status == 200 and ctype == "video/mp4" and data[4:8] == b"styp", (uri, status, ctype)
        media = tmp_path / f"{camera}-{uri}.mp4"
        media.write_bytes(init + data)
        frames = int(ffprobe(media, "stream=nb_read_packets", "-count_packets")["streams"][0]["nb_read_packets"])
        assert abs(frames / fps - extinf) < 0.05, (uri, extinf, frames)
        segments.append(data)
    assert len(segments) >= 2, lines
    return init, segments


def test_an_h265_camera_is_analysed_and_its_event_evidence_is_its_own_hvc1(broker, collector, schemas, rtsp_server,
                                                                         gateway, tmp_path):
    # Litter on a clean floor from 10 s to 24 s (as in test_scenes), sent by the camera as H.265.
    litter = {"w": 80, "h": 40, "colour": "0x181818", "x": "300", "y": "270", "enable": "between(t,10,24)"}
    scene = kg_e2e.make_scene(tmp_path / "floor.mp4", 32, boxes=[kg_e2e.walker(1, 7), litter])
    server = rtsp_server({"/floor": kg_e2e.hevc_copy(scene)})
    quick = {"confirm": "4s", "clear": "2s", "cooldown": "0s", "median_window": 1}
    cam = kg_e2e.camera("floor", server.url("/floor"), analysis={"fps": 4, "width": 320, "height": 180},
                        checks=["cleanliness"], zones={"floor": {"polygon": FLOOR, "checks": ["cleanliness"]}},
                        rules={"cleanliness": quick})
    config = kg_e2e.base_config(broker, [cam], tmp_path, evidence={"clip_pre": "2s", "clip_post": "3s"})
    config["training_frames"] = {"path": str(tmp_path / "training"), "every": "2s", "min_free": "32MiB"}
    gw = gateway(config)

    # Online, decoding the camera's 25 fps in real time and analysing at 4 fps.
    kg_e2e.wait_until(lambda: "[cam:floor] connected to" in gw.output(), 15, what="the camera's connection")
    assert re.search(r"\[cam:floor\] connected to \S+: hevc 640x360 25\.0fps", gw.output()), gw.output()
    time.sleep(10)  # a full 10 s rate window
    state = collector.last_json(STATE.format("floor"))
    assert state["online"] is True and state["decode_errors"] == 0 and state["stalls_1h"] == 0, state
    assert 15 <= state["fps_in"] <= 35 and 3 <= state["fps_analysed"] <= 5, state
    assert parse_time(state["time"]) - parse_time(state["last_frame_time"]) < 2, state

    # The litter is one cleanliness event, published with its snapshot and then its clip.
    def report():
        events = [e for e in collector.events() if e["camera"] == "floor"]
        starts = [e for e in events if e["state"] == "start"]
        return starts and collector.json_on(f"kitchen/test-site/events/{starts[0]['id']}/clip") and events[-1]["state"] == "end"

    kg_e2e.wait_until(report, 40, what="the event's clip report and its end")
    assert gw.terminate() == 0
    events = [e for e in collector.events() if e["camera"] == "floor"]
    assert [(e["state"], e["check"], e["label"], e["zone"]) for e in events] == [
        ("start", "cleanliness", "dirty", "floor"), ("end", "cleanliness", "dirty", "floor")], events
    start = events[0]
    assert start["boxes"] and not start["evidence"]["errors"], start
    assert collector.on(f"kitchen/test-site/events/{start['id']}/snapshot")[0][1][:2] == b"\xff\xd8"
    snapshot = tmp_path / "evidence" / start["evidence"]["snapshot"]  # the analysed picture, annotated
    assert ffprobe(snapshot, "stream=codec_name,width,height")["streams"][0] == {
        "codec_name": "mjpeg", "width": 320, "height": 180}

    # The clip: the camera's own H.265 (640x360, not re-encoded), tagged hvc1, every frame decodable
    # from its first key frame, as long as its report says: clip_pre + confirm + clip_post, plus up to
    # a GOP (2 s) back to the key frame before.
    clip_report = collector.json_on(f"kitchen/test-site/events/{start['id']}/clip")[0]
    assert "error" not in clip_report and clip_report["path"] == start["evidence"]["clip"], clip_report
    clip = tmp_path / "evidence" / clip_report["path"]
    info = ffprobe(clip, "stream=codec_name,codec_tag_string,width,height,nb_frames:format=duration")
    video = info["streams"][0]
    assert (video["codec_name"], video["width"], video["height"]) == ("hevc", 640, 360), video
    assert video["codec_tag_string"] == "hvc1", video  # Apple's players refuse hev1 in MP4
    duration = float(info["format"]["duration"])
    assert abs(duration - clip_report["duration_s"]) < 0.1, (duration, clip_report)
    assert 8.5 <= duration <= 11.5, duration
    # Its frames fill that time, give or take the B-frames' reordering at its ends (its first picture
    # is shown a few frames after its first decoding time, and the B-frames shown just before its
    # last frame come after the cut in decoding order), and every one of them decodes.
    assert abs(int(video["nb_frames"]) / 25 - duration) <= 0.25, (video, duration)
    assert decode_errors(clip) == ""
    decoded = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(clip), "-f", "framemd5", "-"],
                             capture_output=True, text=True, timeout=60).stdout
    assert len([line for line in decoded.splitlines() if not line.startswith("#")]) == int(video["nb_frames"])
    assert clip_report["bytes"] == clip.stat().st_size

    # Training frames: decoded pictures at the analysis size, as from an H.264 camera.
    frames = sorted((tmp_path / "training" / "floor" / "images").glob("*.jpg"))
    assert len(frames) >= 5, frames
    frame = ffprobe(frames[-1], "stream=codec_name,width,height")["streams"][0]
    assert (frame["width"], frame["height"]) == (320, 180), frame
    schemas.validate_all(collector)


def test_the_public_side_of_an_h265_camera(broker, collector, make_clip, rtsp_server, gateway, tmp_path):
    clip = camera_clip(make_clip)
    server = rtsp_server({"/hevc": kg_e2e.hevc_copy(clip), "/avc": clip})
    left_half = [[[0, 0], [0.5, 0], [0.5, 1], [0, 1]]]
    cams = [kg_e2e.camera("hevc", server.url("/hevc"), public=True),
            kg_e2e.camera("avc", server.url("/avc"), public=True),
            kg_e2e.camera("masked", server.url("/hevc"), public=True, privacy_masks=left_half)]
    gw = gateway(public_config(broker, tmp_path, cams, privacy={"width": 320, "fps": 5}))
    port = public_port(gw)
    for cam in ("hevc", "avc", "masked"):
        kg_e2e.wait_until(lambda: (r := get(port, f"/live/{cam}/index.m3u8"))[0] == 200 and r[2].count(b".m4s") >= 3,
                          25, what=f"three segments of {cam}")

    # HLS of the H.265 camera: its own packets, in a valid live playlist, tagged hvc1 (Safari and
    # iPhones, which most parents hold, refuse hev1), decoding cleanly.
    init, segments = check_playlist(port, "hevc", tmp_path)
    assert sample_entry(init) == b"hvc1", init[:400]
    hls = ffprobe(f"http://127.0.0.1:{port}/live/hevc/index.m3u8", "stream=codec_name,codec_tag_string,width,height")
    assert hls["streams"][0] == {"codec_name": "hevc", "codec_tag_string": "hvc1", "width": 640, "height": 360}, hls
    assert decode_errors(f"http://127.0.0.1:{port}/live/hevc/index.m3u8", "-t", "3") == ""

    # HTTP-FLV carries H.264 only: the H.265 camera's is refused at once with the reason and where to
    # look instead (before, 503 "starting" forever: players retried a stream that could never come),
    # HEAD alike; /public/status says so. The H.264 camera beside it keeps its FLV.
    for method in ("GET", "HEAD"):
        status, ctype, body = get(port, "/live/hevc.flv", method=method)
        assert status == 415, (method, status, body)
        if method == "GET":
            assert b"H.265" in body and b"H.264" in body and b"/live/hevc/index.m3u8" in body, body
    cameras = {c["id"]: c for c in json.loads(get(port, "/public/status")[2])["cameras"]}
    assert cameras["hevc"]["flv"] is False and cameras["hevc"]["live"] is True, cameras
    assert cameras["avc"]["flv"] is True and cameras["masked"]["flv"] is True, cameras
    flv = ffprobe(f"http://127.0.0.1:{port}/live/avc.flv", "stream=codec_name,width")
    assert flv["streams"][0] == {"codec_name": "h264", "width": 640}, flv
    assert sample_entry(check_playlist(port, "avc", tmp_path)[0]) == b"avc1"

    # A privacy-masked H.265 camera is decoded and re-encoded to H.264: every output works.
    for url in (f"http://127.0.0.1:{port}/live/masked/index.m3u8", f"http://127.0.0.1:{port}/live/masked.flv"):
        streams = ffprobe(url, "stream=codec_name,width,height")["streams"]
        assert streams[0] == {"codec_name": "h264", "width": 320, "height": 180}, (url, streams)

    output = gw.output()
    assert len(re.findall(r"\[public:hevc\].*HTTP-FLV", output)) == 1, output  # said once, not per viewer
    assert not re.search(r"\[public:(avc|masked)\].*HTTP-FLV", output), output
    assert "mux error" not in output and "write failed" not in output
    assert gw.terminate() == 0


@pytest.mark.skipif(not kg_e2e.has_nginx_rtmp(),
                    reason="nginx with the RTMP module is not installed (nginx-light, libnginx-mod-rtmp)")
def test_rtmp_push_of_an_h265_camera_is_refused_once_with_the_reason(broker, make_clip, rtsp_server, gateway, tmp_path):
    """RTMP (FLV) carries H.264 only in standard players and media servers. Before, the gateway
    connected to the media server every key frame, failed its handshake ("Function not implemented")
    and tried again, forever, while the H.264 camera beside it pushed fine."""
    nginx = kg_e2e.NginxRtmp(tmp_path)
    try:
        clip = camera_clip(make_clip)
        server = rtsp_server({"/hevc": kg_e2e.hevc_copy(clip), "/avc": clip})
        cams = [kg_e2e.camera("hevc", server.url("/hevc"), public=True),
                kg_e2e.camera("avc", server.url("/avc"), public=True)]
        gw = gateway(public_config(broker, tmp_path, cams, rtmp_push=nginx.url("live/{camera}")))
        kg_e2e.wait_until(lambda: re.search(r"\[public:avc\] RTMP push to \S+: connected", gw.output()), 15,
                          what="the H.264 camera's push to connect")
        streams = ffprobe(nginx.url("live/avc"), "stream=codec_name,width")["streams"]
        assert streams[0] == {"codec_name": "h264", "width": 640}, streams
        kg_e2e.wait_until(lambda: re.search(r"\[public:hevc\] .*RTMP push.*H\.265", gw.output()), 15,
                          what="the H.265 camera's push refused")
        time.sleep(6)  # three of the H.265 camera's key frames: it is not tried again
        output = gw.output()
        refusals = re.findall(r"\[public:hevc\] .*RTMP push.*", output)
        assert len(refusals) == 1 and "H.265" in refusals[0] and "H.264" in refusals[0], refusals
        assert "handshake failed" not in output, output
        nginx_log = nginx.log_text()
        assert "name='hevc'" not in nginx_log and "name='avc'" in nginx_log, nginx_log[-3000:]
        metrics = get(gw.api_port(), "/metrics")[2].decode()
        assert 'kg_public_rtmp_connected{camera="hevc"} 0' in metrics and \
            'kg_public_rtmp_connected{camera="avc"} 1' in metrics, metrics
        assert gw.terminate() == 0
    finally:
        nginx.kill()


def test_the_parents_page_says_when_the_browser_cannot_play_h265(broker, make_clip, rtsp_server, gateway, browser,
                                                                 tmp_path):
    """Chromium on Linux has no H.265 decoder (MediaSource.isTypeSupported says no). Before, the page
    handed the playlist to the <video> element, which showed a black player and no reason; now the
    camera's card says the browser cannot play H.265, as go2rtc and Frigate do, and the H.264 camera
    beside it plays."""
    clip = camera_clip(make_clip)
    server = rtsp_server({"/hevc": kg_e2e.hevc_copy(clip), "/avc": clip})
    cams = [kg_e2e.camera("hevc", server.url("/hevc"), public=True, name="Cooking"),
            kg_e2e.camera("avc", server.url("/avc"), public=True, name="Serving")]
    gw = gateway(public_config(broker, tmp_path, cams))
    port = public_port(gw)
    for cam in ("hevc", "avc"):
        kg_e2e.wait_until(lambda: get(port, f"/live/{cam}/index.m3u8")[2].count(b".m4s") >= 2, 25,
                          what=f"the first segments of {cam}")
    hevc_level = ffprobe(f"http://127.0.0.1:{port}/live/hevc/index.m3u8", "stream=level")["streams"][0]["level"]

    browser.get(f"http://127.0.0.1:{port}/")
    card = "document.querySelector('[data-camera=\"{}\"]')"
    kg_e2e.wait_until(lambda: browser.execute_script(f"return {card.format('hevc')} !== null"), 15,
                      what="the camera cards")
    # The H.264 camera plays: the page works in this browser.
    video = card.format("avc") + ".querySelector('video')"
    first = kg_e2e.wait_until(lambda: (t := browser.execute_script(f"return {video}.currentTime")) > 0.5 and t, 30,
                              interval=0.5, what="the H.264 camera to play")
    # The H.265 camera's card says why it does not.
    message = card.format("hevc") + ".querySelector('.msg').textContent"
    text = kg_e2e.wait_until(lambda: browser.execute_script(f"return {message}"), 15, interval=0.5,
                             what="a message on the H.265 camera's card")
    assert "H.265" in text, text
    # The codec it asked the browser about is this stream's (its profile and level, from the init
    # segment's hvcC), not a fixed guess.
    init = re.search(r'URI="([^"]+)"', get(port, "/live/hevc/index.m3u8")[2].decode()).group(1)
    codec = browser.execute_script(
        "return fetch(arguments[0]).then(r => r.arrayBuffer()).then(b => LivePlayer.codecOf(b))", f"/live/hevc/{init}")
    assert re.fullmatch(rf"hvc1\.1\.6\.L{hevc_level}\.[0-9A-F]{{2}}(\.[0-9A-F]{{2}})*", codec), (codec, hevc_level)
    assert browser.execute_script(f"return MediaSource.isTypeSupported('video/mp4; codecs=\"{codec}\"')") is False
    assert browser.execute_script(f"return {card.format('hevc')}.querySelector('video').error") is None
    kg_e2e.wait_until(lambda: browser.execute_script(f"return {video}.currentTime") - first > 1.5, 15,
                      interval=0.5, what=f"the H.264 camera to play on from {first:.1f}s")
    shot = tmp_path / "parents-page-hevc.png"
    browser.save_screenshot(str(shot))
    print(f"screenshot: {shot}")
    assert gw.terminate() == 0
