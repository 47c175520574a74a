"""The face-mask check end to end on a live camera: a stream made from real photos (a bare face, then
only masked faces) through the dnn back-end gives one no_mask event with the face boxed, its
annotated snapshot, and its end once the bare face is gone. Skipped without ../shared."""

import json
import os
import pathlib
import subprocess

import pytest

import kg_e2e

SHARED = pathlib.Path(os.environ.get("KG_SHARED_DIR") or kg_e2e.SOURCE_DIR.parent / "shared")
DATA = SHARED / "datasets/mask-yolo/valid"
MANIFEST = kg_e2e.SOURCE_DIR / "models/reference/aizoo-face-mask.yaml"
EVAL_BIN = str(pathlib.Path(kg_e2e.GATEWAY_BIN).with_name("kitchen-eval"))

pytestmark = pytest.mark.skipif(not (SHARED / "models/aizoo-face-mask.caffemodel").exists(),
                                reason=f"no photos or reference models in {SHARED}")


def pick_photos(tmp_path):
    """The photo with the most certain bare face, and one with masked faces only."""
    dump = tmp_path / "dump.json"
    subprocess.run([EVAL_BIN, "-d", str(MANIFEST), "--data", str(DATA), "--classes", "0=no_mask,1=with_mask",
                    "--dump", str(dump)], check=True, capture_output=True, env=dict(os.environ, KG_SHARED_DIR=str(SHARED)))
    found = json.loads(dump.read_text())
    bare = max(found, key=lambda img: max([b["score"] for b in found[img] if b["label"] == "no_mask"] or [0]))
    masked = max((img for img in found if found[img] and all(b["label"] == "with_mask" for b in found[img])),
                 key=lambda img: min(b["score"] for b in found[img]))
    return bare, masked


def test_a_bare_face_on_camera_is_one_no_mask_event_with_evidence(broker, collector, schemas, gateways, tmp_path):
    bare, masked = pick_photos(tmp_path)
    clip = tmp_path / "faces.mp4"
    still = "scale=640:640,pad=640:640,noise=alls=3:allf=t,format=yuv420p"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-loop", "1", "-t", "14", "-r", "25", "-i", bare,
                    "-loop", "1", "-t", "16", "-r", "25", "-i", masked, "-filter_complex",
                    f"[0:v]{still}[a];[1:v]{still}[b];[a][b]concat=n=2:v=1:a=0[v]", "-map", "[v]",
                    "-c:v", "libx264", "-preset", "ultrafast", "-g", "50", str(clip)], check=True)
    cam = kg_e2e.camera("line", str(clip), checks=["mask"], analysis={"fps": 2, "width": 640, "height": 640},
                        rules={"mask": {"confirm": "3s", "clear": "4s", "cooldown": "0s"}})
    # A user's own model: its manifest maps a class to a check and a severity, nothing more.
    user_manifest = tmp_path / "ppe.yaml"
    user_manifest.write_text(MANIFEST.read_text().replace(
        "{name: NoMask, label: no_mask, check: mask, severity: 3}",
        "{name: NoMask, label: uncovered_face, check: ppe, severity: 2}").replace(
        "{name: Mask, label: with_mask, check: mask}", "{name: Mask}"))
    user = kg_e2e.camera("user", str(clip), checks=["model:ppe"], analysis={"fps": 2, "width": 640, "height": 640},
                         rules={"model:ppe": {"confirm": "3s", "clear": "4s", "cooldown": "0s"}})
    config = kg_e2e.base_config(broker, [cam, user], tmp_path)
    config["detectors"] = {"mask": str(MANIFEST)}
    config["models"] = {"ppe": str(user_manifest)}
    gw = gateways(config, env={"KG_SHARED_DIR": str(SHARED)})  # the manifest finds the model through it
    kg_e2e.wait_until(lambda: len([e for e in collector.events() if e["state"] == "end"]) == 2, 40,
                      what="both events' ends")
    assert gw.terminate() == 0
    events = [e for e in collector.events() if e["camera"] == "line"]
    theirs = [e for e in collector.events() if e["camera"] == "user"]
    assert [(e["state"], e["check"], e["label"], e["severity"]) for e in theirs] == [
        ("start", "ppe", "uncovered_face", 2), ("end", "ppe", "uncovered_face", 2)], theirs
    assert [(e["state"], e["check"], e["label"]) for e in events] == [("start", "mask", "no_mask"),
                                                                      ("end", "mask", "no_mask")], events
    start = events[0]
    assert start["severity"] == 3 and start["boxes"] and start["boxes"][0]["label"] == "no_mask"
    assert start["boxes"][0]["score"] >= 0.5
    assert (tmp_path / "evidence" / start["evidence"]["snapshot"]).exists()
    assert collector.on(f"kitchen/test-site/events/{start['id']}/snapshot")
    assert 12 <= events[1]["duration_s"] <= 20, events[1]
    schemas.validate_all(collector)
