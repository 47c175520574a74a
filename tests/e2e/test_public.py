"""The public side (parents): the page, the status summary and live HLS remuxed from a public
camera's own packets, read back by FFmpeg; a private camera, the local API and paths outside the
streams do not exist there."""

import http.client
import json
import re
import subprocess

import kg_e2e


def get(port, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path)
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, r.getheader("Content-Type"), body


def test_public_hls_and_status(broker, clips, gateways, tmp_path):
    clip = clips("public", [("normal", 20)])
    cams = [kg_e2e.camera("kitchen", clip, input={"loop": True}, public=True, name="Cooking area"),
            kg_e2e.camera("storage", clip, input={"loop": True})]
    config = kg_e2e.base_config(broker, cams, tmp_path)
    config["public"] = {"listen": "127.0.0.1:0", "hls_dir": str(tmp_path / "hls"), "segment": "1s"}
    gw = gateways(config)
    port = int(kg_e2e.wait_until(lambda: re.search(r"public side on \S+ \(port (\d+)\)", gw.output()), 10,
                                 what="the public side").group(1))

    status, ctype, page = get(port, "/")
    assert status == 200 and ctype.startswith("text/html") and b"/public/status" in page
    playlist = kg_e2e.wait_until(lambda: (r := get(port, "/live/kitchen/index.m3u8"))[0] == 200
                                 and r[2].count(b".ts") >= 2 and r, 20, what="a playlist with segments")
    assert playlist[1] == "application/vnd.apple.mpegurl"
    segment = [line for line in playlist[2].decode().splitlines() if line.endswith(".ts")][0]
    status, ctype, ts = get(port, f"/live/kitchen/{segment}")
    assert status == 200 and ctype == "video/mp2t" and ts[0] == 0x47  # MPEG-TS sync byte

    # FFmpeg reads the live stream from the gateway: the camera's own H.264, not re-encoded.
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,width,height", "-of", "json",
                            f"http://127.0.0.1:{port}/live/kitchen/index.m3u8"],
                           capture_output=True, text=True, timeout=30)
    streams = json.loads(probe.stdout)["streams"]
    assert streams[0]["codec_name"] == "h264" and streams[0]["width"] == 640, probe.stdout

    status_json = json.loads(get(port, "/public/status")[2])
    assert [c["id"] for c in status_json["cameras"]] == ["kitchen"]
    assert status_json["site"] == "Test canteen"

    for path in ["/live/storage/index.m3u8", "/live/nope/index.m3u8", "/live/kitchen/../../gateway.yaml",
                 "/live/kitchen/%2e%2e/index.m3u8", "/api/cameras", "/metrics", "/healthz"]:
        assert get(port, path)[0] == 404, path
    assert gw.terminate() == 0
