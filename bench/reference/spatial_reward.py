#!/usr/bin/env python3
"""Plain Python stand-in for the SpatialThinker reference reward scorer.

This restates, function by function, the released reference scorer
(``verl/utils/reward_score/spatial_sgg.py``, ``spatial_sgg_compute_score``)
as described in shared/spec/rewards.md and shared/spec/method.md 2.1-2.12.
It is deliberately written the way the reference is written: single-threaded,
dicts and lists, a Python loop that fills the cost matrix, and
``scipy.optimize.linear_sum_assignment`` as the solver. It serves two purposes:

* the "reference scorer" side of the throughput benchmark, and
* a cross-check of the TypeScript/native implementation (``--dump``).

Differences from the released reference, all deliberate:

* Label similarity is exact match (1.0 if the normalised labels are equal,
  else 0.0) instead of spaCy ``en_core_web_md`` cosine similarity. With exact
  similarity the reference numbers must be reproduced to 1e-6.
* A scene whose JSON holds a non-finite number (the bare literals NaN,
  Infinity, -Infinity, a float literal that overflows such as 1e400, or an
  integer too large for a double) is treated as unparseable, so format is 0
  (documented deviation of rewards.md section 2; the reference yields NaN).
* No ``lru_cache`` memoisation of the matcher by default (``--cache`` turns a
  4096-entry cache on, as in the reference). With ``--repeat`` a cache would
  only measure cache hits.
* Squares are ``x ** 2`` as in the reference (bit-identical results), falling
  back to ``x * x`` where ``**`` would raise OverflowError (huge coordinates);
  the reference raises there.
* A missing ``Image size: (W x H)`` raises ValueError, as in the reference.

The relation (triplet) Hungarian matching of the reference is computed and
discarded, as in the released configuration (REL_GATING = False); it never
changes a number. ``--no-triplets`` skips it.

CLI:
    python3 spatial_reward.py IN.jsonl [--repeat K] [--dump OUT.jsonl]
        [--cache] [--no-triplets]
Each input line is a JSON object with ``prediction``, ``ground_truth`` and
``problem``. Prints one JSON object: completions, seconds (scoring loop only),
completions_per_second and mean_overall.
"""

import argparse
import functools
import json
import math
import re
import sys
import time

import numpy as np
from scipy.optimize import linear_sum_assignment


# --------------------------------------------------------------------------
# Constants (reference values)
# --------------------------------------------------------------------------

FORMAT_WEIGHT = 0.1
COUNT_WEIGHT = 0.2
ACCURACY_WEIGHT = 0.5
SPATIAL_WEIGHT = 0.2

SEM_W = 2.0    # label similarity weight in the matching cost
IOU_W = 1.0    # mapped-CIoU weight in the matching cost
DUMMY_COST = 1e5
CIOU_EPS = 1e-7

REQUIRED_KEYS_OBJ = {"id", "bbox"}
REQUIRED_KEYS_REL = {"subject", "predicate", "object"}

ID_PATTERN = r"[a-zA-Z_]+\.\d+"
IMAGE_SIZE_PATTERN = r"Image size: \((.*?) x (.*?)\)"


# --------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------

def _reject_constant(name):
    # NaN, Infinity, -Infinity: deliberate deviation, treat as unparseable.
    raise ValueError("non-finite JSON constant: %s" % name)


def _parse_float(s):
    v = float(s)
    if math.isinf(v) or math.isnan(v):
        raise ValueError("non-finite JSON number: %s" % s)
    return v


def _parse_int(s):
    v = int(s)
    float(v)  # OverflowError for integers beyond the double range
    return v


def _loads_finite(s):
    return json.loads(s, parse_constant=_reject_constant,
                      parse_float=_parse_float, parse_int=_parse_int)


def extract_answer(text):
    match = re.search(r"<answer>(.*?)</answer>", text, re.DOTALL)
    return match.group(1).strip() if match else ""


def extract_scene(text):
    match = re.search(r"<scene>(.*?)</scene>", text, re.DOTALL)
    if not match:
        return {}
    try:
        parsed = _loads_finite(match.group(1).strip())
        return parsed if isinstance(parsed, dict) else {}
    except Exception:  # any parse failure (incl. RecursionError) -> {}
        return {}


def extract_image_size(problem):
    match = re.search(IMAGE_SIZE_PATTERN, problem)
    if not match:
        raise ValueError("Image size not found in problem")
    return int(match.group(1)), int(match.group(2))


# --------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------

def is_valid_id_format(s):
    return bool(re.fullmatch(ID_PATTERN, s))


def is_valid_object(obj):
    if not isinstance(obj, dict):
        return False
    if not REQUIRED_KEYS_OBJ.issubset(obj.keys()):
        return False
    if not all(key in REQUIRED_KEYS_OBJ for key in obj.keys()):
        return False
    if not isinstance(obj["id"], str):
        return False
    if not is_valid_id_format(obj["id"]):
        return False
    if not isinstance(obj["bbox"], list):
        return False
    if len(obj["bbox"]) != 4:
        return False
    # bool is a subclass of int: JSON true/false pass, as in the reference.
    if not all(isinstance(val, (int, float)) for val in obj["bbox"]):
        return False
    return True


def is_valid_relation(rel):
    if not isinstance(rel, dict):
        return False
    if not REQUIRED_KEYS_REL.issubset(rel.keys()):
        return False
    if not isinstance(rel["subject"], str):
        return False
    if not isinstance(rel["predicate"], str):
        return False
    if not isinstance(rel["object"], str):
        return False
    if not is_valid_id_format(rel["subject"]):
        return False
    if not is_valid_id_format(rel["object"]):
        return False
    return True


# --------------------------------------------------------------------------
# Components
# --------------------------------------------------------------------------

def format_reward(text):
    try:
        observe = re.search(r"<observe>.*?</observe>", text, re.DOTALL)
        think = re.search(r"<think>.*?</think>", text, re.DOTALL)
        scene_m = re.search(r"<scene>(.*?)</scene>", text, re.DOTALL)
        answer = re.search(r"<answer>.*?</answer>", text, re.DOTALL)
        if not (observe and think and scene_m and answer):
            return 0.0

        if (text.count("<observe>") != 1 or text.count("<think>") != 1
                or text.count("<scene>") != 1 or text.count("<answer>") != 1):
            return 0.0

        scene = extract_scene(text)
        if not scene or not isinstance(scene, dict):
            return 0.0

        objs = scene.get("objects", [])
        rels = scene.get("relationships", [])
        if not isinstance(objs, list) or not isinstance(rels, list):
            return 0.0
        if not all(is_valid_object(o) for o in objs):
            return 0.0
        if not all(is_valid_relation(r) for r in rels):
            return 0.0

        ids = [o.get("id", "") for o in objs]
        if len(ids) != len(set(ids)):
            return 0.0
        return 1.0
    except Exception:
        return 0.0


def count_reward(pred_scene, gt_scene):
    if not isinstance(pred_scene, dict) or not isinstance(gt_scene, dict):
        return 0.0
    pred_objs = pred_scene.get("objects")
    gt_objs = gt_scene.get("objects")
    pred_rels = pred_scene.get("relationships") or []
    gt_rels = gt_scene.get("relationships") or []
    if not isinstance(pred_objs, list) or not isinstance(gt_objs, list):
        return 0.0

    obj_count = max(0.0, 1 - abs(len(pred_objs) - len(gt_objs)) / max(len(gt_objs), 1))
    if not len(gt_rels):
        return obj_count
    rel_count = max(0.0, 1 - abs(len(pred_rels) - len(gt_rels)) / max(len(gt_rels), 1))
    return obj_count * 0.7 + rel_count * 0.3


def accuracy_reward(pred_answer, gt_answer):
    return float(pred_answer.strip().lower() == gt_answer.strip().lower())


# --------------------------------------------------------------------------
# Geometry and labels
# --------------------------------------------------------------------------

def _sq(x):
    # x ** 2 as in the reference (CPython uses libm pow(), which can differ from
    # x * x in the last bit); x * x only where ** would raise OverflowError.
    try:
        return x ** 2
    except OverflowError:
        return x * x


def mapped_ciou(box_a, box_b, eps=CIOU_EPS):
    """Complete IoU of two [x1, y1, x2, y2] boxes mapped by (ciou + 1) / 2."""
    w_a, h_a = box_a[2] - box_a[0], box_a[3] - box_a[1]
    w_b, h_b = box_b[2] - box_b[0], box_b[3] - box_b[1]
    area_a = w_a * h_a
    area_b = w_b * h_b

    xi1 = max(box_a[0], box_b[0])
    yi1 = max(box_a[1], box_b[1])
    xi2 = min(box_a[2], box_b[2])
    yi2 = min(box_a[3], box_b[3])
    inter = max(0.0, xi2 - xi1) * max(0.0, yi2 - yi1)

    union = area_a + area_b - inter + eps
    iou = inter / union

    cxa = (box_a[0] + box_a[2]) / 2
    cya = (box_a[1] + box_a[3]) / 2
    cxb = (box_b[0] + box_b[2]) / 2
    cyb = (box_b[1] + box_b[3]) / 2
    rho2 = _sq(cxa - cxb) + _sq(cya - cyb)

    ex1 = min(box_a[0], box_b[0])
    ey1 = min(box_a[1], box_b[1])
    ex2 = max(box_a[2], box_b[2])
    ey2 = max(box_a[3], box_b[3])
    c2 = _sq(ex2 - ex1) + _sq(ey2 - ey1) + eps

    v = (4 / (math.pi ** 2)) * _sq(math.atan(w_b / (h_b + eps)) - math.atan(w_a / (h_a + eps)))
    denom = (1 - iou) + v
    alpha = v / denom if denom != 0 else 0.0

    ciou = iou - (rho2 / c2 + alpha * v)
    return (ciou + 1) / 2


def refine_node_edge(label):
    return label.replace("_", " ").replace("-", " ").strip().lower()


def label_of(node_id):
    # As the reference's sem_sim: refine(id.split('.')[0]) applied to an id
    # that spatial_reward has already refined.
    return refine_node_edge(node_id.split(".")[0])


def label_sim(a, b):
    """Exact label similarity (stands in for the reference's spaCy cosine)."""
    return 1.0 if label_of(a) == label_of(b) else 0.0


def scale_box(box, sw, sh):
    return [box[0] * sw, box[1] * sh, box[2] * sw, box[3] * sh]


# --------------------------------------------------------------------------
# Matching
# --------------------------------------------------------------------------

def _pair_cost(pr, gt):
    ciou01 = mapped_ciou(pr["bbox"], gt["bbox"])
    sim = label_sim(pr["id"], gt["id"])
    return SEM_W * (1.0 - sim) + IOU_W * (1.0 - ciou01)


def hungarian(gt_objs, pr_objs):
    """Returns, for each GT object, the index of its matched prediction or None."""
    n_p, n_g = len(pr_objs), len(gt_objs)
    pad = max(0, n_g - n_p)
    cost = np.zeros((n_p + pad, n_g))
    for i, p in enumerate(pr_objs):
        for j, g in enumerate(gt_objs):
            cost[i, j] = _pair_cost(p, g)
    if pad:
        cost[n_p:, :] = DUMMY_COST
    rows, cols = linear_sum_assignment(cost)
    mapping = [None] * n_g
    for r, c in zip(rows, cols):
        if r < n_p:
            mapping[c] = r
    return mapping


_USE_CACHE = False


@functools.lru_cache(maxsize=4096)
def _hungarian_cached(gt_key, pr_key):
    gt_objs = [{"id": i, "bbox": list(b)} for i, b in gt_key]
    pr_objs = [{"id": i, "bbox": list(b)} for i, b in pr_key]
    return tuple(hungarian(gt_objs, pr_objs))


def bi_match(gt_objs, pr_objs):
    if _USE_CACHE:
        gt_key = tuple((o["id"], tuple(o["bbox"])) for o in gt_objs)
        pr_key = tuple((o["id"], tuple(o["bbox"])) for o in pr_objs)
        return list(_hungarian_cached(gt_key, pr_key))
    return hungarian(gt_objs, pr_objs)


def bi_match_triplets(gt_rels, pr_rels):
    """Relation matching of the reference: computed, never used for the score."""
    n_g, n_p = len(gt_rels), len(pr_rels)
    pad = max(0, n_g - n_p)
    cost = np.zeros((n_p + pad, n_g))
    for i, pr in enumerate(pr_rels):
        for j, gt in enumerate(gt_rels):
            weighted = (0.3 * label_sim(pr["subject"], gt["subject"])
                        + 0.3 * label_sim(pr["object"], gt["object"])
                        + 0.4 * label_sim(pr["predicate"], gt["predicate"]))
            cost[i, j] = 1.0 - weighted
    if pad:
        cost[n_p:, :] = DUMMY_COST
    rows, cols = linear_sum_assignment(cost)
    return [(r, c, 1.0 - cost[r, c]) for r, c in zip(rows, cols) if r < n_p]


_RUN_TRIPLETS = True


def object_score(gt_objs, pr_objs):
    assign = bi_match(gt_objs, pr_objs)
    per_gt_box = []
    per_gt_sim = []  # computed by the reference, unused
    for g_idx, p_idx in enumerate(assign):
        if p_idx is None:
            per_gt_box.append(0.0)
            per_gt_sim.append(0.0)
            continue
        g, p = gt_objs[g_idx], pr_objs[p_idx]
        per_gt_box.append(mapped_ciou(g["bbox"], p["bbox"]))
        per_gt_sim.append(label_sim(g["id"], p["id"]))
    return sum(per_gt_box) / len(gt_objs) if gt_objs else 1.0


def spatial_reward(pred_scene, gt_scene, width, height):
    """The reference's relaxed_spatial_reward with REL_GATING = False."""
    if not isinstance(pred_scene, dict) or not isinstance(gt_scene, dict):
        return 0.0
    gt_objs = gt_scene.get("objects") or []
    pr_objs = pred_scene.get("objects") or []
    gt_rels = gt_scene.get("relationships") or []
    pr_rels = pred_scene.get("relationships") or []
    if not isinstance(pr_objs, list) or not isinstance(gt_objs, list):
        return 0.0
    if not isinstance(pr_rels, list) or not isinstance(gt_rels, list):
        return 0.0
    if not all(is_valid_object(o) for o in pr_objs):
        return 0.0
    if not all(is_valid_relation(r) for r in pr_rels):
        return 0.0

    sw, sh = 1.0 / width, 1.0 / height
    gt_objs = [dict(o, id=refine_node_edge(o["id"]), bbox=scale_box(o["bbox"], sw, sh))
               for o in gt_objs]
    pr_objs = [dict(o, id=refine_node_edge(o["id"]), bbox=scale_box(o["bbox"], sw, sh))
               for o in pr_objs]

    if not gt_rels:
        if not gt_objs:
            return 1.0 if not pr_objs else 0.0
        return object_score(gt_objs, pr_objs)

    # GT has relations: the reference runs the triplet matcher, then ignores it.
    if _RUN_TRIPLETS:
        gt_trip = [dict(r, subject=refine_node_edge(r["subject"]),
                        object=refine_node_edge(r["object"])) for r in gt_rels]
        pr_trip = [dict(r, subject=refine_node_edge(r["subject"]),
                        object=refine_node_edge(r["object"])) for r in pr_rels]
        bi_match_triplets(gt_trip, pr_trip)
    # Quirk kept: with GT relations but no GT objects this returns 1.0.
    return object_score(gt_objs, pr_objs)


# --------------------------------------------------------------------------
# Overall
# --------------------------------------------------------------------------

def compute_score(prediction, ground_truth, problem):
    pred_answer = extract_answer(prediction)
    gt_answer = extract_answer(ground_truth)
    pred_scene = extract_scene(prediction)
    gt_scene = extract_scene(ground_truth)
    width, height = extract_image_size(problem)

    fr = format_reward(prediction)
    if fr == 1.0:
        cr = count_reward(pred_scene, gt_scene)
        ar = accuracy_reward(pred_answer, gt_answer)
        sr = spatial_reward(pred_scene, gt_scene, width, height) if ar == 1.0 else 0.0
    else:
        cr = ar = sr = 0.0

    overall = (fr * FORMAT_WEIGHT + cr * COUNT_WEIGHT
               + ar * ACCURACY_WEIGHT + sr * SPATIAL_WEIGHT)
    return {"overall": overall, "format": fr, "count": cr,
            "accuracy": ar, "spatial": sr}


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------

def _read_rows(path):
    rows = []
    with open(path, "r", encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            obj = json.loads(line)
            rows.append((obj["prediction"], obj["ground_truth"], obj["problem"]))
    return rows


def main(argv=None):
    global _USE_CACHE, _RUN_TRIPLETS
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("input", help="JSONL with prediction, ground_truth, problem")
    ap.add_argument("--repeat", type=int, default=1, help="score the whole file K times")
    ap.add_argument("--dump", help="write per-line components (first pass) to this JSONL")
    ap.add_argument("--cache", action="store_true",
                    help="memoise the matcher with lru_cache(4096) like the reference")
    ap.add_argument("--no-triplets", action="store_true",
                    help="skip the (unused) relation matching")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("--repeat must be >= 1")
    _USE_CACHE = args.cache
    _RUN_TRIPLETS = not args.no_triplets

    rows = _read_rows(args.input)
    first_pass = []
    total_overall = 0.0
    n_scored = 0

    t0 = time.perf_counter()
    for rep in range(args.repeat):
        for prediction, ground_truth, problem in rows:
            res = compute_score(prediction, ground_truth, problem)
            total_overall += res["overall"]
            n_scored += 1
            if rep == 0:
                first_pass.append(res)
    seconds = time.perf_counter() - t0

    if args.dump:
        with open(args.dump, "w", encoding="utf-8") as f:
            for res in first_pass:
                f.write(json.dumps(res) + "\n")

    out = {
        "completions": n_scored,
        "seconds": seconds,
        "completions_per_second": (n_scored / seconds) if seconds > 0 else None,
        "mean_overall": (total_overall / n_scored) if n_scored else None,
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
