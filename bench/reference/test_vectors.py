#!/usr/bin/env python3
"""Hand-made edge-case vectors for the SpatialThinker reward.

    python3 bench/reference/test_vectors.py OUT.jsonl [--no-run]

Writes OUT.jsonl, one row per case:
    {"name", "prediction", "ground_truth", "problem", "expected"}
("expected" holds the components known by hand from rewards.md / method.md;
consumers that only need prediction/ground_truth/problem can ignore the rest),
then runs spatial_reward.py --dump on it, prints a table, and checks the
expectations, the worked example of method.md 2.12 (overall 0.915203 to 1e-6)
and its man/bench mapped-CIoU values (0.925854 / 0.926177). Exits 1 on any
failed check.
"""

import json
import os
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True  # keep bench/reference free of __pycache__
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import spatial_reward as sr  # noqa: E402

# A tolerance for "approximately 1": identical boxes give mciou = 1 - O(eps/area).
APPROX = 1e-4


def problem(w, h, question="Where is the man with respect to the bench?",
            options=("sitting on", "behind", "left of", "under")):
    opts = "\n".join("(%s) %s" % ("ABCD"[i], o) for i, o in enumerate(options))
    return ("<image> You are a vision-language assistant. Observe the image, build a "
            "question-focused scene graph with ids like \"object_name.1\" and pixel "
            "boxes [x1, y1, x2, y2], think, then answer.\n"
            "<observe>...</observe>\n<scene>...</scene>\n<think>...</think>\n"
            "<answer>...</answer>\n"
            "Image size: (%d x %d)\n"
            "Now answer the following question:\n\nQ. %s\nOptions:\n%s"
            % (w, h, question, opts))


def scene_json(objects, relationships=None):
    d = {"objects": [{"id": i, "bbox": b} for i, b in objects]}
    d["relationships"] = [{"subject": s, "predicate": p, "object": o}
                          for s, p, o in (relationships or [])]
    return json.dumps(d)


def gt(objects, relationships, answer):
    return "<scene>%s</scene>\n<answer>%s</answer>" % (
        scene_json(objects, relationships), answer)


def pred(scene_text, answer, observe="The man sits on a bench.",
         think="From the boxes the man is on the bench."):
    return ("<observe>%s</observe>\n<scene>\n%s\n</scene>\n<think>%s</think>\n"
            "<answer>%s</answer>" % (observe, scene_text, think, answer))


# The worked example of method.md 2.12.
WE_GT_OBJS = [("man.1", [100, 50, 300, 400]), ("bench.2", [50, 300, 600, 470])]
WE_GT_RELS = [("man.1", "sitting on", "bench.2")]
WE_PR_OBJS = [("man.1", [110, 60, 290, 410]), ("bench.1", [40, 310, 590, 460]),
              ("dog.1", [0, 0, 50, 50])]
WE_PR_RELS = [("man.1", "sitting on", "bench.1")]

# A simple perfect pair reused by several cases.
S_OBJS = [("man.1", [100, 50, 300, 400]), ("bench.2", [50, 300, 600, 470])]
S_RELS = [("man.1", "sitting on", "bench.2")]
S_ANS = "(A) sitting on"
P640 = problem(640, 480)
GT_S = gt(S_OBJS, S_RELS, S_ANS)


def norm640(box):
    return [box[0] / 640, box[1] / 480, box[2] / 640, box[3] / 480]


def build_cases():
    cases = []

    def add(name, prediction, ground_truth, prob, expected):
        cases.append({"name": name, "prediction": prediction,
                      "ground_truth": ground_truth, "problem": prob,
                      "expected": expected})

    perfect_scene = scene_json(S_OBJS, S_RELS)
    zero = {"overall": 0.0, "format": 0.0, "count": 0.0, "accuracy": 0.0, "spatial": 0.0}

    # 1. worked example
    add("worked_example_2.12",
        pred(scene_json(WE_PR_OBJS, WE_PR_RELS), " (a) Sitting on "),
        gt(WE_GT_OBJS, WE_GT_RELS, "(A) sitting on"), P640,
        {"overall": 0.915203, "format": 1.0, "count": 0.65, "accuracy": 1.0,
         "spatial": 0.926015})

    # 2. perfect prediction
    add("perfect", pred(perfect_scene, S_ANS), GT_S, P640,
        {"overall": [1.0, APPROX], "format": 1.0, "count": 1.0, "accuracy": 1.0,
         "spatial": [1.0, APPROX]})

    # 3. tags
    p = pred(perfect_scene, S_ANS).replace("<observe>The man sits on a bench.</observe>\n", "")
    add("missing_observe", p, GT_S, P640, zero)
    p = pred(perfect_scene, S_ANS).replace("</answer>", "")
    add("truncated_no_close_answer", p, GT_S, P640, zero)
    p = pred(perfect_scene, S_ANS, think="<think> nested opening tag")
    add("repeated_think_opening", p, GT_S, P640, zero)
    p = pred(perfect_scene, S_ANS) + "\n<answer>(B) behind</answer>"
    add("repeated_answer_block", p, GT_S, P640, zero)
    p = pred(perfect_scene, S_ANS, observe="text </observe> more")  # extra closing tag: allowed
    add("extra_closing_tag_ok", p, GT_S, P640, {"format": 1.0, "overall": [1.0, APPROX]})
    p = ("<answer>%s</answer>\n<think>t</think>\n<scene>%s</scene>\n<observe>o</observe>"
         % (S_ANS, perfect_scene))
    add("tags_out_of_order_ok", p, GT_S, P640, {"format": 1.0, "overall": [1.0, APPROX]})

    # 4. scene JSON
    add("scene_empty_object", pred("{}", S_ANS), GT_S, P640, zero)
    add("scene_is_array", pred("[]", S_ANS), GT_S, P640, zero)
    add("scene_invalid_json", pred('{"objects": [', S_ANS), GT_S, P640, zero)
    add("scene_objects_not_list", pred('{"objects": {}}', S_ANS), GT_S, P640, zero)
    add("scene_NaN", pred('{"objects": [{"id": "man.1", "bbox": [NaN, 50, 300, 400]}]}', S_ANS),
        GT_S, P640, zero)
    add("scene_Infinity", pred('{"objects": [{"id": "man.1", "bbox": [0, 50, Infinity, 400]}]}',
                               S_ANS), GT_S, P640, zero)
    add("scene_1e400_overflow", pred('{"objects": [{"id": "man.1", "bbox": [0, 50, 1e400, 400]}]}',
                                     S_ANS), GT_S, P640, zero)

    # 5. object validity
    def one_obj(obj_json):
        return pred('{"objects": [%s], "relationships": []}' % obj_json, S_ANS)
    add("id_with_space", one_obj('{"id": "fire hydrant.1", "bbox": [0, 0, 10, 10]}'),
        GT_S, P640, zero)
    add("id_without_number", one_obj('{"id": "chair", "bbox": [0, 0, 10, 10]}'), GT_S, P640, zero)
    add("id_trailing_letter", one_obj('{"id": "Man.1a", "bbox": [0, 0, 10, 10]}'),
        GT_S, P640, zero)
    add("id_no_dot", one_obj('{"id": "man1", "bbox": [0, 0, 10, 10]}'), GT_S, P640, zero)
    add("object_extra_key", one_obj('{"id": "man.1", "bbox": [0, 0, 10, 10], "label": "man"}'),
        GT_S, P640, zero)
    add("object_missing_bbox", one_obj('{"id": "man.1"}'), GT_S, P640, zero)
    add("bbox_3_numbers", one_obj('{"id": "man.1", "bbox": [0, 0, 10]}'), GT_S, P640, zero)
    add("bbox_string_number", one_obj('{"id": "man.1", "bbox": ["0", 0, 10, 10]}'),
        GT_S, P640, zero)
    add("duplicate_ids",
        pred(scene_json([("man.1", [100, 50, 300, 400]), ("man.1", [50, 300, 600, 470])],
                        S_RELS), S_ANS), GT_S, P640, zero)
    # true/false count as numbers (bool is int in Python): [true,false,300,400] == [1,0,300,400]
    add("bbox_true_false",
        pred('{"objects": [{"id": "man.1", "bbox": [true, false, 300, 400]}]}', "(B) behind"),
        gt([("man.1", [1, 0, 300, 400])], [], "(B) behind"), P640,
        {"format": 1.0, "count": 1.0, "accuracy": 1.0, "spatial": [1.0, APPROX],
         "overall": [1.0, APPROX]})
    # Python's re \d is Unicode-aware: "man.\u0663" (ARABIC-INDIC DIGIT THREE) is a valid id
    # in the reference. Expectation records the reference (Python) behaviour.
    add("id_unicode_digit_python_quirk",
        pred(json.dumps({"objects": [{"id": "man.\u0663", "bbox": [100, 50, 300, 400]}]}),
             "(B) behind"),
        gt([("man.1", [100, 50, 300, 400])], [], "(B) behind"), P640,
        {"format": 1.0})

    # 6. relationships
    add("relation_endpoint_not_among_objects",
        pred(scene_json(S_OBJS, [("man.1", "sitting on", "bench.7")]), S_ANS), GT_S, P640,
        {"format": 1.0, "count": 1.0, "accuracy": 1.0, "spatial": [1.0, APPROX]})
    add("relation_extra_key_ok",
        pred(json.dumps({"objects": [{"id": i, "bbox": b} for i, b in S_OBJS],
                         "relationships": [{"subject": "man.1", "predicate": "sitting on",
                                            "object": "bench.2", "score": 0.9}]}), S_ANS),
        GT_S, P640, {"format": 1.0, "overall": [1.0, APPROX]})
    add("relation_bad_subject_id",
        pred(scene_json(S_OBJS, [("the man", "sitting on", "bench.2")]), S_ANS), GT_S, P640, zero)
    add("relationships_only_no_objects_key",
        pred('{"relationships": []}', S_ANS), GT_S, P640,
        {"format": 1.0, "count": 0.0, "accuracy": 1.0, "spatial": 0.0, "overall": 0.6})

    # 7. accuracy gating
    add("wrong_answer_perfect_scene", pred(perfect_scene, "(B) behind"), GT_S, P640,
        {"format": 1.0, "count": 1.0, "accuracy": 0.0, "spatial": 0.0, "overall": 0.3})
    add("answer_case_and_outer_whitespace", pred(perfect_scene, "  (a) SITTING ON \n"),
        GT_S, P640, {"accuracy": 1.0, "overall": [1.0, APPROX]})
    add("answer_internal_whitespace", pred(perfect_scene, "(A)  sitting on"), GT_S, P640,
        {"accuracy": 0.0, "overall": 0.3})
    add("answer_bare_letter", pred(perfect_scene, "A"), GT_S, P640,
        {"accuracy": 0.0, "overall": 0.3})

    # 8. object counts
    gt_empty = gt([], [], "(B) behind")
    add("gt0_pred0", pred('{"objects": [], "relationships": []}', "(B) behind"), gt_empty, P640,
        {"format": 1.0, "count": 1.0, "accuracy": 1.0, "spatial": 1.0, "overall": 1.0})
    add("gt0_pred1", pred(scene_json([("man.1", [0, 0, 10, 10])]), "(B) behind"), gt_empty, P640,
        {"format": 1.0, "count": 0.0, "accuracy": 1.0, "spatial": 0.0, "overall": 0.6})
    add("gt0_with_relations_quirk",
        pred(scene_json([("man.1", [0, 0, 10, 10])], [("man.1", "on", "bench.1")]), "(B) behind"),
        gt([], [("man.1", "on", "bench.1")], "(B) behind"), P640,
        {"format": 1.0, "count": 0.3, "accuracy": 1.0, "spatial": 1.0, "overall": 0.86})
    add("gt_objects_pred0",
        pred('{"objects": []}', "(B) behind"),
        gt([("man.1", [100, 50, 300, 400])], [], "(B) behind"), P640,
        {"format": 1.0, "count": 0.0, "accuracy": 1.0, "spatial": 0.0, "overall": 0.6})
    add("more_pred_than_gt",
        pred(scene_json([("dog.1", [0, 0, 50, 50]), ("man.1", [100, 50, 300, 400]),
                         ("cat.1", [400, 300, 500, 400])]), "(B) behind"),
        gt([("man.1", [100, 50, 300, 400])], [], "(B) behind"), P640,
        {"format": 1.0, "count": 0.0, "accuracy": 1.0, "spatial": [1.0, APPROX],
         "overall": [0.8, APPROX]})
    add("fewer_pred_than_gt_dummy_rows",
        pred(scene_json([("man.1", [100, 50, 300, 400])]), "(B) behind"),
        gt([("man.1", [100, 50, 300, 400]), ("bench.2", [50, 300, 600, 470]),
            ("dog.3", [0, 0, 50, 50])], [], "(B) behind"), P640,
        {"format": 1.0, "count": [1 / 3, 1e-9], "accuracy": 1.0, "spatial": [1 / 3, APPROX],
         "overall": [0.1 + 0.2 / 3 + 0.5 + 0.2 / 3, APPROX]})

    # 9. geometry
    far_m = sr.mapped_ciou([0, 0, 0.1, 0.001], [0.999, 0.9, 1, 1])
    add("far_apart_negative_spatial",
        pred(scene_json([("kite.1", [0, 0, 100, 1])]), "(B) behind"),
        gt([("kite.1", [999, 900, 1000, 1000])], [], "(B) behind"), problem(1000, 1000),
        {"format": 1.0, "count": 1.0, "accuracy": 1.0, "spatial": [far_m, 1e-9],
         "spatial<0": True, "overall": [0.8 + 0.2 * far_m, 1e-9]})
    add("inverted_pred_box_ok",
        pred(scene_json([("man.1", [300, 400, 100, 50])]), "(B) behind"),
        gt([("man.1", [100, 50, 300, 400])], [], "(B) behind"), P640,
        {"format": 1.0, "count": 1.0, "accuracy": 1.0})

    # 10. labels: multi-word ids and case; label match must override box overlap
    a, b = [100, 100, 200, 300], [120, 100, 220, 300]
    swapped = sr.mapped_ciou(norm640(a), norm640(b))
    add("multiword_label_drives_matching",
        pred(scene_json([("Traffic_Light.2", b), ("pole.1", a)]), "(C) left of"),
        gt([("traffic_light.1", a), ("pole.1", b)], [], "(C) left of"), P640,
        {"format": 1.0, "count": 1.0, "accuracy": 1.0, "spatial": [swapped, 1e-9]})
    add("wrong_labels_still_matched_by_box",
        pred(scene_json([("cat.1", [100, 50, 300, 400])]), "(B) behind"),
        gt([("man.1", [100, 50, 300, 400])], [], "(B) behind"), P640,
        {"format": 1.0, "spatial": [1.0, APPROX], "overall": [1.0, APPROX]})
    # "man_.1" is a valid id; its label is refine(refine("man_.1").split(".")[0]) = "man"
    # (the reference's sem_sim strips again after the split). The man_ box overlaps
    # partially, the dog box is identical: exact label match picks man_.1.
    box_b = [130, 80, 330, 430]
    m_b = sr.mapped_ciou(norm640(box_b), norm640([100, 50, 300, 400]))
    add("pred_underscore_before_dot_label",
        pred(scene_json([("man_.1", box_b), ("dog.1", [100, 50, 300, 400])]), "(B) behind"),
        gt([("man.1", [100, 50, 300, 400])], [], "(B) behind"), P640,
        {"format": 1.0, "count": 0.0, "accuracy": 1.0, "spatial": [m_b, 1e-9]})

    return cases


def check(name, got, expected):
    errs = []
    for key, want in expected.items():
        if key == "spatial<0":
            if not got["spatial"] < 0:
                errs.append("spatial not negative")
            continue
        if isinstance(want, list):
            val, tol = want
        else:
            val, tol = want, 1e-6
        if not abs(got[key] - val) <= tol:
            errs.append("%s=%r want %r (tol %g)" % (key, got[key], val, tol))
    return errs


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    out_path = sys.argv[1]
    cases = build_cases()
    with open(out_path, "w", encoding="utf-8") as f:
        for c in cases:
            f.write(json.dumps(c) + "\n")
    print("wrote %d cases to %s" % (len(cases), out_path))
    if "--no-run" in sys.argv[2:]:
        return 0

    failures = 0

    # Worked-example CIoU values, on boxes normalised by 640 x 480.
    def norm(box):
        return [box[0] / 640, box[1] / 480, box[2] / 640, box[3] / 480]
    m_man = sr.mapped_ciou(norm([110, 60, 290, 410]), norm([100, 50, 300, 400]))
    m_bench = sr.mapped_ciou(norm([40, 310, 590, 460]), norm([50, 300, 600, 470]))
    m_far = sr.mapped_ciou([0, 0, 0.1, 0.001], [0.999, 0.9, 1, 1])
    for label, got, want in (("mciou man", m_man, 0.925854), ("mciou bench", m_bench, 0.926177)):
        ok = abs(got - want) <= 5e-7
        failures += 0 if ok else 1
        print("%-12s %.6f (want %.6f) %s" % (label, got, want, "ok" if ok else "FAIL"))
    ok = abs(m_far - (-0.191)) < 5e-4 and abs((2 * m_far - 1) - (-1.383)) < 5e-4
    failures += 0 if ok else 1
    print("%-12s %.6f (CIoU %.6f; want about -0.191 / -1.383) %s"
          % ("mciou far", m_far, 2 * m_far - 1, "ok" if ok else "FAIL"))

    dump = tempfile.NamedTemporaryFile(prefix="st_dump_", suffix=".jsonl", delete=False).name
    try:
        proc = subprocess.run([sys.executable, os.path.join(HERE, "spatial_reward.py"),
                               out_path, "--dump", dump],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stdout + proc.stderr)
            print("spatial_reward.py failed")
            return 1
        print("spatial_reward.py: " + proc.stdout.strip())
        with open(dump, encoding="utf-8") as f:
            results = [json.loads(line) for line in f]
    finally:
        os.unlink(dump)

    print()
    print("%-36s %4s %6s %4s %9s %9s  %s" % ("case", "fmt", "count", "acc", "spatial",
                                              "overall", "check"))
    for c, r in zip(cases, results):
        errs = check(c["name"], r, c["expected"])
        failures += 1 if errs else 0
        print("%-36s %4.0f %6.3f %4.0f %9.6f %9.6f  %s"
              % (c["name"], r["format"], r["count"], r["accuracy"], r["spatial"],
                 r["overall"], "ok" if not errs else "FAIL: " + "; ".join(errs)))
    print()
    print("%d cases, %d failed checks" % (len(cases), failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
