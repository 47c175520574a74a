"""The public models' own post-processing, transcribed from their repositories (numpy), to check
that the gateway's dnn back-end gives the same boxes: UltraFace's predict()/hard_nms() and AIZOO's
generate_anchors()/decode_bbox()/single_class_non_max_suppression(). Boxes are returned as
normalised (x1, y1, x2, y2, label_index, score)."""

import cv2
import numpy as np


# --- UltraFace (Ultra-Light-Fast-Generic-Face-Detector-1MB, vision/utils/box_utils.py) ---
def _area_of(left_top, right_bottom):
    hw = np.clip(right_bottom - left_top, 0.0, None)
    return hw[..., 0] * hw[..., 1]


def _iou_of(boxes0, boxes1, eps=1e-5):
    lt = np.maximum(boxes0[..., :2], boxes1[..., :2])
    rb = np.minimum(boxes0[..., 2:], boxes1[..., 2:])
    overlap = _area_of(lt, rb)
    return overlap / (_area_of(boxes0[..., :2], boxes0[..., 2:]) + _area_of(boxes1[..., :2], boxes1[..., 2:]) - overlap + eps)


def _hard_nms(box_scores, iou_threshold, candidate_size=200):
    scores, boxes = box_scores[:, -1], box_scores[:, :-1]
    picked = []
    indexes = np.argsort(scores)[-candidate_size:]
    while len(indexes) > 0:
        current = indexes[-1]
        picked.append(current)
        if len(indexes) == 1:
            break
        current_box = boxes[current, :]
        indexes = indexes[:-1]
        iou = _iou_of(boxes[indexes, :], np.expand_dims(current_box, axis=0))
        indexes = indexes[iou <= iou_threshold]
    return box_scores[picked, :]


def ultraface(model_path, image_bgr, size, prob_threshold, iou_threshold):
    net = cv2.dnn.readNet(model_path)
    image = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
    image = cv2.resize(image, size)
    image = (image - np.array([127, 127, 127])) / 128
    blob = np.transpose(image, [2, 0, 1])[np.newaxis].astype(np.float32)
    net.setInput(blob)
    boxes, confidences = net.forward(["boxes", "scores"])
    boxes, confidences = boxes[0], confidences[0]
    out = []
    for class_index in range(1, confidences.shape[1]):
        probs = confidences[:, class_index]
        mask = probs > prob_threshold
        if not mask.any():
            continue
        box_probs = np.concatenate([boxes[mask, :], probs[mask].reshape(-1, 1)], axis=1)
        for b in _hard_nms(box_probs, iou_threshold):
            out.append((b[0], b[1], b[2], b[3], class_index - 1, b[4]))
    return out


# --- AIZOO FaceMaskDetection (utils/anchor_generator.py, utils/anchor_decode.py, utils/nms.py) ---
def _generate_anchors(feature_map_sizes, anchor_sizes, anchor_ratios, offset=0.5):
    anchor_bboxes = []
    for idx, feature_size in enumerate(feature_map_sizes):
        cx = (np.linspace(0, feature_size[0] - 1, feature_size[0]) + offset) / feature_size[0]
        cy = (np.linspace(0, feature_size[1] - 1, feature_size[1]) + offset) / feature_size[1]
        cx_grid, cy_grid = np.meshgrid(cx, cy)
        center = np.concatenate((np.expand_dims(cx_grid, -1), np.expand_dims(cy_grid, -1)), axis=-1)
        num_anchors = len(anchor_sizes[idx]) + len(anchor_ratios[idx]) - 1
        center_tiled = np.tile(center, (1, 1, 2 * num_anchors))
        wh = []
        for scale in anchor_sizes[idx]:
            ratio = anchor_ratios[idx][0]
            width, height = scale * np.sqrt(ratio), scale / np.sqrt(ratio)
            wh.extend([-width / 2.0, -height / 2.0, width / 2.0, height / 2.0])
        for ratio in anchor_ratios[idx][1:]:
            s1 = anchor_sizes[idx][0]
            width, height = s1 * np.sqrt(ratio), s1 / np.sqrt(ratio)
            wh.extend([-width / 2.0, -height / 2.0, width / 2.0, height / 2.0])
        anchor_bboxes.append((center_tiled + np.array(wh)).reshape((-1, 4)))
    return np.concatenate(anchor_bboxes, axis=0)


def _decode_bbox(anchors, raw, variances=(0.1, 0.1, 0.2, 0.2)):
    acx = (anchors[:, :, 0:1] + anchors[:, :, 2:3]) / 2
    acy = (anchors[:, :, 1:2] + anchors[:, :, 3:]) / 2
    aw = anchors[:, :, 2:3] - anchors[:, :, 0:1]
    ah = anchors[:, :, 3:] - anchors[:, :, 1:2]
    r = raw * np.array(variances)
    cx, cy = r[:, :, 0:1] * aw + acx, r[:, :, 1:2] * ah + acy
    w, h = np.exp(r[:, :, 2:3]) * aw, np.exp(r[:, :, 3:]) * ah
    return np.concatenate([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)


def _single_class_nms(bboxes, confidences, conf_thresh, iou_thresh):
    keep = np.where(confidences > conf_thresh)[0]
    if len(keep) == 0:
        return []
    bboxes, confidences = bboxes[keep], confidences[keep]
    pick = []
    xmin, ymin, xmax, ymax = bboxes[:, 0], bboxes[:, 1], bboxes[:, 2], bboxes[:, 3]
    area = (xmax - xmin + 1e-3) * (ymax - ymin + 1e-3)
    idxs = np.argsort(confidences)
    while len(idxs) > 0:
        last = len(idxs) - 1
        i = idxs[last]
        pick.append(i)
        ow = np.maximum(0, np.minimum(xmax[i], xmax[idxs[:last]]) - np.maximum(xmin[i], xmin[idxs[:last]]))
        oh = np.maximum(0, np.minimum(ymax[i], ymax[idxs[:last]]) - np.maximum(ymin[i], ymin[idxs[:last]]))
        overlap = ow * oh
        ratio = overlap / (area[idxs[:last]] + area[i] - overlap)
        idxs = np.delete(idxs, np.concatenate(([last], np.where(ratio > iou_thresh)[0])))
    return keep[pick]


def aizoo(prototxt, caffemodel, image_bgr, conf_thresh=0.5, iou_thresh=0.4):
    net = cv2.dnn.readNet(prototxt, caffemodel)
    anchors = _generate_anchors([[33, 33], [17, 17], [9, 9], [5, 5], [3, 3]],
                                [[0.04, 0.056], [0.08, 0.11], [0.16, 0.22], [0.32, 0.45], [0.64, 0.72]],
                                [[1, 0.62, 0.42]] * 5)
    image = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
    net.setInput(cv2.dnn.blobFromImage(image, scalefactor=1 / 255.0, size=(260, 260)))
    loc, cls = net.forward(["loc_branch_concat", "cls_branch_concat"])
    boxes = _decode_bbox(np.expand_dims(anchors, 0), loc)[0]
    scores, classes = np.max(cls[0], axis=1), np.argmax(cls[0], axis=1)
    return [(boxes[i][0], boxes[i][1], boxes[i][2], boxes[i][3], int(classes[i]), scores[i])
            for i in _single_class_nms(boxes, scores, conf_thresh, iou_thresh)]
