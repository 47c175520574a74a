"""What a check does on a real gateway when a zone, a user's model or a model manifest is not the
simple case: a camera fault on a camera with a zone for every check still ends; a user's two-stage
model raises its classifier's classes; a manifest that disagrees with its network is refused by
--check-config, naming the key, instead of failing on every frame of the running gateway."""

import os
import pathlib
import re
import subprocess

import pytest
import yaml

import kg_e2e

SHARED = pathlib.Path(os.environ.get("KG_SHARED_DIR") or kg_e2e.SOURCE_DIR.parent / "shared")
MODELS = kg_e2e.SOURCE_DIR / "models"
# A close-up bare face of mask-yolo/valid (evaluation data: shown to the gateway, never trained on).
BARE_FACE = SHARED / "datasets/mask-yolo/valid/images/maksssksksss128_png.rf.3b2f5e8b17938a4515f6fc090ba0cf83.jpg"


def mask_manifest(tmp_path, name, edit=lambda text: text):
    """models/kitchen-mask.yaml copied to tmp_path (its networks named by absolute path), edited."""
    text = (MODELS / "kitchen-mask.yaml").read_text()
    for network in ("kitchen-one-pass-heads.onnx", "kitchen-mask-classifier.onnx"):
        text = text.replace(network, str(MODELS / network))
    path = tmp_path / name
    path.write_text(edit(text))
    return path


def test_a_camera_fault_ends_on_a_camera_with_a_zone_for_every_check(broker, collector, gateways, make_clip,
                                                                     tmp_path):
    """A zone without `checks` applies to every check; camera health is a condition of the whole
    picture. Its "fault cleared" used to go to the zone's tracker, not to the one that saw the
    fault start: the black-picture alarm never ended."""
    clip = make_clip([("normal", 6), ("black", 8), ("normal", 16)])
    zones = {"prep": {"polygon": [[0, 0], [1, 0], [1, 1], [0, 1]]}}
    cameras = [kg_e2e.camera("plain", clip), kg_e2e.camera("zoned", clip, zones=zones)]
    gw = gateways(kg_e2e.base_config(broker, cameras, tmp_path))

    def black(camera):
        return [(e["state"], e.get("zone")) for e in collector.events()
                if e["camera"] == camera and e["label"] == "black" and e["state"] != "update"]

    kg_e2e.wait_until(lambda: black("plain") == [("start", None), ("end", None)], 40, what="plain: black start, end")
    kg_e2e.wait_until(lambda: len(black("zoned")) >= 2, 10, what="zoned: black start, end")
    assert gw.terminate() == 0
    assert black("zoned") == [("start", None), ("end", None)]


@pytest.mark.skipif(not BARE_FACE.exists(), reason=f"no photos in {SHARED}")
def test_a_two_stage_user_model_raises_its_classifiers_classes(broker, collector, gateways, tmp_path):
    """kitchen-mask.yaml as a user's model (`model:faces`): its first stage finds heads, its
    classifier says no_mask. The model check used to run the first stage alone and map the first
    stage's classes: it raised nothing, while --check-config said OK."""
    clip = tmp_path / "face.mp4"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-loop", "1", "-t", "20", "-r", "25", "-i", str(BARE_FACE),
                    "-vf", "scale=640:640,noise=alls=3:allf=t,format=yuv420p", "-c:v", "libx264",
                    "-preset", "ultrafast", "-g", "50", str(clip)], check=True)
    manifest = mask_manifest(tmp_path, "faces.yaml")
    rules = {"confirm": "2s", "clear": "3s", "cooldown": "0s"}
    cam = kg_e2e.camera("line", str(clip), checks=["model:faces"],
                        analysis={"fps": 2, "width": 640, "height": 640}, rules={"model:faces": rules})
    config = kg_e2e.base_config(broker, [cam], tmp_path)
    config["models"] = {"faces": str(manifest)}
    gw = gateways(config)
    kg_e2e.wait_until(lambda: any(e["state"] == "start" for e in collector.events()), 30, what="a start")
    assert gw.terminate() == 0
    starts = [e for e in collector.events() if e["state"] == "start"]
    assert {(e["check"], e["label"]) for e in starts} == {("mask", "no_mask")}, starts
    assert starts[0]["boxes"], starts[0]


def test_check_config_refuses_a_manifest_that_disagrees_with_its_network(broker, tmp_path):
    """A class list of another length than the classifier's output, and a key the loader would not
    read: refused at the key, where the running gateway used to fail on every head in view (and
    end), or silently keep the default."""
    cam = kg_e2e.camera("line", "kitchen.mp4", checks=["mask"])
    config = kg_e2e.base_config(broker, [cam], tmp_path)
    path = tmp_path / "gateway.yaml"

    def check(manifest):
        config["detectors"] = {"mask": str(manifest)}
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return subprocess.run([kg_e2e.GATEWAY_BIN, "--check-config", str(path)], capture_output=True, text=True,
                              timeout=60)

    good = check(mask_manifest(tmp_path, "good.yaml"))
    assert good.returncode == 0, good.stderr
    two = mask_manifest(tmp_path, "two-classes.yaml",
                        lambda t: t.replace("    - {name: background}", "    # no background class"))
    r = check(two)
    assert r.returncode == 2, r.stderr
    assert re.search(rf"^{re.escape(str(path))}:\d+:\d+: detectors\.mask: ", r.stderr, re.M), r.stderr
    assert "gives 3 probabilities, classifier.classes names 2" in r.stderr
    typo = mask_manifest(tmp_path, "typo.yaml", lambda t: t.replace("  nms_iou: 0.4", "  nms_iuo: 0.4"))
    r = check(typo)
    assert r.returncode == 2 and "output.nms_iuo: unknown key" in r.stderr, r.stderr
