"""Both hygiene checks on one network pass (the default models, models/kitchen-*.yaml), end to end on a
live camera: the gateway finds the defaults by itself (`auto`), says it shares the pass, and the
head-covering check (which adds a second network of its own) still turns a bare head into one bare_head event that ends when only covered
heads are left. Skipped without ../shared (the photos)."""

import json
import os
import pathlib
import subprocess

import pytest

import kg_e2e

SHARED = pathlib.Path(os.environ.get("KG_SHARED_DIR") or kg_e2e.SOURCE_DIR.parent / "shared")
DATA = SHARED / "datasets/helmet-yolo/valid"
MODELS = kg_e2e.SOURCE_DIR / "models"
EVAL_BIN = str(pathlib.Path(kg_e2e.GATEWAY_BIN).with_name("kitchen-eval"))

pytestmark = pytest.mark.skipif(not DATA.exists(), reason=f"no labelled photos in {SHARED}")


def pick_photos(tmp_path):
    """The photo with the most certain bare head, and one with certain covered heads only."""
    dump = tmp_path / "dump.json"
    subprocess.run([EVAL_BIN, "-d", str(MODELS / "kitchen-head-covering.yaml"), "--data", str(DATA),
                    "--classes", "0=covered,1=bare", "--dump", str(dump)], check=True, capture_output=True)
    found = json.loads(dump.read_text())
    bare = max(found, key=lambda img: max([b["score"] for b in found[img] if b["label"] == "bare"] or [0]))
    covered = max((img for img in found if found[img] and all(b["label"] == "covered" for b in found[img])),
                  key=lambda img: min(b["score"] for b in found[img]))
    return bare, covered


def test_both_checks_share_one_pass_and_a_bare_head_is_one_event(broker, collector, schemas, gateways, tmp_path):
    bare, covered = pick_photos(tmp_path)
    clip = tmp_path / "heads.mp4"
    still = "scale=640:640,noise=alls=3:allf=t,format=yuv420p"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-loop", "1", "-t", "14", "-r", "25", "-i", bare,
                    "-loop", "1", "-t", "16", "-r", "25", "-i", covered, "-filter_complex",
                    f"[0:v]{still}[a];[1:v]{still}[b];[a][b]concat=n=2:v=1:a=0[v]", "-map", "[v]",
                    "-c:v", "libx264", "-preset", "ultrafast", "-g", "50", str(clip)], check=True)
    rule = {"confirm": "3s", "clear": "4s", "cooldown": "0s"}
    cam = kg_e2e.camera("line", str(clip), checks=["mask", "head_covering"],
                        analysis={"fps": 2, "width": 640, "height": 640},
                        rules={"mask": dict(rule), "head_covering": dict(rule)})
    config = kg_e2e.base_config(broker, [cam], tmp_path)
    config["detectors"] = {"mask": "auto", "head_covering": "auto"}
    gw = gateways(config, env={"KG_MODELS_DIR": str(MODELS)})  # this checkout's, whatever the build directory
    kg_e2e.wait_until(lambda: [e["state"] for e in collector.events() if e["check"] == "head_covering"]
                      == ["start", "end"], 45, what="the bare_head event's start and end")
    assert gw.terminate() == 0
    log = gw.output()
    assert f"mask check: detector {MODELS / 'kitchen-mask.yaml'}" in log, log[-3000:]
    assert f"head_covering check: detector {MODELS / 'kitchen-head-covering.yaml'}" in log, log[-3000:]
    # The head network both checks read, run once per frame, and the head-covering check's second
    # network (its ensemble): two in all.
    assert "1 network pass(es) shared between checks: one run per frame each (2 network pass(es) per frame " \
        "in all)" in log, log[-3000:]
    heads = [e for e in collector.events() if e["check"] == "head_covering"]
    assert [(e["state"], e["label"], e["severity"]) for e in heads] == [("start", "bare_head", 3),
                                                                        ("end", "bare_head", 3)], heads
    assert heads[0]["boxes"] and all(b["label"] == "bare_head" for b in heads[0]["boxes"])
    assert 10 <= heads[1]["duration_s"] <= 20, heads[1]
    schemas.validate_all(collector)
