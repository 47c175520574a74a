"""Where the eyes, nose, mouth and ears are on a face crop, from Google MediaPipe's BlazeFace (the
back-camera model of blazeface.py; Apache License 2.0, fetched by fetch_pretrained.sh), so that
train_mask_classifier.py --drawn-masks can draw a mask over a bare face where a mask is worn.

BlazeFace's back-camera model was trained on faces that fill a small part of the picture, so each
96x96 crop is set in the middle of a grey canvas three times its side before it is read at 256x256.
Its anchor of highest face score gives the six points, in MediaPipe's order: the two eyes, nose
tip, mouth centre, the two ear tragions.

    /usr/bin/python3 models/train/face_points.py     # shows the points on face photos, /tmp/face-points.png
"""

import numpy as np
import torch

import blazeface

POINTS = 6  # right eye, left eye, nose tip, mouth centre, right ear, left ear (MediaPipe's order)


class FacePoints:
    """BlazeFace's face score and six points for each face crop (uint8 BGR, square)."""

    def __init__(self, model_dir=blazeface.DEFAULT_DIR):
        # The detector's four outputs: scores and numbers of the stride-16 and stride-32 anchors.
        self.trunk = blazeface.BlazeTrunk(taps=("conv2d_33", "conv2d_35", "conv2d_36", "conv2d_34"),
                                          model_dir=model_dir).eval()
        S = blazeface.INPUT
        centres = []
        for stride, n in ((16, 2), (32, 6)):
            g = S // stride
            ys, xs = np.meshgrid(np.arange(g), np.arange(g), indexing="ij")
            # anchor order of the flattened maps: cell (y, x) major, anchor minor
            centres.append(np.repeat(np.stack([(xs + 0.5) / g, (ys + 0.5) / g], -1).reshape(-1, 2), n, 0))
        self.centres = np.concatenate(centres)  # [anchors, 2], shares of the input

    def __call__(self, crops, batch=64):
        """(scores [N], points [N, 6, 2] in crop pixels) for N square crops of one size."""
        import cv2

        import common
        side = crops[0].shape[0]
        S = blazeface.INPUT
        scores, points = [], []
        for i in range(0, len(crops), batch):
            canvases = []
            for c in crops[i:i + batch]:
                canvas = np.full((3 * side, 3 * side, 3), 114, np.uint8)
                canvas[side:2 * side, side:2 * side] = c
                canvases.append(cv2.resize(canvas, (S, S), interpolation=cv2.INTER_AREA))
            with torch.no_grad():
                c16, r16, r32, c32 = self.trunk(common.to_tensor(canvases))
            n = len(canvases)
            # [N, anchors] scores and [N, anchors, 16] numbers, anchors in the centres' order
            s = torch.cat([c16.permute(0, 2, 3, 1).reshape(n, -1), c32.permute(0, 2, 3, 1).reshape(n, -1)], 1)
            r = torch.cat([r16.permute(0, 2, 3, 1).reshape(n, -1, 16), r32.permute(0, 2, 3, 1).reshape(n, -1, 16)], 1)
            best = s.argmax(1).numpy()
            for k in range(n):
                a = best[k]
                xy = r[k, a, 4:16].numpy().reshape(POINTS, 2) / S + self.centres[a]  # shares of the canvas
                points.append(xy * 3 * side - side)  # canvas shares -> crop pixels
                scores.append(float(torch.sigmoid(s[k, a])))
        return np.array(scores, np.float32), np.array(points, np.float32).reshape(-1, POINTS, 2)


def main():
    import cv2

    import common
    import train_mask_classifier as tmc
    shared = common.shared_dir()
    (tx, ty, _), _ = tmc.load(shared)
    pick = np.flatnonzero(ty == 0)[:32]
    crops = [tx[i] for i in pick]
    scores, pts = FacePoints()(crops)
    tiles = []
    for c, sc, p in zip(crops, scores, pts):
        t = cv2.resize(c, (192, 192))
        for j, (x, y) in enumerate(p * 2):
            cv2.circle(t, (int(x), int(y)), 3, [(0, 0, 255), (0, 255, 0), (255, 0, 0), (0, 255, 255),
                                               (255, 0, 255), (255, 255, 0)][j], -1)
        cv2.putText(t, f"{sc:.2f}", (3, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1)
        tiles.append(t)
    sheet = np.vstack([np.hstack(tiles[i:i + 8]) for i in range(0, 32, 8)])
    cv2.imwrite("/tmp/face-points.png", sheet)
    print("wrote /tmp/face-points.png; face scores 10/50/90th percentile", np.percentile(scores, [10, 50, 90]))


if __name__ == "__main__":
    main()
