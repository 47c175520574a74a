"""The public side (parents): the page, the status summary, live HLS (fMP4) and HTTP-FLV remuxed
from a public camera's own packets and read back by FFmpeg, RTMP push to a real nginx-rtmp media
server, privacy masks, public hours, viewer caps (HEAD included), signed viewer tokens, config reload, a
camera clock that jumps or steps back, and abuse (path traversal, oversized headers, slowloris, more
connections than the process may open files) refused while the others keep being served."""

import datetime
import http.client
import json
import os
import re
import socket
import subprocess
import threading
import time

import numpy as np
import pytest
import yaml

import kg_e2e


def get(port, path, headers=None, method="GET", timeout=10):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request(method, path, headers=headers or {})
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, r.getheader("Content-Type"), body


def public_port(gw, after=0):
    """The public side's port from the log (the last one announced after `after` characters)."""
    found = kg_e2e.wait_until(lambda: re.findall(r"public side on \S+ \(port (\d+)\)", gw.output()[after:]), 10,
                              what="the public side")
    return int(found[-1])


def watch(port, camera, query, method="GET", headers=None):
    """(status, body) of what a player does to start watching: the playlist, then its first media
    segment (a session counts as a viewer from its first segment, not from the playlist or the init
    file); the playlist's answer when that is a refusal."""
    status, _, body = get(port, f"/live/{camera}/index.m3u8{query}", headers=headers)
    if status != 200:
        return status, body
    segment = next((line for line in body.decode().splitlines() if ".m4s?" in line), None)
    assert segment, body
    status, _, body = get(port, f"/live/{camera}/{segment}", method=method, headers=headers)
    return status, body


def public_config(broker, tmp_path, cams, **public):
    config = kg_e2e.base_config(broker, cams, tmp_path)
    config["public"] = {"listen": "127.0.0.1:0", "hls_dir": str(tmp_path / "hls"), "segment": "1s", **public}
    return config


def public_clip(clips, seconds=20):
    """The normal scene with a key frame every second: HLS segments are cut at key frames, so the
    1 s segments configured here are 1 s long and a playlist names its first two within about 2 s
    (4 s at the clips' usual GOP of 2 s)."""
    return clips("public", [("normal", seconds)], gop=25)


def playlist_with_segments(port, camera, query="", count=2, timeout=20):
    return kg_e2e.wait_until(
        lambda: (r := get(port, f"/live/{camera}/index.m3u8{query}"))[0] == 200 and r[2].count(b".m4s") >= count
        and r[2].decode(), timeout, what=f"a playlist of {camera} with segments")


def first_sequence(playlist):
    """The media sequence number a playlist starts at: the gateway's first segment's number in the
    first playlist it serves (numbers start from the clock, to keep rising across restarts)."""
    return int(re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", playlist).group(1))


def probe(url, entries="stream=codec_name,width,height"):
    # FLV, HLS and RTMP may add streams later (no stream list in their header), so FFmpeg reads a live
    # one for its whole analyzeduration (5 s by default) before answering. The video stream's codec,
    # size and B-frame reordering are in the first key frame's SPS: one second of stream is plenty.
    r = subprocess.run(["ffprobe", "-v", "error", "-rw_timeout", "10000000", "-analyzeduration", "1000000",
                        "-show_entries", entries, "-of", "json", url], capture_output=True, text=True, timeout=40)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["streams"]


def record_flv(port, path, seconds, camera="kitchen"):
    """An FFmpeg viewer of a camera's HTTP-FLV, started now, copying `seconds` of it into `path`."""
    return subprocess.Popen(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-rw_timeout", "10000000", "-i",
                             f"http://127.0.0.1:{port}/live/{camera}.flv", "-t", str(seconds), "-c", "copy", str(path)])


def recorded_seconds(recorder, path):
    """How long the recording of a record_flv viewer is, once it ended well."""
    assert recorder.wait(40) == 0, f"the FFmpeg viewer failed with {recorder.returncode}"
    return float(subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
                                 str(path)], capture_output=True, text=True).stdout)


def bframes_clip(path):
    """H.264 High with B-frames (as most IP cameras send): over RTSP its first packets, the first key
    frame included, have no decoding time, which muxers refuse."""
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc2=size=640x360:rate=25", "-t", "20", "-c:v", "libx264", "-preset", "veryfast",
                    "-bf", "2", "-g", "50", "-pix_fmt", "yuv420p", str(path)], check=True)
    return str(path)


def test_hls_flv_status_and_abuse(broker, clips, rtsp_server, gateways, tmp_path):
    clip = public_clip(clips)
    server = rtsp_server({"/cam": bframes_clip(tmp_path / "bframes.mp4")})
    cams = [kg_e2e.camera("kitchen", clip, input={"loop": True}, public=True, name="Cooking area"),
            kg_e2e.camera("storage", clip, input={"loop": True}),
            kg_e2e.camera("ipcam", server.url("/cam"), public=True)]
    gw = gateways(public_config(broker, tmp_path, cams, header_timeout="2s"))
    port = public_port(gw)

    status, ctype, page = get(port, "/")
    assert status == 200 and ctype.startswith("text/html") and b"/public/status" in page and b"MediaSource" in page

    playlist = playlist_with_segments(port, "kitchen")
    init = re.search(r'#EXT-X-MAP:URI="([^"]+)"', playlist).group(1)
    # Names drawn for this run of the gateway (a restart never hands out a name again): short ones.
    assert re.fullmatch(r"[0-9a-z]{6}g1-init\.mp4", init), init
    segment = [line for line in playlist.splitlines() if line.endswith(".m4s")][0]
    status, ctype, data = get(port, f"/live/kitchen/{init}")
    assert status == 200 and ctype == "video/mp4" and data[4:8] == b"ftyp"
    status, ctype, data = get(port, f"/live/kitchen/{segment}")
    assert status == 200 and ctype == "video/mp4" and data[4:8] == b"styp" and b"moof" in data and b"mdat" in data

    # Segments come from one shared copy, on a kept-alive connection like a player's.
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for path in [f"/live/kitchen/{init}", f"/live/kitchen/{segment}", "/live/kitchen/index.m3u8",
                 f"/live/kitchen/{segment}"]:
        conn.request("GET", path)
        r = conn.getresponse()
        body = r.read()
        assert r.status == 200 and len(body) == int(r.getheader("Content-Length")), path
    # HEAD, which the docs allow: the head alone, with the length a GET's body has (it used to be 404
    # on the streams, and a plain response sent its body too).
    for path, ctype in [(f"/live/kitchen/{segment}", "video/mp4"), ("/live/kitchen/index.m3u8", None),
                        ("/", "text/html"), ("/live/kitchen.flv", "video/x-flv")]:
        conn.request("HEAD", path)
        r = conn.getresponse()
        assert r.status == 200 and r.read() == b"", path
        assert ctype is None or r.getheader("Content-Type").startswith(ctype), (path, r.getheaders())
        if path.endswith(".m4s"):
            assert int(r.getheader("Content-Length")) == len(get(port, path)[2]), path
    conn.close()

    # HTTP-FLV is a long-lived stream: six seconds of it, recorded by FFmpeg (while the probes below
    # run, each a viewer of its own), hold six seconds of video.
    recorded = tmp_path / "recorded.flv"
    recorder = record_flv(port, recorded, 6)
    try:
        # FFmpeg reads both live streams from the gateway: the camera's own H.264, not re-encoded.
        hls = probe(f"http://127.0.0.1:{port}/live/kitchen/index.m3u8")
        assert hls[0]["codec_name"] == "h264" and hls[0]["width"] == 640, hls
        flv = probe(f"http://127.0.0.1:{port}/live/kitchen.flv")
        assert flv[0]["codec_name"] == "h264" and flv[0]["width"] == 640, flv
        # The same from a real RTSP camera sending B-frames.
        playlist_with_segments(port, "ipcam")
        for url in [f"http://127.0.0.1:{port}/live/ipcam/index.m3u8", f"http://127.0.0.1:{port}/live/ipcam.flv"]:
            streams = probe(url, "stream=codec_name,width,has_b_frames")
            assert streams[0]["codec_name"] == "h264" and streams[0]["has_b_frames"] > 0, (url, streams)
        duration = recorded_seconds(recorder, recorded)
        assert duration >= 5.5, duration
    finally:
        if recorder.poll() is None:
            recorder.kill()
    assert "mux error" not in gw.output() and "write failed" not in gw.output()

    status_json = json.loads(get(port, "/public/status")[2])
    assert [c["id"] for c in status_json["cameras"]] == ["kitchen", "ipcam"]
    assert status_json["site"] == "Test canteen" and status_json["open"] is True
    assert status_json["cameras"][0]["online"] is True and status_json["cameras"][0]["live"] is True

    # A private camera, the local API and anything outside the streams do not exist here.
    for path in ["/live/storage/index.m3u8", "/live/storage.flv", "/live/nope/index.m3u8", "/live/nope.flv",
                 "/live/kitchen/../../gateway.yaml", "/live/kitchen/%2e%2e/index.m3u8", "/live/kitchen/index.m3u8/..",
                 f"/live/kitchen/{init}/../../../etc/passwd", "/../../etc/passwd", "/api/cameras", "/metrics",
                 "/healthz", "/live/kitchen/outbox.db"]:
        assert get(port, path)[0] == 404, path
    assert get(port, "/public/status", method="POST")[0] == 405

    # Oversized headers are refused with 431, with CORS as every refusal here: a parents' app on
    # another origin reads the status, not a network failure (the server's own answer had none).
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/", headers={"X-Big": "a" * 9000})
    big = conn.getresponse()
    assert big.status == 431 and big.getheader("Access-Control-Allow-Origin") == "*", big.getheaders()
    conn.close()

    # Slowloris: a client trickling its headers is cut off at header_timeout (2 s here) while the
    # others are served meanwhile.
    slow = socket.create_connection(("127.0.0.1", port))
    slow.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
    began = time.monotonic()
    closed = False
    while time.monotonic() - began < 8:
        assert get(port, "/public/status")[0] == 200
        try:
            slow.sendall(b"X-Slow: 1\r\n")
            slow.settimeout(0.5)
            if slow.recv(1024) == b"":
                closed = True
                break
        except socket.timeout:
            continue
        except OSError:
            closed = True
            break
    slow.close()
    assert closed and time.monotonic() - began < 6, "the slow client was not cut off"

    # Still serving after all that.
    assert get(port, "/live/kitchen/index.m3u8")[0] == 200
    assert gw.terminate() == 0


def test_viewer_caps_tokens_and_metrics(broker, clips, gateways, tmp_path):
    clip = public_clip(clips)
    cams = [kg_e2e.camera("kitchen", clip, input={"loop": True}, public=True),
            kg_e2e.camera("hall", clip, input={"loop": True}, public=True)]
    secret = "0123456789abcdef0123456789abcdef"
    # This test's requests come straight from 127.0.0.1 (no X-Forwarded-For): the proxy's own.
    config = public_config(broker, tmp_path, cams, max_viewers_per_camera=2, max_viewers_per_address=3,
                           token_secret=secret, trusted_proxies=["127.0.0.1"])
    config["api"]["token"] = "test-api-token"
    gw = gateways(config)
    port = public_port(gw)

    def token(camera, ttl=600):
        r = subprocess.run([kg_e2e.GATEWAY_BIN, "--config", str(gw.config_path), "--make-token", camera, "--ttl",
                            str(ttl)], capture_output=True, text=True, timeout=10)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    good = token("kitchen")
    # A misspelt id, or a camera that is not public: no token that would open nothing.
    wrong = subprocess.run([kg_e2e.GATEWAY_BIN, "--config", str(gw.config_path), "--make-token", "kitchn"],
                           capture_output=True, text=True, timeout=10)
    assert wrong.returncode == 2 and not wrong.stdout, wrong
    assert "'kitchn' is not a public camera of this configuration (public: kitchen, hall" in wrong.stderr, wrong.stderr
    # Tokens: none, malformed, forged, for another camera, expired: all refused with a reason.
    assert get(port, "/live/kitchen/index.m3u8")[0] == 403
    assert get(port, "/live/kitchen.flv")[0] == 403
    status, _, body = get(port, "/live/kitchen/index.m3u8?token=nonsense")
    assert status == 403 and b"malformed" in body
    forged = good[:-1] + ("0" if good[-1] != "0" else "1")
    status, _, body = get(port, f"/live/kitchen/index.m3u8?token={forged}")
    assert status == 403 and b"signature" in body
    assert get(port, f"/live/hall/index.m3u8?token={good}")[0] == 403
    expired = subprocess.run(  # signed with the right secret, an hour in the past
        ["python3", "-c", "import hmac,hashlib,sys,time; e=int(time.time())-3600; "
         "print(f'{e}.' + hmac.new(sys.argv[1].encode(), f'kitchen:{e}'.encode(), hashlib.sha256).hexdigest())",
         secret], capture_output=True, text=True).stdout.strip()
    status, _, body = get(port, f"/live/kitchen/index.m3u8?token={expired}")
    assert status == 403 and b"expired" in body

    # A good token: the playlist hands it on to the init segment and the segments.
    playlist = playlist_with_segments(port, "kitchen", f"?token={good}&sid=a")
    assert re.search(rf'#EXT-X-MAP:URI="[0-9a-z]{{6}}g1-init\.mp4\?sid=a&token={good}"', playlist), playlist
    segment = [line for line in playlist.splitlines() if ".m4s?" in line][0]
    assert get(port, f"/live/kitchen/{segment}")[0] == 200
    # A site-wide token ("*") opens every public camera.
    site = token("*")
    playlist_with_segments(port, "hall", f"?token={site}&sid=h")
    assert watch(port, "hall", f"?token={site}&sid=h")[0] == 200

    # Sessions that only ask for the playlist, the init file or made-up segments are not viewers:
    # made-up session ids held every place.
    init = re.search(r'#EXT-X-MAP:URI="([^"?]+)', playlist).group(1)
    for fake in range(6):
        assert get(port, f"/live/kitchen/index.m3u8?token={good}&sid=fake{fake}")[0] == 200
        assert get(port, f"/live/kitchen/{init}?token={good}&sid=fake{fake}")[0] == 200
        assert get(port, f"/live/kitchen/{init[:8]}-9{fake:04d}.m4s?token={good}&sid=fake{fake}")[0] == 404
    # Viewer caps: 2 per camera. Sessions a and b watch; c is refused; a and b keep watching.
    assert watch(port, "kitchen", f"?token={good}&sid=b")[0] == 200
    status, body = watch(port, "kitchen", f"?token={good}&sid=c")
    assert status == 503 and b"too many viewers" in body
    assert watch(port, "kitchen", f"?token={good}&sid=a")[0] == 200
    # 3 per address: a, b and h are this address's three; a fourth on another camera is refused (429).
    status, body = watch(port, "hall", f"?token={site}&sid=z")
    assert status == 429 and b"your address" in body
    # Parents behind a trusted proxy (a TLS front, a CDN node) are counted each by the address it
    # forwards, not all as the proxy's.
    status, body = watch(port, "hall", f"?token={site}&sid=z", headers={"X-Forwarded-For": "203.0.113.7"})
    assert status == 200, body
    # ... and so is an FLV viewer over the camera cap.
    assert get(port, f"/live/kitchen.flv?token={good}")[0] in (503, 429)

    api = gw.api_port()
    metrics = get(api, "/metrics")[2].decode()
    assert 'kg_public_viewers{camera="kitchen",protocol="hls"} 2' in metrics, metrics
    assert "kg_public_open 1" in metrics
    assert gw.terminate() == 0


def test_an_flv_stream_ends_when_its_viewer_token_expires(broker, clips, gateways, tmp_path):
    """HLS asks for the token again with every playlist; an HTTP-FLV stream is one request. Before, a
    stream opened with a token about to expire played on for as long as the viewer kept it open."""
    cams = [kg_e2e.camera("kitchen", public_clip(clips), input={"loop": True}, public=True)]
    config = public_config(broker, tmp_path, cams, token_secret="0123456789abcdef0123456789abcdef")
    gw = gateways(config)
    port = public_port(gw)
    kg_e2e.wait_until(lambda: get(port, "/live/kitchen/index.m3u8")[0] == 403, 10, what="the public side")

    def token(ttl):
        r = subprocess.run([kg_e2e.GATEWAY_BIN, "--config", str(gw.config_path), "--make-token", "kitchen", "--ttl",
                            str(ttl)], capture_output=True, text=True, timeout=10)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    lasting = token(600)
    kg_e2e.wait_until(lambda: get(port, f"/live/kitchen.flv?token={lasting}", method="HEAD")[0] == 200, 15,
                      what="FLV to go live")
    short = token(10)
    expires = int(short.split(".")[0])

    def read_stream(tok, seconds):
        """(bytes received, when it ended on the wall clock, or None if still going after `seconds`)."""
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3)
        conn.request("GET", f"/live/kitchen.flv?token={tok}")
        r = conn.getresponse()
        assert r.status == 200, r.read()
        received, began = 0, time.monotonic()
        try:
            while time.monotonic() - began < seconds:
                data = r.read1(65536)
                if not data:
                    return received, time.time()
                received += len(data)
            return received, None
        finally:
            conn.close()

    received, ended = read_stream(short, 25)
    assert received > 10000, "no video came before the token expired"
    assert ended is not None, "the stream went on past its token's expiry"
    assert expires <= ended < expires + 4, f"ended at {ended}, the token expired at {expires}"
    # A lasting token's stream plays on over the same seconds, and the expired one is refused anew.
    received, ended = read_stream(lasting, 8)
    assert ended is None and received > 10000
    status, _, body = get(port, f"/live/kitchen.flv?token={short}")
    assert status == 403 and b"expired" in body
    assert gw.terminate() == 0


def test_what_a_crashed_run_left_in_the_hls_folder_is_not_served_as_live(broker, gateways, tmp_path):
    """A run killed without its destructor (the watchdog's SIGKILL, a crash) leaves its playlist and
    segments in the HLS folder. The next start served them to parents as live, minutes or hours old,
    until its camera's first connection attempt ended (a camera that does not answer: its whole
    timeout). The folder is emptied when its writer starts, and a camera's no longer public is
    removed."""
    silent = socket.socket()  # takes the connection (the kernel does), never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)
    cams = [kg_e2e.camera("kitchen", f"rtsp://127.0.0.1:{silent.getsockname()[1]}/cam", public=True,
                          input={"timeout": "20s"})]
    config = public_config(broker, tmp_path, cams)
    folder = tmp_path / "hls" / "test-site" / "kitchen"
    folder.mkdir(parents=True)
    (folder / "index.m3u8").write_text("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:1\n"
                                       "#EXT-X-MEDIA-SEQUENCE:1\n#EXTINF:1.000000,\nabcdefg1-00001.m4s\n")
    (folder / "abcdefg1-00001.m4s").write_bytes(b"\0" * 1000)
    # A camera the crashed run streamed and this configuration does not: its segments stayed on
    # tmpfs until a reboot. Removed at start, folder and all.
    gone = tmp_path / "hls" / "test-site" / "pass"
    gone.mkdir()
    for name in ("index.m3u8", "abcdefg1-init.mp4", "abcdefg1-00001.m4s"):
        (gone / name).write_bytes(b"\0" * 1000)
    gw = gateways(config)
    port = public_port(gw)
    status, _, body = get(port, "/live/kitchen/index.m3u8")
    assert status == 503, (status, body)
    assert get(port, "/live/kitchen/abcdefg1-00001.m4s")[0] == 404
    assert list(folder.iterdir()) == []
    assert not gone.exists(), list(gone.iterdir())
    assert "(camera 'pass', not public in this configuration) removed: 2 KiB" in gw.output()
    assert gw.terminate() == 0
    silent.close()


def test_head_answers_what_a_get_would(broker, clips, gateways, tmp_path):
    """HEAD on a stream gets the status a GET would get, without counting as a viewer. Before, a HEAD on
    HTTP-FLV answered 200 at the viewer cap and while the stream was not live (a GET: 503), and a HEAD on
    HLS took a viewer's place."""
    clip = public_clip(clips)
    cams = [kg_e2e.camera("kitchen", clip, input={"loop": True}, public=True),
            kg_e2e.camera("gone", f"rtsp://127.0.0.1:{kg_e2e.free_port()}/cam", public=True)]
    gw = gateways(public_config(broker, tmp_path, cams, max_viewers_per_camera=2))
    port = public_port(gw)
    api = gw.api_port()

    def viewers(protocol):
        metrics = get(api, "/metrics")[2].decode()
        return int(re.search(rf'kg_public_viewers{{camera="kitchen",protocol="{protocol}"}} (\d+)', metrics).group(1))

    # A camera that never delivers: its FLV is "starting" to a GET, and to a HEAD, with when to ask again.
    for method in ["GET", "HEAD"]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request(method, "/live/gone.flv")
        r = conn.getresponse()
        r.read()
        conn.close()
        assert (r.status, r.getheader("Retry-After")) == (503, "2"), (method, r.status, r.getheader("Retry-After"))
    playlist_with_segments(port, "kitchen", "?sid=a")
    assert watch(port, "kitchen", "?sid=a")[0] == 200
    kg_e2e.wait_until(lambda: get(port, "/live/kitchen.flv", method="HEAD")[0] == 200, 10, what="FLV to go live")
    # Under the cap: HEADs are answered 200 and nobody is counted for them.
    assert get(port, "/live/kitchen/index.m3u8?sid=b", method="HEAD")[0] == 200
    assert watch(port, "kitchen", "?sid=b", method="HEAD")[0] == 200
    assert viewers("hls") == 1 and viewers("flv") == 0
    # Session b watches: the cap (2) is reached. HEAD and GET alike are refused with 503 and Retry-After.
    assert watch(port, "kitchen", "?sid=b")[0] == 200
    for path in ["/live/kitchen.flv", "/live/kitchen/index.m3u8?sid=c"]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for method in ["HEAD", "GET"]:
            conn.request(method, path)
            r = conn.getresponse()
            body = r.read()
            assert r.status == 503 and r.getheader("Retry-After") == "30", (method, path, r.status)
            assert (body == b"") == (method == "HEAD"), (method, path, body)
        conn.close()
    # The sessions already watching are still let through, HEAD or GET.
    assert get(port, "/live/kitchen/index.m3u8?sid=a", method="HEAD")[0] == 200
    assert viewers("hls") == 2 and viewers("flv") == 0

    # Parents' apps and mini-programs load the streams from another origin: every answer allows it,
    # what they are refused too (a 404 without it reads as a network failure in the app).
    for method, path, status in [("GET", "/live/kitchen/index.m3u8?sid=a", 200), ("HEAD", "/live/kitchen.flv", 503),
                                 ("GET", "/live/gone.flv", 503), ("GET", "/public/status", 200),
                                 ("GET", "/live/nobody/index.m3u8", 404), ("GET", "/no/such/page", 404),
                                 ("POST", "/public/status", 405)]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request(method, path)
        r = conn.getresponse()
        r.read()
        conn.close()
        assert (r.status, r.getheader("Access-Control-Allow-Origin")) == (status, "*"), (method, path, r.status)
        # Every answer says when it was made (RFC 9110 6.6.1); none did before.
        assert re.fullmatch(r"\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} GMT", r.getheader("Date") or ""), \
            (method, path, r.getheader("Date"))
    # A CORS preflight (an app on another origin about to send a player's Range) is answered with what
    # it may do; it was a 405 without Access-Control-Allow-Methods, which browsers take as "no".
    for path in ["/live/kitchen/index.m3u8?sid=a", "/live/kitchen.flv", "/public/status"]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("OPTIONS", path, headers={"Origin": "https://app.example", "Access-Control-Request-Method": "GET",
                                               "Access-Control-Request-Headers": "range"})
        r = conn.getresponse()
        assert r.read() == b"" and r.status == 204, (path, r.status)
        assert (r.getheader("Access-Control-Allow-Origin"), r.getheader("Access-Control-Allow-Methods"),
                r.getheader("Access-Control-Allow-Headers")) == ("*", "GET, HEAD", "Range"), (path, r.getheaders())
        conn.close()
    assert viewers("hls") == 2 and viewers("flv") == 0, "a preflight is not a viewer"
    assert gw.terminate() == 0


def test_public_hours_and_reload(broker, clips, gateways, tmp_path):
    """Outside public hours nothing of the kitchen is served and the page says so; a reload with the
    hours removed (POST /api/reload) opens the feed without restarting the process."""
    clip = public_clip(clips)
    cams = [kg_e2e.camera("kitchen", clip, input={"loop": True}, public=True)]
    now = datetime.datetime.now(datetime.timezone.utc)
    start = (now + datetime.timedelta(hours=3)).strftime("%H:00")
    end = (now + datetime.timedelta(hours=4)).strftime("%H:00")
    config = public_config(broker, tmp_path, cams, hours="meals")
    config["site"]["timezone"] = "UTC"
    config["schedules"] = {"meals": {"times": [f"{start}-{end}"]}}
    config["api"]["token"] = "test-api-token"
    gw = gateways(config)
    port = public_port(gw)
    time.sleep(3)  # long enough for segments to exist if the feed were open

    status_json = json.loads(get(port, "/public/status")[2])
    assert status_json["open"] is False and status_json["hours"] == "meals"
    # When they open, on the site's clock, for the page to tell parents.
    opens = (now + datetime.timedelta(hours=3)).strftime("%Y-%m-%d %H:00")
    assert status_json["opens_at"] == opens and status_json["closes_at"] is None, status_json
    status, _, body = get(port, "/live/kitchen/index.m3u8")
    assert status == 403 and b"public hours" in body
    assert get(port, "/live/kitchen.flv")[0] == 403
    assert not any((tmp_path / "hls").rglob("*.m4s")), "segments were written outside public hours"
    assert b"public hours" in get(port, "/")[2]

    # A reload with a broken file is refused and the gateway keeps running as it was.
    api = gw.api_port()
    good_text = gw.config_path.read_text()
    gw.config_path.write_text(good_text.replace("hours: meals", "hours: nosuchschedule"))
    status, _, body = get(api, "/api/reload", method="POST", headers={"Authorization": "Bearer test-api-token"})
    assert status == 422 and b"nosuchschedule" in body
    assert get(api, "/api/reload", headers={"Authorization": "Bearer test-api-token"})[0] == 405
    assert get(api, "/api/reload", method="POST")[0] == 401
    assert json.loads(get(port, "/public/status")[2])["open"] is False
    # So is one whose model cannot be loaded: before, the file passed and the new gateway failed to start.
    broken = json.loads(json.dumps(config))
    broken["cameras"][0]["checks"] = ["camera_health", "mask"]
    broken["detectors"] = {"mask": str(tmp_path / "no-such-model.yaml")}
    gw.config_path.write_text(yaml.safe_dump(broken, sort_keys=False))
    status, _, body = get(api, "/api/reload", method="POST", headers={"Authorization": "Bearer test-api-token"})
    assert status == 422 and b"detectors.mask" in body and b"no-such-model.yaml" in body, body
    time.sleep(1)
    assert gw.running() and json.loads(get(port, "/public/status")[2])["open"] is False

    # Without the hours, after a reload, the feed opens.
    del config["public"]["hours"]
    gw.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    before = len(gw.output())
    status, _, body = get(api, "/api/reload", method="POST", headers={"Authorization": "Bearer test-api-token"})
    assert status == 202, body
    port = public_port(gw, after=before)
    playlist_with_segments(port, "kitchen")
    status_json = json.loads(get(port, "/public/status")[2])
    assert status_json["open"] is True and status_json["opens_at"] is None and status_json["closes_at"] is None
    assert gw.running() and "stopped for the reload" in gw.output()
    assert gw.terminate() == 0


def test_privacy_mask_pixelates_the_region(broker, clips, gateways, tmp_path):
    clip = public_clip(clips)
    # The middle is masked (the pixelation covers the masks' bounding box alone, which must land where
    # the mask is); the public feed is re-encoded at 320 px wide.
    cams = [kg_e2e.camera("kitchen", clip, input={"loop": True}, public=True,
                          privacy_masks=[[[0.25, 0.25], [0.75, 0.25], [0.75, 0.75], [0.25, 0.75]]])]
    gw = gateways(public_config(broker, tmp_path, cams, privacy={"width": 320, "fps": 5}))
    port = public_port(gw)
    playlist_with_segments(port, "kitchen")
    hls = probe(f"http://127.0.0.1:{port}/live/kitchen/index.m3u8")
    assert hls[0]["codec_name"] == "h264" and hls[0]["width"] == 320 and hls[0]["height"] == 180, hls
    frame = tmp_path / "frame.png"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i",
                    f"http://127.0.0.1:{port}/live/kitchen/index.m3u8", "-frames:v", "1", str(frame)],
                   check=True, timeout=40)
    import cv2
    grey = cv2.imread(str(frame), cv2.IMREAD_GRAYSCALE).astype(np.float32)
    # Inside the mask every 16x16 block is one flat colour (up to coding noise); outside it, the
    # picture keeps its detail.
    def block_spread(x0, x1, y0=0, y1=176):
        return np.median([grey[y:y + 16, x:x + 16].std() for y in range(y0, y1, 16) for x in range(x0, x1, 16)])
    # The mask is x 80-240, y 45-135: its whole blocks, and the columns either side of it.
    masked = block_spread(80, 240, 48, 128)
    left, right = block_spread(0, 64), block_spread(256, 320)
    assert masked < 4 and left > 2 * masked and right > 2 * masked, (masked, left, right)
    assert "privacy mask: public feed re-encoded at 320x180" in gw.output()
    assert gw.terminate() == 0


@pytest.mark.skipif(not kg_e2e.has_nginx_rtmp(),
                    reason="nginx with the RTMP module is not installed (nginx-light, libnginx-mod-rtmp)")
def test_rtmp_push_reaches_nginx(broker, clips, gateways, tmp_path):
    nginx = kg_e2e.NginxRtmp(tmp_path)
    try:
        clip = public_clip(clips)
        cams = [kg_e2e.camera("kitchen", clip, input={"loop": True}, public=True)]
        gw = gateways(public_config(broker, tmp_path, cams,
                                    rtmp_push=nginx.url("live/{site}-{camera}")))
        kg_e2e.wait_until(lambda: re.search(r"RTMP push to \S+: connected", gw.output()), 15,
                          what="the RTMP push to connect")
        # A viewer of the media server (not of the gateway) gets the camera's own stream.
        streams = probe(nginx.url("live/test-site-kitchen"))
        assert streams[0]["codec_name"] == "h264" and streams[0]["width"] == 640, streams
        metrics = get(gw.api_port(), "/metrics")[2].decode()
        assert 'kg_public_rtmp_connected{camera="kitchen"} 1' in metrics
        # The media server goes away: the gateway keeps serving and retries, backing off (1 s, 2 s, 4 s,
        # 8 s...). Before, the camera's key frames (every 2 s) woke the pusher out of its back-off:
        # a try every key frame, for ever.
        nginx.stop()
        kg_e2e.wait_until(lambda: "reconnecting" in gw.output() or "cannot connect" in gw.output(), 20,
                          what="the push to notice the server is gone")
        gone = len(gw.output())
        time.sleep(14)
        tries = gw.output()[gone:].count("cannot connect")
        assert 2 <= tries <= 4, gw.output()[gone:]
        assert gw.running()
        assert get(public_port(gw), "/public/status")[0] == 200
        assert gw.terminate() == 0
    finally:
        nginx.kill()


def test_the_playlist_numbers_keep_rising_across_a_reload_and_a_restart(broker, clips, gateways, tmp_path):
    """A phone's own player (Safari, iPhones: the page cannot restart it) only reloads the playlist and
    waits for media sequence numbers past the last it played. Before, every new run of the gateway (a
    reload, an upgrade, a crash) started again at 0, and that player froze until the parent reloaded
    the page. Now a reload that changes the camera's input and a restart both go on above the last
    number, marked a discontinuity; a reload that leaves the camera as it was does not touch its
    stream at all (the camera is not opened again: the same init segment, the next numbers, no
    discontinuity), where before every reload broke every parent's stream for seconds."""
    clip = public_clip(clips)
    config = public_config(broker, tmp_path, [kg_e2e.camera("kitchen", clip, input={"loop": True}, public=True)])
    config["api"]["token"] = "test-api-token"

    def last_number(port):
        playlist = playlist_with_segments(port, "kitchen", count=3)
        return max(int(n) for n in re.findall(r"-(\d+)\.m4s", playlist)), playlist

    def after(port, before, earlier_init):
        """The first playlist of a new run: a new init segment, numbers above `before`, marked."""
        playlist = kg_e2e.wait_until(
            lambda: (p := playlist_with_segments(port, "kitchen")) and earlier_init not in p and p, 20,
            what="a playlist of the new run")
        assert first_sequence(playlist) > before, (before, playlist)
        lines = playlist.splitlines()
        first_segment = next(i for i, line in enumerate(lines) if line.startswith("#EXTINF"))
        assert "#EXT-X-DISCONTINUITY" in lines[:first_segment], playlist
        return playlist

    def reload(gw, config, port):
        """Reloads with `config` while a player asks for the playlist every 50 ms; returns the new run's
        public port, where its log starts, and what the player got that was not the playlist."""
        gw.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        log_at = len(gw.output())
        failures, done = [], threading.Event()

        def player():
            while not done.is_set():
                try:
                    status, _, _ = get(port, "/live/kitchen/index.m3u8", timeout=10)
                    if status != 200:
                        failures.append(status)
                except OSError as e:
                    failures.append(repr(e))
                time.sleep(0.05)

        asking = threading.Thread(target=player)
        asking.start()
        try:
            api = int(re.findall(r"local API on \S+ \(port (\d+)\)", gw.output())[-1])  # this run's
            status, _, body = get(api, "/api/reload", method="POST", headers={"Authorization": "Bearer test-api-token"})
            assert status == 202, body
            new_port = public_port(gw, after=log_at)
            time.sleep(1)
        finally:
            done.set()
            asking.join()
        return new_port, log_at, failures

    gw = gateways(config)
    port = public_port(gw)
    before, playlist = last_number(port)
    init = re.search(r'#EXT-X-MAP:URI="([^"]+)"', playlist).group(1)
    marks = playlist.count("#EXT-X-DISCONTINUITY\n")

    # The camera renamed, its checks' thresholds and the log's level changed: its stream goes on as it
    # was, and a player asking meanwhile is answered (the port stays open: asked between the two runs,
    # before, it was refused, and the page started its stream over).
    config["cameras"][0]["name"] = "Kitchen line"
    config["cameras"][0]["health"] = {"black_luma": 20}
    config["log"] = {"level": "debug"}
    new_port, log_at, failures = reload(gw, config, port)
    assert new_port == port and failures == [], (port, new_port, failures)
    playlist = kg_e2e.wait_until(
        lambda: (p := playlist_with_segments(port, "kitchen")) and
        max(int(n) for n in re.findall(r"-(\d+)\.m4s", p)) > before + 1 and p, 20,
        what="the playlist to go on after the reload")
    numbers = [int(n) for n in re.findall(r"-(\d+)\.m4s", playlist)]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers))) and numbers[0] <= before + 1, \
        (before, playlist)
    assert re.search(r'#EXT-X-MAP:URI="([^"]+)"', playlist).group(1) == init, playlist
    assert playlist.count("#EXT-X-DISCONTINUITY\n") <= marks, playlist
    assert "camera kitchen: its stream goes on across the reload" in gw.output()[log_at:]
    assert len(re.findall(r"\[cam:kitchen\].*connected to ", gw.output())) == 1, "the camera was opened again"

    # Analysed at another rate: the camera's input is made again, and its stream starts anew.
    before, playlist = last_number(port)
    config["cameras"][0]["analysis"] = {"fps": 4}
    port, log_at, _ = reload(gw, config, port)
    after(port, before, init)
    before, playlist = last_number(port)
    init = re.search(r'#EXT-X-MAP:URI="([^"]+)"', playlist).group(1)
    assert gw.terminate() == 0

    gw = gateways(config, "restarted")
    after(public_port(gw), before, init)
    assert gw.terminate() == 0


def test_a_reload_that_swaps_the_two_ports_serves_both_at_once(broker, clips, gateways, tmp_path):
    """A reload keeps each HTTP side's listening socket while its address is unchanged. One whose
    address changes is closed before any side listens: the local API moved onto the public side's
    old port was refused that port (`Address already in use`) for a second or more (the review of
    the kept sockets), while the public side's kept socket still held it."""
    first, second = kg_e2e.free_port(), kg_e2e.free_port()
    config = public_config(broker, tmp_path, [kg_e2e.camera("kitchen", public_clip(clips), input={"loop": True},
                                                            public=True)], listen=f"127.0.0.1:{first}")
    config["api"] = {"listen": f"127.0.0.1:{second}", "token": "test-api-token"}
    gw = gateways(config)
    assert public_port(gw) == first
    playlist_with_segments(first, "kitchen")
    config["public"]["listen"], config["api"]["listen"] = f"127.0.0.1:{second}", f"127.0.0.1:{first}"
    gw.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    log_at = len(gw.output())
    status, _, body = get(second, "/api/reload", method="POST", headers={"Authorization": "Bearer test-api-token"})
    assert status == 202, body
    kg_e2e.wait_until(lambda: "public side on" in gw.output()[log_at:], 10, what="the public side of the new run")
    assert get(first, "/healthz")[0] == 200
    playlist_with_segments(second, "kitchen")
    assert "not started" not in gw.output()[log_at:], gw.output()[log_at:]
    assert gw.terminate() == 0


def test_segments_are_served_only_when_complete(broker, clips, gateways, tmp_path):
    """A player (or a script) that asks for the next segment before the playlist names it gets 404, and
    once it is served every viewer gets the whole segment as on disk. Before, the shared segment cache
    kept whatever it read while FFmpeg was still writing the file (empty or partial) and served that
    to every parent for good."""
    clip = public_clip(clips, 45)
    cams = [kg_e2e.camera("kitchen", clip, input={"loop": False}, public=True)]
    gw = gateways(public_config(broker, tmp_path, cams))
    port = public_port(gw)
    folder = tmp_path / "hls" / "test-site" / "kitchen"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def fetch(path):
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()

    checked = 0
    while checked < 8:
        playlist = playlist_with_segments(port, "kitchen")
        stem, number = re.findall(r"([0-9a-z]{6}g\d+)-(\d+)\.m4s", playlist)[-1]
        upcoming = f"{stem}-{int(number) + 1:05d}.m4s"
        deadline = time.time() + 5
        while (result := fetch(f"/live/kitchen/{upcoming}"))[0] != 200 and time.time() < deadline:
            assert result[0] == 404, result  # no pause: the moment the file appears is the one that matters
        status, first = result
        assert status == 200, f"{upcoming} never served"
        named = get(port, "/live/kitchen/index.m3u8")[2].decode()
        assert upcoming in named.splitlines(), f"{upcoming} served before the playlist named it:\n{named}"
        on_disk = (folder / upcoming).read_bytes()
        assert first == on_disk and len(on_disk) > 1000, (upcoming, len(first), len(on_disk))
        assert get(port, f"/live/kitchen/{upcoming}?sid=other")[2] == on_disk, f"{upcoming}: the cache differs"
        checked += 1
    conn.close()
    assert gw.terminate() == 0


def test_a_looped_clip_keeps_streaming_after_its_end(broker, clips, gateways, tmp_path):
    """A file camera with loop (the built-in demo) keeps feeding HLS and HTTP-FLV after its first pass.
    Before, the rewind restarted its timestamps, the muxers dropped every packet that was not later
    than the last one, and the parents' stream froze at the clip's length while /public/status still
    said live."""
    clip = clips("short", [("normal", 4)])
    cams = [kg_e2e.camera("kitchen", clip, input={"loop": True}, public=True)]
    gw = gateways(public_config(broker, tmp_path, cams))
    port = public_port(gw)
    first = first_sequence(playlist_with_segments(port, "kitchen"))

    def newest_segment():  # counted from the first
        status, _, body = get(port, "/live/kitchen/index.m3u8")
        numbers = [int(n) for n in re.findall(r"-(\d+)\.m4s", body.decode())] if status == 200 else []
        return max(numbers, default=first - 1) - first

    # HTTP-FLV over the rewinds: 6 s recorded by FFmpeg from the end of the first pass (a rewind every
    # 4 s: at least one inside them) hold 6 s of video. Recorded while the segments below come.
    recorded = tmp_path / "looped.flv"
    recorder = record_flv(port, recorded, 6)
    try:
        # Segments cut at the clip's key frames (every 2 s): two a pass, so segment 6 is in the fourth pass.
        kg_e2e.wait_until(lambda: newest_segment() >= 6, 25, what="segments past the third pass of the clip")
        duration = recorded_seconds(recorder, recorded)
        assert duration >= 5.5, duration
    finally:
        if recorder.poll() is None:
            recorder.kill()
    assert json.loads(get(port, "/public/status")[2])["cameras"][0]["live"] is True
    assert gw.terminate() == 0


def jumping_clip(path, first=6, second=16, first_start=100):
    """An MPEG-TS stream whose clock jumps back: two FFmpeg-made parts concatenated byte for byte (as a
    camera that resets its clock, or an NVR that restarts a stream, sends them), the first stamped
    from `first_start` s, the second from 0 again. Both 320x180, 25 fps, a key frame every second."""
    parts = []
    for i, (seconds, offset) in enumerate([(first, first_start), (second, 0)]):
        part = path.with_name(f"{path.stem}-{i}.ts")
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                        f"testsrc2=size=320x180:rate=25:duration={seconds}", "-c:v", "libx264", "-preset",
                        "ultrafast", "-g", "25", "-keyint_min", "25", "-sc_threshold", "0", "-pix_fmt", "yuv420p",
                        "-output_ts_offset", str(offset), "-f", "mpegts", str(part)], check=True)
        parts.append(part.read_bytes())
    path.write_bytes(b"".join(parts))
    return str(path)


@pytest.mark.parametrize("first_start,direction,size", [(30, "back", (34, 38)), (100, "ahead", (95000, 96000))],
                         ids=["back", "wrapped-ahead"])
def test_a_camera_clock_that_jumps_keeps_the_public_streams_going(broker, gateways, tmp_path, first_start, direction,
                                                                  size):
    """A camera whose timestamps jump without a reconnect (its clock reset, an NVR restarted the stream,
    NTP stepped it): HLS keeps gaining segments and HTTP-FLV keeps delivering across the jump, on one
    continuous timeline, and the jump is logged and counted. Before, the muxers dropped every packet not
    later than the last one before a jump back: the parents' stream froze for good. A jump back of more
    than 60 s reaches the outputs as a jump ahead of about 26.5 hours (FFmpeg takes it for the 33-bit
    MPEG-TS clock wrapping, as it does for RTP's 32 bits): a segment a day long, an FLV viewer lost."""
    clip = jumping_clip(tmp_path / "jump.ts", first_start=first_start)
    cams = [kg_e2e.camera("kitchen", clip, input={"loop": False}, public=True)]
    gw = gateways(public_config(broker, tmp_path, cams))
    port = public_port(gw)
    first = first_sequence(playlist_with_segments(port, "kitchen"))
    # An FFmpeg viewer of HTTP-FLV from here (about 2 s into the first part) for 12 s: across the jump.
    recorded = tmp_path / "across.flv"
    viewer = subprocess.Popen(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-rw_timeout", "5000000", "-i",
                               f"http://127.0.0.1:{port}/live/kitchen.flv", "-t", "12", "-c", "copy", str(recorded)])
    durations = []
    try:
        def newest_segment():
            status, _, body = get(port, "/live/kitchen/index.m3u8")
            if status != 200:
                return -1
            durations.extend(float(d) for d in re.findall(r"#EXTINF:([\d.]+)", body.decode()))
            return max((int(n) for n in re.findall(r"-(\d+)\.m4s", body.decode())), default=first - 1) - first

        # One-second segments: the first part gives about six, eight seconds of the second part the rest.
        kg_e2e.wait_until(lambda: newest_segment() >= 12, 25, what="segments after the camera's clock jumped")
        # Each segment as long as the GOP it holds: none spans the jump.
        assert durations and max(durations) < 2.5, sorted(set(durations))
        viewer.wait(40)
        duration = float(subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of",
                                         "csv=p=0", str(recorded)], capture_output=True, text=True).stdout)
        assert duration >= 11.5, duration
    finally:
        if viewer.poll() is None:
            viewer.kill()
    # Logged once, naming the camera (the logger) and the size of the jump.
    jumps = re.findall(r"\[cam:kitchen\].*timestamps jumped (back|ahead) by (\d+\.\d+) s", gw.output())
    assert len(jumps) == 1 and jumps[0][0] == direction and size[0] < float(jumps[0][1]) < size[1], jumps
    metrics = get(gw.api_port(), "/metrics")[2].decode()
    assert 'kg_camera_timestamp_jumps_total{camera="kitchen"} 1' in metrics, metrics
    assert "mux error" not in gw.output() and "write failed" not in gw.output()
    assert gw.terminate() == 0


def stepping_clip(path, step, first=6, second=16, start=100):
    """An MPEG-TS stream whose clock steps back by `step` s after `first` s, as an NTP client setting a
    camera's clock back sends it: one picture sequence (320x180, 25 fps, H.264 with B-frames, a key
    frame every second) cut in two parts concatenated byte for byte, the second stamped from
    start + first + step. Each frame shows its number (frame_numbers reads it back)."""
    total = first + second
    # The top left 64x64: luma 16 + 4 * (n % 50) in its upper half, 16 + 4 * (n // 50 % 50) in its lower.
    counter = (f"color=c=black:size=64x64:rate=25:duration={total},format=yuv420p,"
               "geq=lum='16+4*if(lt(Y,32),mod(N,50),mod(floor(N/50),50))':cb=128:cr=128")
    parts = []
    for i, (first_frame, frames, offset) in enumerate([(0, first * 25, start),
                                                       (first * 25, second * 25, start + first + step)]):
        part = path.with_name(f"{path.stem}-{i}.ts")
        graph = (f"testsrc2=size=320x180:rate=25:duration={total}[bg];{counter}[n];[bg][n]overlay=0:0:shortest=1,"
                 f"trim=start_frame={first_frame}:end_frame={first_frame + frames},setpts=PTS-STARTPTS")
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-filter_complex", graph, "-c:v", "libx264",
                        "-preset", "veryfast", "-bf", "2", "-g", "25", "-keyint_min", "25", "-sc_threshold", "0",
                        "-pix_fmt", "yuv420p", "-output_ts_offset", str(offset), "-f", "mpegts", str(part)],
                       check=True)
        parts.append(part.read_bytes())
    path.write_bytes(b"".join(parts))
    return str(path)


def frame_numbers(path):
    """The number each frame of a recording of a stepping_clip shows, in the order they are shown."""
    r = subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(path), "-fps_mode", "passthrough",
                        "-vf", "crop=64:64:0:0", "-f", "rawvideo", "-pix_fmt", "yuv420p", "-"],
                       capture_output=True, check=True, timeout=60)
    luma = np.frombuffer(r.stdout, np.uint8).reshape(-1, 64 * 96)[:, :64 * 64].reshape(-1, 64, 64)

    def digit(rows):  # the middle of a half, away from the edges the encoder blurs
        return np.rint((luma[:, rows, 8:56].mean(axis=(1, 2)) - 16) / 4).astype(int)

    return list(digit(slice(40, 56)) * 50 + digit(slice(8, 24)))


def decoding_times(path):
    """The decoding times of a recording's video packets, in seconds, in the order they come."""
    r = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v", "-show_entries", "packet=dts_time", "-of",
                        "csv=p=0", str(path)], capture_output=True, text=True, timeout=60)
    return [float(t.strip(",")) for t in r.stdout.split() if t.strip(",") not in ("", "N/A")]


def test_a_camera_clock_stepped_back_by_ntp_loses_no_video(broker, gateways, tmp_path):
    """A camera whose clock is set back by half a second (chrony or ntpd at its boot, or after drift):
    HLS and HTTP-FLV carry every frame across the step, on timestamps that keep increasing a frame at
    a time, and the step is logged once and counted. Before, every muxer dropped the packets not later
    than the last one until the camera's clock caught up: the step's key frame and the 11 frames after
    it, so the rest of that second could not be decoded either (frames 150 to 174 missing or broken in
    both outputs), a stall for the parents."""
    clip = stepping_clip(tmp_path / "step.ts", step=-0.5)
    cams = [kg_e2e.camera("kitchen", clip, input={"loop": False}, public=True)]
    gw = gateways(public_config(broker, tmp_path, cams))
    port = public_port(gw)
    first = first_sequence(playlist_with_segments(port, "kitchen"))
    # An FFmpeg viewer of HTTP-FLV from here (about 2 s into the clip) for 10 s: across the step at 6 s.
    recorded = tmp_path / "across.flv"
    viewer = subprocess.Popen(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-rw_timeout", "5000000", "-i",
                               f"http://127.0.0.1:{port}/live/kitchen.flv", "-t", "10", "-c", "copy", str(recorded)])
    try:
        # HLS: the segments a player would fetch once a few seconds past the step are listed.
        def playlist_past_the_step():
            status, _, body = get(port, "/live/kitchen/index.m3u8")
            numbers = [int(n) for n in re.findall(r"-(\d+)\.m4s", body.decode())] if status == 200 else []
            return max(numbers, default=first - 1) - first >= 9 and body.decode()

        playlist = kg_e2e.wait_until(playlist_past_the_step, 25, what="segments past the camera's clock step")
        names = [re.search(r'#EXT-X-MAP:URI="([^"]+)"', playlist).group(1)]
        names += [line for line in playlist.splitlines() if line.endswith(".m4s")]
        fetched = [get(port, f"/live/kitchen/{name}") for name in names]
        assert all(status == 200 for status, _, _ in fetched), [(n, f[0]) for n, f in zip(names, fetched)]
        hls = tmp_path / "hls-across.mp4"
        hls.write_bytes(b"".join(body for _, _, body in fetched))
        viewer.wait(40)
    finally:
        if viewer.poll() is None:
            viewer.kill()

    step_frame = 6 * 25  # the first frame stamped after the step
    for name, recording in [("HLS", hls), ("HTTP-FLV", recorded)]:
        # The second either side of the step (a recording's own ends are cut between B-frames).
        numbers = [n for n in frame_numbers(recording) if abs(n - step_frame) <= 25]
        assert numbers and numbers[0] == step_frame - 25 and numbers[-1] == step_frame + 25, (name, numbers)
        # Every frame in the order the camera took them: none lost at the step (one at most), none twice.
        gaps = [b - a for a, b in zip(numbers, numbers[1:])]
        assert min(gaps) == 1 and sum(gaps) - len(gaps) <= 1, (name, [(n, g) for n, g in zip(numbers, gaps) if g != 1])
        # Their timestamps keep increasing, a frame (40 ms) at a time, across the step too.
        times = decoding_times(recording)
        steps = [round(b - a, 3) for a, b in zip(times, times[1:])]
        assert steps and all(0 < s <= 0.081 for s in steps), (name, sorted(set(steps)))
    # Logged once, naming the camera (the logger) and the size of the step; counted with the jumps.
    stepped = re.findall(r"\[cam:kitchen\].*timestamps stepped back by (\d+\.\d+) s", gw.output())
    assert len(stepped) == 1 and abs(float(stepped[0]) - 0.5) < 0.01, stepped
    assert "timestamps jumped" not in gw.output()
    metrics = get(gw.api_port(), "/metrics")[2].decode()
    assert 'kg_camera_timestamp_jumps_total{camera="kitchen"} 1' in metrics, metrics
    assert "mux error" not in gw.output() and "write failed" not in gw.output()
    assert gw.terminate() == 0


def thread_cpu_seconds(pid, tid):
    fields = open(f"/proc/{pid}/task/{tid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_out_of_file_descriptors_the_public_side_waits_and_serves_again(broker, clips, tmp_path):
    """More viewers than the process may open files: each accept fails (EMFILE) while the connection
    waits in the backlog. The listener used to try again at once, a whole core spinning on the
    thread that also runs the supervision; it now tries every 500 ms, says so once, and serves
    again when sockets are free."""
    config = public_config(broker, tmp_path, [kg_e2e.camera("kitchen", public_clip(clips, 60), public=True,
                                                            input={"loop": True})],
                           max_connections=1000, max_viewers_per_address=400)
    gw = kg_e2e.Gateway(tmp_path, config, wrapper=["prlimit", "--nofile=96:96"])
    idle = []
    try:
        port = public_port(gw)
        assert "the process may open 96 files (RLIMIT_NOFILE)" in gw.output()
        assert get(port, "/public/status")[0] == 200
        for _ in range(160):  # past the limit: the rest wait in the listen backlog
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        kg_e2e.wait_until(lambda: "cannot accept connections: Too many open files" in gw.output(), 10,
                          what="the failed accept logged")
        main = gw.proc.pid  # the listener runs on the main thread, with the supervision
        before = thread_cpu_seconds(main, main)
        time.sleep(3)
        spent = thread_cpu_seconds(main, main) - before
        assert spent < 0.5, f"the main thread used {spent:.2f} s of CPU in 3 s"
        assert gw.output().count("cannot accept connections") == 1
        for s in idle:
            s.close()
        idle.clear()
        kg_e2e.wait_until(lambda: get(port, "/public/status", timeout=3)[0] == 200, 15, what="served again")
        kg_e2e.wait_until(lambda: "accepting connections again, after" in gw.output(), 5, what="the recovery logged")
        assert gw.terminate() == 0
    finally:
        for s in idle:
            s.close()
        gw.kill()


def test_a_starting_hls_stream_is_503_until_its_playlist_is_there(broker, clips, tmp_path):
    """FFmpeg writes the playlist when the first segment closes, a GOP or more after the camera
    connects. Meanwhile /public/status said `live` and the playlist answered 404, which hls.js takes
    as final: now 503 with Retry-After, and `live` only once the playlist is there."""
    clip = clips("public-gop4", [("normal", 30)], gop=100)  # a key frame every 4 s
    config = public_config(broker, tmp_path, [kg_e2e.camera("kitchen", clip, public=True, input={"loop": True})])
    gw = kg_e2e.Gateway(tmp_path, config)
    try:
        port = public_port(gw)
        seen = []
        deadline = time.time() + 20
        while time.time() < deadline:
            # The cameras are listed from the first state report on (about a second after start).
            cams = json.loads(get(port, "/public/status")[2])["cameras"]
            live = any(c["id"] == "kitchen" and c["live"] for c in cams)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/live/kitchen/index.m3u8?sid=s1")
            r = conn.getresponse()
            r.read()
            conn.close()
            seen.append((live, r.status, r.getheader("Retry-After")))
            if r.status == 200 and live:
                break
            time.sleep(0.1)
        assert seen[-1][:2] == (True, 200), seen[-5:]
        starting = [s for s in seen if s[1] != 200]
        assert starting, "the playlist was there at the first request: nothing was checked"
        assert all(status == 503 and retry == "2" for _, status, retry in starting), starting
        # `live` never came before a playlist to serve (one poll's difference aside: the status is read first).
        assert all(not live for live, status, _ in seen[:-1] if status != 200), seen
        assert gw.terminate() == 0
    finally:
        gw.kill()


def init_picture(port, camera="kitchen"):
    """(width, height) in the HLS stream's init segment, as its H.264 sample entry gives them; None
    while there is none."""
    status, _, playlist = get(port, f"/live/{camera}/index.m3u8")
    found = re.search(rb'#EXT-X-MAP:URI="([^"]+)"', playlist) if status == 200 else None
    if not found:
        return None
    status, _, init = get(port, f"/live/{camera}/{found.group(1).decode()}")
    at = init.find(b"avc1") if status == 200 else -1
    if at < 4:
        return None
    # After the entry's type: 6 reserved bytes, the data reference index, 16 bytes of zeros, then
    # width and height (ISO/IEC 14496-12, VisualSampleEntry).
    return int.from_bytes(init[at + 28:at + 30], "big"), int.from_bytes(init[at + 30:at + 32], "big")


def test_a_camera_whose_picture_size_changes_in_its_session_is_served_at_the_new_size(broker, rtsp_server, gateway,
                                                                                      tmp_path):
    """A camera whose resolution is changed in its web page while the gateway watches it: many keep
    the RTSP session and send the new size in band with their next key frame. The parents' streams
    kept the old header (the HLS init segment, FLV's sequence header) over the new pictures, and
    players showed garbage or stopped, until a reconnect that might never come. The change is told to
    the outputs as a new stream, without a reconnect: the HLS stream starts again at the new size."""
    parts = []
    for size, seconds, offset in (("320x180", 12, 0), ("640x360", 30, 12)):  # one clock, as a camera's
        part = tmp_path / f"{size}.ts"
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                        f"testsrc2=size={size}:rate=25", "-t", str(seconds), "-c:v", "libx264", "-preset",
                        "veryfast", "-g", "25", "-pix_fmt", "yuv420p", "-f", "mpegts", "-output_ts_offset",
                        str(offset), str(part)], check=True)
        parts.append(part.read_bytes())
    stream = tmp_path / "camera.ts"
    stream.write_bytes(b"".join(parts))  # one MPEG-TS stream, served as one RTSP session
    server = rtsp_server({"/cam": str(stream)})
    gw = gateway(public_config(broker, tmp_path, [kg_e2e.camera("kitchen", server.url("/cam"), public=True)]))
    port = public_port(gw)
    playlist_with_segments(port, "kitchen")
    assert init_picture(port) == (320, 180)
    # The init segment is what a player sets its decoder up from (a probe reads the pictures' own
    # parameter sets, and said the new size under the old header too).
    kg_e2e.wait_until(lambda: init_picture(port) == (640, 360), 40, interval=0.5,
                      what="the HLS stream's header at 640x360")
    assert "the picture changed from 320x180 to 640x360 within the connection" in gw.output()
    after = probe(f"http://127.0.0.1:{port}/live/kitchen/index.m3u8")
    assert (after[0]["codec_name"], after[0]["width"], after[0]["height"]) == ("h264", 640, 360), after
    out = gw.output()
    assert out.count("connected to rtsp://") == 1, out  # followed within the session, not by a reconnect
    assert "offline" not in out, out
