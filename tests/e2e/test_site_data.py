"""A canteen's own frames, the path of models/README.md ("Your own kitchen's photos"): the gateway
saves them from its cameras (training_frames); split_site_frames.py splits them by whole days into
frames to train on and frames to measure on; kitchen-eval --write-labels pre-labels them with a
check's own boxes; the folder it leaves is one that models/train/site_photos.py (the training
scripts' --site) accepts and that kitchen-eval reads back as those same boxes; a folder that cannot
be trained on is refused with the file and line at fault; and with PyTorch present, a few
fine-tuning steps on it give a model the gateway loads.

The pre-labelling and training tests use photos of ../shared as stand-in kitchen frames and are
skipped without it (the live-camera test then films a test pattern); the folder checks need neither
../shared nor PyTorch."""

import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys

import re
import time

import cv2
import numpy as np
import pytest

import kg_e2e

SHARED = pathlib.Path(os.environ.get("KG_SHARED_DIR") or kg_e2e.SOURCE_DIR.parent / "shared")
EVAL_BIN = str(pathlib.Path(kg_e2e.GATEWAY_BIN).with_name("kitchen-eval"))
TRAIN = kg_e2e.SOURCE_DIR / "models" / "train"
MODELS = kg_e2e.SOURCE_DIR / "models"

sys.path.insert(0, str(TRAIN))
import site_photos  # noqa: E402  (torch-free: the folder reader of --site)

CHECKS = [
    # manifest, photos standing in for a canteen's frames, --classes, classes of the model trained on them
    ("kitchen-head-covering.yaml", "helmet-yolo/valid", "0=covered,1=bare", 2),
    ("kitchen-mask.yaml", "mask-yolo/valid", "0=no_mask,1=with_mask", 3),
]
needs_photos = pytest.mark.skipif(not (SHARED / "datasets").exists(), reason=f"no labelled photos in {SHARED}")


def frames_folder(tmp_path, dataset, n):
    """The first `n` photos of a shared dataset, unlabelled, as an installer's frames/images; one is
    renamed to upper-case .JPG, as cameras and phones name files."""
    src = sorted((SHARED / "datasets" / dataset / "images").glob("*.jpg"))[:n]
    images = tmp_path / "frames" / "images"
    images.mkdir(parents=True)
    for i, p in enumerate(src):
        shutil.copy(p, images / (p.stem + (".JPG" if i == 0 else ".jpg")))
    return tmp_path / "frames"


def kitchen_eval(*args):
    return subprocess.run([EVAL_BIN, *map(str, args)], capture_output=True, text=True,
                          env=dict(os.environ, KG_SHARED_DIR=str(SHARED)))


@needs_photos
@pytest.mark.parametrize("manifest,dataset,classes,n_classes", CHECKS, ids=[c[0] for c in CHECKS])
def test_prelabelled_frames_are_a_site_folder_of_the_checks_own_boxes(manifest, dataset, classes, n_classes,
                                                                      tmp_path):
    frames = frames_folder(tmp_path, dataset, 8)
    spec = MODELS / manifest
    r = kitchen_eval("-d", spec, "--data", frames, "--classes", classes, "--write-labels", frames / "labels",
                     "--json", tmp_path / "written.json")
    assert r.returncode == 0, r.stderr
    # Unlabelled frames: no precision or recall of 0 passed off as a verdict.
    assert "nothing to measure against" in r.stdout, r.stdout
    written = json.loads((tmp_path / "written.json").read_text())["labels_written"]
    assert written["files"] == 8, written

    # Every frame has its label file (the upper-case .JPG one too), and the training scripts accept them.
    site = site_photos.read_folder(frames, n_classes)
    assert [p.name for p, _ in site] == sorted(p.name for p in (frames / "images").iterdir())
    boxes = [b for _, bs in site for b in bs]
    names = dict(c.split("=") for c in classes.split(","))
    assert {names[str(b[0])]: sum(1 for x in boxes if x[0] == b[0]) for b in boxes} == \
        {k: v for k, v in written["boxes"].items() if v}, written
    assert len(boxes) >= 8, "the check found almost nothing on photos full of heads: nothing was tested"

    # Read back as labels, they are the check's boxes exactly: each is found again, in its class.
    r = kitchen_eval("-d", spec, "--data", frames, "--classes", classes, "--json", tmp_path / "again.json")
    assert r.returncode == 0, r.stderr
    again = json.loads((tmp_path / "again.json").read_text())["classes"]
    for name, counts in again.items():
        assert counts["gt"] == written["boxes"][name], (name, counts)
        assert counts["iou_0.5"]["fp"] == 0 and counts["iou_0.5"]["fn"] == 0, (name, counts)

    # A second run would overwrite what a person may have corrected since: refused, nothing touched.
    before = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in (frames / "labels").iterdir()}
    r = kitchen_eval("-d", spec, "--data", frames, "--classes", classes, "--write-labels", frames / "labels")
    assert r.returncode == 2
    assert "exists" in r.stderr and str(frames / "labels") in r.stderr, r.stderr
    assert before == {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in (frames / "labels").iterdir()}


def make_site(root, labels, images=("frame.jpg",)):
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for name in images:
        (root / "images" / name).write_bytes(b"")  # the reader checks labels only
    for name, text in labels.items():
        (root / "labels" / name).write_text(text)
    return root


BAD_SITES = [
    # labels, images, n_classes, what the error must say
    ({}, ("frame.jpg",), 2, ["frame.txt", "missing", "empty label file"]),
    ({"frame.txt": "0 0.5 0.5 0.1 0.1\n2 0.5 0.5 0.1 0.1\n"}, ("frame.jpg",), 2,
     ["frame.txt:2", "class 2 is not one of 0 to 1"]),
    ({"frame.txt": "1 320 240 40 40\n"}, ("frame.jpg",), 2, ["frame.txt:1", "pixels?"]),
    ({"frame.txt": "\n0 0.5 0.5 0.1\n"}, ("frame.jpg",), 2, ["frame.txt:2", "expected 'class cx cy w h'"]),
    ({"frame.txt": "0 0.1 0.1 0.3 0.1 0.3 0.4 0.1\n"}, ("frame.jpg",), 2, ["frame.txt:1", "or a polygon"]),
    ({"frame.txt": "0 10 10 300 10 300 200\n"}, ("frame.jpg",), 2, ["frame.txt:1", "pixels?"]),
    ({"frame.txt": "bare 0.5 0.5 0.1 0.1\n"}, ("frame.jpg",), 2, ["frame.txt:1", "not a whole number"]),
    ({"frame.txt": "0 0.5 0.5 nan 0.1\n"}, ("frame.jpg",), 2, ["frame.txt:1", "finite"]),
    ({"frame.txt": ""}, ("frame.jpg", "frame.png"), 2, ["frame.jpg", "frame.png", "frame.txt"]),
    ({}, (), 2, ["no .jpg, .jpeg or .png images"]),
]


@pytest.mark.parametrize("labels,images,n_classes,expected", BAD_SITES,
                         ids=["no-label-file", "class-out-of-range", "pixels", "four-fields", "polygon-odd",
                              "polygon-pixels", "class-name", "nan", "two-images-one-label", "no-images"])
def test_a_site_folder_that_cannot_be_trained_on_is_refused_naming_the_fault(labels, images, n_classes,
                                                                             expected, tmp_path):
    site = make_site(tmp_path / "site", labels, images)
    with pytest.raises(site_photos.SiteDataError) as e:
        site_photos.read_folder(site, n_classes)
    for text in expected:
        assert text in str(e.value), (text, str(e.value))


def test_a_good_site_folder_reads_as_written(tmp_path):
    site = make_site(tmp_path / "site", {"a.txt": "0 0.5 0.4 0.2 0.3\n\n2 0.1 0.1 0.05 0.05\n", "B.txt": ""},
                     ("a.jpg", "B.JPEG"))
    got = site_photos.read_folder(site, 3)
    assert [(p.name, boxes) for p, boxes in got] == [
        ("B.JPEG", []), ("a.jpg", [(0, 0.5, 0.4, 0.2, 0.3), (2, 0.1, 0.1, 0.05, 0.05)])]
    # A segmentation export's polygon is its box, clipped to the frame (kitchen-eval reads it so too;
    # the trainer refused it).
    (site / "labels" / "B.txt").write_text("1 0.25 0.5 0.5 0.25 0.75 0.5 0.5 0.75\n0 0.9 0.8 1.1 0.8 1.1 1.0 0.9 1.0\n")
    got = dict((p.name, boxes) for p, boxes in site_photos.read_folder(site, 3))
    assert got["B.JPEG"] == [(1, 0.5, 0.5, 0.5, 0.5), (0, pytest.approx(0.95), pytest.approx(0.9), pytest.approx(0.1), pytest.approx(0.2))]
    (site / "labels" / "B.txt").write_text("")
    with pytest.raises(site_photos.SiteDataError, match="no images/ folder"):
        site_photos.read_folder(tmp_path / "elsewhere", 3)

    # The same check from the command line, as models/README.md has an installer run it.
    def check(folder, model):
        return subprocess.run(["/usr/bin/python3", str(TRAIN / "site_photos.py"), str(folder), "--model", model],
                              capture_output=True, text=True)
    r = check(site, "masks")
    assert r.returncode == 0 and "2 frames (1 with no head), 1 no_mask, 0 with_mask, 1 background" in r.stdout, r
    r = check(site, "heads")  # class 2 is no head-detector class
    assert r.returncode == 2 and "a.txt:3: class 2 is not one of 0 to 1" in r.stderr, r


def one_labelled_frame(root):
    """A frame with nothing in it (a flat grey wall) and one face labelled no_mask: no detector finds
    anything there."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    cv2.imwrite(str(root / "images" / "wall.jpg"), np.full((360, 640, 3), 128, np.uint8))
    (root / "labels" / "wall.txt").write_text("0 0.5 0.5 0.2 0.3\n")
    return root


@pytest.mark.parametrize("args,message", [
    (["--classes", "0=no_mask,1=mask"], "'mask', which classic:mask never gives (its classes: with_mask, no_mask)"),
    (["--classes", "0=no_mask,1=with_mask", "--compare", "classic:head"],
     "'no_mask', which classic:head never gives (its classes: covered, bare)"),
])
def test_a_class_the_detector_never_gives_is_refused(args, message, tmp_path):
    # A typo or another detector's name gave that class a silent 0/0/0.
    r = kitchen_eval("-d", "classic:mask", "--data", one_labelled_frame(tmp_path / "d"), *args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert message in r.stderr, r.stderr
    # Counted as one class, any detector's boxes are that class.
    r = kitchen_eval("-d", "classic:mask", "--data", tmp_path / "d", "--classes", "0=face", "--any-class")
    assert r.returncode == 0, r.stderr


def test_write_labels_checks_everything_before_writing_anything(tmp_path):
    # All the files or none. a.jpg and a.png both wrote a.txt, the second replacing the first; and a
    # class of the detector that --classes gives no id stopped the run at its first box, with the
    # files of the images before it written (on these flat frames nothing is found: all were written).
    d = tmp_path / "d"
    (d / "images").mkdir(parents=True)
    for name in ("a.jpg", "a.png", "b.jpg"):
        cv2.imwrite(str(d / "images" / name), np.full((240, 320, 3), 128, np.uint8))
    both = ["--classes", "0=no_mask,1=with_mask", "--write-labels", d / "labels"]
    r = kitchen_eval("-d", "classic:mask", "--data", d, *both)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert str(d / "images" / "a.jpg") in r.stderr and str(d / "images" / "a.png") in r.stderr, r.stderr
    assert sorted(p.name for p in d.iterdir()) == ["images"]
    (d / "images" / "a.png").unlink()
    r = kitchen_eval("-d", "classic:mask", "--data", d, "--classes", "0=no_mask", "--write-labels", d / "labels")
    assert r.returncode == 2 and "'with_mask'" in r.stderr, (r.stdout, r.stderr)
    assert sorted(p.name for p in d.iterdir()) == ["images"]
    r = kitchen_eval("-d", "classic:mask", "--data", d, *both)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in d.iterdir()) == ["images", "labels"]
    assert sorted(p.name for p in (d / "labels").iterdir()) == ["a.txt", "b.txt"]


def test_write_labels_stopped_by_ctrl_c_leaves_no_folder(tmp_path):
    # Ctrl-C killed kitchen-eval outright: the label folder it had made (and its parents) stayed, with
    # a hidden folder of half the labels in it. The stop is now taken between two images.
    d = tmp_path / "d"
    (d / "images").mkdir(parents=True)
    noise = np.random.default_rng(7)
    for i in range(120):
        cv2.imwrite(str(d / "images" / f"{i:03}.jpg"), noise.integers(0, 255, (540, 960, 3), np.uint8))
    labels = tmp_path / "out" / "run" / "labels"
    p = subprocess.Popen([EVAL_BIN, "-d", "classic:mask", "--data", str(d), "--classes", "0=no_mask,1=with_mask",
                          "--write-labels", str(labels)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=dict(os.environ, KG_SHARED_DIR=str(SHARED)))
    deadline = time.monotonic() + 60
    while not labels.exists() and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert labels.exists(), p.communicate()
    p.send_signal(2)  # SIGINT, as Ctrl-C
    out, err = p.communicate(timeout=60)
    assert p.returncode == 2, (out, err)
    assert f"stopped: nothing written to {labels}" in err, err
    assert sorted(x.name for x in tmp_path.iterdir()) == ["d"]


def test_a_figure_with_nothing_to_divide_by_is_a_dash_not_zero(tmp_path):
    # Nothing found on the frame: no precision (it printed 0.000, as if every box were wrong); recall
    # and F1 are 0 against the one face. Nothing labelled and nothing found: no figure at all.
    r = kitchen_eval("-d", "classic:mask", "--data", one_labelled_frame(tmp_path / "d"), "--classes",
                     "0=no_mask,1=with_mask", "--operating-points", "--json", tmp_path / "r.json")
    assert r.returncode == 0, r.stderr
    rows = {line.split()[0]: line.split()[1:] for line in r.stdout.splitlines()[2:4]}
    assert rows == {"no_mask": ["1", "-", "0.000", "0.000", "-", "0.000", "0.000"],
                    "with_mask": ["0", "-", "-", "-", "-", "-", "-"]}, r.stdout
    points = [line.split() for line in r.stdout.splitlines() if line.startswith("no_mask ")][1:]
    assert points and all(p[4:] == ["-", "0.000", "0.000"] for p in points), r.stdout
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["classes"]["no_mask"]["iou_0.3"] == {"tp": 0, "fp": 0, "fn": 1, "precision": None, "recall": 0,
                                                        "f1": 0}
    assert result["classes"]["with_mask"]["iou_0.3"]["f1"] is None
    assert result["operating_points"]["no_mask"][0]["precision"] is None


HAVE_TORCH = subprocess.run(["/usr/bin/python3", "-c", "import torch"], capture_output=True).returncode == 0


@needs_photos
@pytest.mark.skipif(not HAVE_TORCH, reason="no PyTorch (python3-torch) for /usr/bin/python3")
def test_a_few_fine_tuning_steps_on_prelabelled_frames_give_a_model_the_gateway_loads(tmp_path):
    """The whole path on stand-in frames: pre-label, fine-tune the shipped head network with --site,
    and run the check with the new file. A few steps prove the plumbing, not the accuracy
    (models/README.md gives the recipe and what it measured)."""
    frames = frames_folder(tmp_path, "helmet-yolo/valid", 6)
    r = kitchen_eval("-d", MODELS / "kitchen-head-covering.yaml", "--data", frames, "--classes", "0=covered,1=bare",
                     "--write-labels", frames / "labels")
    assert r.returncode == 0, r.stderr
    out = tmp_path / "site-heads.onnx"
    r = subprocess.run(["/usr/bin/python3", str(TRAIN / "train_head_detector.py"), "--init",
                        str(MODELS / "kitchen-one-pass-heads.onnx"), "--site", str(frames), "--steps", "2",
                        "--batch", "4", "--threads", "2", "--lr", "1e-4", "--out", str(out)],
                       capture_output=True, text=True, cwd=tmp_path, env=dict(os.environ, KG_SHARED_DIR=str(SHARED)))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "site frames: 6 (" in r.stdout, r.stdout
    manifest = tmp_path / "site-head-covering.yaml"
    text = (MODELS / "kitchen-head-covering.yaml").read_text()
    assert "model: kitchen-one-pass-heads.onnx" in text and "ensemble: [kitchen-covering-heads.onnx]" in text
    manifest.write_text(text.replace("model: kitchen-one-pass-heads.onnx", f"model: {out}")
                        .replace("ensemble: [kitchen-covering-heads.onnx]",
                                 f"ensemble: [{MODELS / 'kitchen-covering-heads.onnx'}]"))
    r = kitchen_eval("-d", manifest, "--data", frames, "--classes", "0=covered,1=bare", "--json", tmp_path / "e.json")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "e.json").read_text())["images"] == 6


def test_the_gateway_saves_frames_to_label_from_a_live_camera(rtsp_server, broker, collector, gateway, make_clip,
                                                              tmp_path):
    """training_frames on a real RTSP camera: one frame an interval from the chosen camera only, as
    the checks see it (analysis size, nothing drawn), named by camera and local time, in the folder
    kitchen-eval pre-labels. A stand-in kitchen frame from ../shared shows heads; without it a test
    pattern still proves the saving."""
    photos = sorted((SHARED / "datasets" / "helmet-yolo" / "valid" / "images").glob("*.jpg"))
    if photos:
        # The photo with the most labelled heads: the check must find some of them.
        photo = max(photos, key=lambda p: len((p.parent.parent / "labels" / (p.stem + ".txt")).read_text().split("\n")))
        clip = tmp_path / "heads.mp4"
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-loop", "1", "-t", "12", "-r", "25", "-i", str(photo),
                        "-vf", "scale=640:640,noise=alls=3:allf=t,format=yuv420p", "-c:v", "libx264", "-preset",
                        "ultrafast", "-g", "25", str(clip)], check=True)
    else:
        clip = make_clip([("normal", 12)])
    server = rtsp_server({"/kitchen": clip, "/store": clip})
    analysis = {"fps": 2, "width": 640, "height": 640}
    cams = [kg_e2e.camera("kitchen", server.url("/kitchen"), checks=["head_covering"], analysis=analysis),
            kg_e2e.camera("store", server.url("/store"), checks=["head_covering"], analysis=analysis)]
    saved = tmp_path / "training-frames"
    config = kg_e2e.base_config(broker, cams, tmp_path, training_frames={
        "path": str(saved), "every": "2s", "cameras": ["kitchen"]})
    gw = gateway(config, env={"KG_SHARED_DIR": str(SHARED)})
    images = saved / "kitchen" / "images"
    kg_e2e.wait_until(lambda: images.is_dir() and len(list(images.glob("*.jpg"))) >= 3, 30,
                      what="three training frames")
    assert gw.terminate() == 0
    assert not (saved / "store").exists(), "a camera not in training_frames.cameras had frames saved"
    assert "training frames: one every 2 s into" in gw.output()

    names = sorted(p.name for p in images.iterdir())
    assert all(re.fullmatch(r"kitchen_\d{4}-\d\d-\d\d_\d{6}(-\d+)?\.jpg", n) for n in names), names
    stamps = [time.mktime(time.strptime(n[len("kitchen_"):len("kitchen_") + 17], "%Y-%m-%d_%H%M%S")) for n in names]
    assert all(b - a >= 2 for a, b in zip(stamps, stamps[1:])), names  # one an interval, not one a frame
    for n in names:
        img = cv2.imread(str(images / n))
        assert img is not None and img.shape[:2] == (640, 640), n

    # The installer's next step: pre-label them with the check's own boxes.
    r = kitchen_eval("-d", MODELS / "kitchen-head-covering.yaml", "--data", saved / "kitchen",
                     "--classes", "0=covered,1=bare", "--write-labels", saved / "kitchen" / "labels")
    assert r.returncode == 0, r.stderr
    assert f"wrote {len(names)} label files" in r.stdout, r.stdout
    labels = sorted((saved / "kitchen" / "labels").iterdir())
    assert [p.stem for p in labels] == [pathlib.Path(n).stem for n in names]
    if photos:
        assert all(p.read_text().strip() for p in labels), "no head found on a saved frame of a crowd of heads"

    # Restarted with the labels beside them: the frames of before are counted, the labels left alone.
    gw = gateway(config, "again", env={"KG_SHARED_DIR": str(SHARED)})
    kg_e2e.wait_until(lambda: len(list(images.glob("*.jpg"))) > len(names), 20, what="a frame after the restart")
    assert gw.terminate() == 0
    assert f"training frames in {saved}: {len(names)} kept" in gw.output(), gw.output()
    assert sorted((saved / "kitchen" / "labels").iterdir()) == labels

    # Outside its schedule nothing is saved, however long since the last frame.
    config["schedules"] = {"always": {"times": ["00:00-00:00"]}, "never": {"not": "always"}}
    config["training_frames"].update({"every": "1s", "schedule": "never"})
    before = sorted(images.glob("*.jpg"))
    gw = gateway(config, "never", env={"KG_SHARED_DIR": str(SHARED)})
    started = time.time()
    kg_e2e.wait_until(lambda: any(st.get("fps_analysed", 0) > 0 and kg_e2e.parse_time(st["time"]) > started + 2
                                  for st in collector.states("kitchen")), 20,
                      what="the camera analysed for a few seconds (so frames were offered)")
    assert gw.terminate() == 0
    assert sorted(images.glob("*.jpg")) == before, "a frame saved outside training_frames.schedule"

    # Saving turned off: what was saved still expires (they show staff), and the labels stay.
    config["training_frames"].update({"enabled": False, "max_age": "1s"})
    gw = gateway(config, "off", env={"KG_SHARED_DIR": str(SHARED)})
    kg_e2e.wait_until(lambda: not list(images.glob("*.jpg")), 15, what="the saved frames' expiry")
    assert gw.terminate() == 0
    assert "training frames: saving is off" in gw.output(), gw.output()
    assert sorted((saved / "kitchen" / "labels").iterdir()) == labels


def saved_frames(root, camera, days, per_day=3, labelled=()):
    """A camera folder as training_frames leaves it: `per_day` frames on each of `days` (day numbers of
    2026-11), with label files for the (day, n) in `labelled`."""
    folder = root / camera
    (folder / "images").mkdir(parents=True)
    for day in days:
        for n in range(per_day):
            stem = f"{camera}_2026-11-{day:02d}_{10 + n:02d}3000"
            (folder / "images" / f"{stem}.jpg").write_bytes(b"jpeg " + stem.encode())
            if (day, n) in labelled:
                (folder / "labels").mkdir(exist_ok=True)
                (folder / "labels" / f"{stem}.txt").write_text("1 0.5 0.5 0.1 0.1\n")
    return folder


def split_frames(*args):
    return subprocess.run(["/usr/bin/python3", str(TRAIN / "split_site_frames.py"), *map(str, args)],
                          capture_output=True, text=True)


def test_saved_frames_split_into_train_and_heldout_by_whole_days(tmp_path):
    days = [2, 3, 4, 5, 9, 10, 11, 12]
    cook = saved_frames(tmp_path / "saved", "cooking", days, labelled={(5, 0), (12, 1)})
    prep = saved_frames(tmp_path / "saved", "prep", days[:6], per_day=2)
    out = tmp_path / "site"
    r = split_frames(cook, prep, "--out", out)
    assert r.returncode == 0, r.stderr
    # Every 4th day in date order is held out (the 5th and the 12th), for both cameras.
    held = sorted(p.name for p in (out / "heldout" / "images").iterdir())
    assert held == sorted([f"cooking_2026-11-{d}_{h}3000.jpg" for d in ("05", "12") for h in (10, 11, 12)]
                          + [f"prep_2026-11-05_{h}3000.jpg" for h in (10, 11)]), held
    trained = {p.name[len("cooking_"):][:10] if p.name.startswith("cooking") else p.name[len("prep_"):][:10]
               for p in (out / "train" / "images").iterdir()}
    assert trained == {f"2026-11-{d:02d}" for d in (2, 3, 4, 9, 10, 11)}
    assert len(list((out / "train" / "images").iterdir())) == 6 * 3 + 5 * 2
    # Labels go with their frames; the frames are copies, the gateway's folder is left as it was.
    assert sorted(p.name for p in (out / "heldout" / "labels").iterdir()) == [
        "cooking_2026-11-05_103000.txt", "cooking_2026-11-12_113000.txt"]
    assert not (out / "train" / "labels").exists()
    assert len(list((cook / "images").iterdir())) == 24
    assert "heldout: 8 frames of 2 days (2 with labels)" in r.stdout, r.stdout
    assert "train: 28 frames of 6 days (0 with labels)" in r.stdout, r.stdout

    # Never over an existing folder.
    again = split_frames(cook, "--out", out)
    assert again.returncode == 2 and "exists" in again.stderr, again.stderr


@pytest.mark.parametrize("make,args,expected", [
    (lambda root: saved_frames(root, "cooking", [2], per_day=5), [], "1 day(s) of frames"),
    (lambda root: saved_frames(root, "cooking", [2, 3]), [], "2 day(s) of frames: holding out every 4th day"),
    (lambda root: saved_frames(root, "cooking", range(1, 9)), ["--heldout-share", "1.5"], "between 0 and 1"),
    (lambda root: root / "nowhere", [], "no images/ folder"),
], ids=["one_day", "too_few_days", "bad_share", "not_a_camera_folder"])
def test_a_split_that_cannot_be_made_is_refused_with_nothing_written(make, args, expected, tmp_path):
    folder = make(tmp_path / "saved")
    r = split_frames(folder, "--out", tmp_path / "site", *args)
    assert r.returncode == 2 and expected in r.stderr, r.stderr
    assert not (tmp_path / "site").exists()


def test_a_frame_not_named_by_the_gateway_is_refused(tmp_path):
    folder = saved_frames(tmp_path / "saved", "cooking", range(1, 9))
    (folder / "images" / "IMG_0042.jpg").write_bytes(b"jpeg")
    r = split_frames(folder, "--out", tmp_path / "site")
    assert r.returncode == 2 and "IMG_0042.jpg: not named <camera>_<YYYY-MM-DD>_<HHMMSS>" in r.stderr, r.stderr
    assert not (tmp_path / "site").exists()
