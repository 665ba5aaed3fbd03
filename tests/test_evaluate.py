"""Evaluation: VOC07 / VOC2010+ AP and COCO AP against numbers counted by hand and against
GluonCV's VOC metric, boxes scored in original image pixels, the precision-recall plots,
``gluon-ssd evaluate`` on a tiny trained checkpoint (it reproduces the mAP training logged; bad
input is one line with exit status 2), and training's validation equal to ``evaluate_model`` on
a VOC-format folder of non-square images larger than the network input.
"""
import json
import os
import re

import cv2
import mxnet as mx
import numpy as np
import pytest
from gluoncv.utils.metrics.voc_detection import VOC07MApMetric, VOCMApMetric
from mxnet import gluon
from PIL import Image

import gluon_ssd.train  # noqa: F401  (imported here, so import-time warnings stay out of capsys)
from gluon_ssd.checkpoint import save_checkpoint
from gluon_ssd.data.io import BadImageError
from gluon_ssd.data.labels import check_classes
from gluon_ssd.cli import main
from gluon_ssd.data.transforms import Batch
from gluon_ssd.detect import load_detector
from gluon_ssd.evaluation.metrics import DetectionEvaluator
from gluon_ssd.evaluation.report import format_report, write_evaluation, write_pr_plots
from gluon_ssd.evaluation.run import evaluate, evaluate_model, evaluation_loader
from gluon_ssd.export import export_model
from gluon_ssd.model import SSD
from gluon_ssd.model.head import DECODERS
from gluon_ssd.presets import get_preset
from gluon_ssd.train import BEST, TrainConfig, train


def detections(per_image, k=10):
    """``[[(class, score, pixel box), ...] per image]`` -> ids, scores, pixel boxes
    ``(B, k, ...)`` padded with -1 rows."""
    ids, scores = np.full((len(per_image), k), -1.0), np.full((len(per_image), k), -1.0)
    boxes = np.zeros((len(per_image), k, 4))
    for i, rows in enumerate(per_image):
        for j, (cls, score, box) in enumerate(rows):
            ids[i, j], scores[i, j], boxes[i, j] = cls, score, box
    return ids, scores, boxes


def labels(per_image, m=4, width=6):
    """``[[xmin, ymin, xmax, ymax, class, ignore], ...] per image`` -> ``(B, m, width)`` padded
    with -1 rows."""
    out = np.full((len(per_image), m, width), -1.0)
    for i, rows in enumerate(per_image):
        out[i, :len(rows)] = rows
    return out


# ------------------------------------------------------------------------------ VOC, by hand

# Boxes on a 100x100 input. A detection is either exactly a ground-truth box (IoU 1) or far
# from every box (IoU 0), so every match below is decided without doubt.
A, B, C, D = [10, 10, 50, 50], [60, 60, 90, 90], [5, 5, 40, 40], [50, 50, 80, 80]
DOG, BIRD, FAR = [20, 20, 60, 60], [1, 1, 30, 30], [0, 80, 10, 99]
CLASSES = ("cat", "dog", "bird", "fish")
GT = [[A + [0, 0], B + [0, 0], DOG + [1, 0], BIRD + [2, 0]],  # image 0
      [C + [0, 0], D + [0, 1]]]                             # image 1: D is difficult
DETS = [[(0, .9, A), (0, .7, A), (0, .4, FAR), (0, .3, B), (1, .95, FAR), (1, .85, DOG),
         (3, .5, [1, 1, 9, 9])],
        [(0, .8, FAR), (0, .6, C), (0, .5, D)]]


@pytest.fixture(scope="module")
def hand_case():
    evaluator = DetectionEvaluator(CLASSES)
    evaluator.update(*detections(DETS), labels(GT), np.full((2, 2), 100))
    return evaluator.result()


def test_voc_precision_recall_counted_by_hand(hand_case):
    # cat: 3 boxes count (A, B, C; D is difficult). Detections by score:
    #   .9 A TP | .8 far FP | .7 A again FP | .6 C TP | .5 D (difficult: ignored) | .4 far FP
    #   | .3 B TP
    # TP so far 1 1 1 2 2 2 3, FP 0 1 2 2 2 3 3.
    curve = hand_case.curves["cat"]
    np.testing.assert_allclose(curve.precision, [1, 1 / 2, 1 / 3, 2 / 4, 2 / 4, 2 / 5, 3 / 6])
    np.testing.assert_allclose(curve.recall, [1 / 3, 1 / 3, 1 / 3, 2 / 3, 2 / 3, 2 / 3, 1])
    np.testing.assert_allclose(curve.scores, [.9, .8, .7, .6, .5, .4, .3])
    assert curve.num_positives == 3
    # dog: .95 far FP, .85 TP -> precision 0, 1/2 at recall 0, 1.
    np.testing.assert_allclose(hand_case.curves["dog"].precision, [0, 1 / 2])
    np.testing.assert_allclose(hand_case.curves["dog"].recall, [0, 1])
    assert "fish" not in hand_case.curves  # no ground truth: no curve
    assert hand_case.num_ground_truth == {"cat": 3, "dog": 1, "bird": 1, "fish": 0}
    assert hand_case.num_detections == {"cat": 7, "dog": 2, "bird": 0, "fish": 1}


def test_voc07_and_voc2010_ap_counted_by_hand(hand_case):
    # cat, VOC07: best precision at recall >= t: t = 0, .1, .2, .3 -> 1; t = .4 ... 1 -> 1/2.
    cat07 = (4 * 1 + 7 * 0.5) / 11
    # cat, VOC2010+: envelope 1 on recall (0, 1/3], 1/2 on (1/3, 2/3] and on (2/3, 1].
    cat10 = 1 / 3 * 1 + 1 / 3 * 0.5 + 1 / 3 * 0.5
    # dog: precision 1/2 at recall 1 (both); bird: missed (0); fish: no ground truth (nan).
    voc07, voc10 = hand_case.voc["voc07"], hand_case.voc["voc2010"]
    assert voc07.ap["cat"] == pytest.approx(cat07) and voc10.ap["cat"] == pytest.approx(cat10)
    assert voc07.ap["dog"] == pytest.approx(0.5) and voc10.ap["dog"] == pytest.approx(0.5)
    assert voc07.ap["bird"] == 0 and voc10.ap["bird"] == 0
    assert np.isnan(voc07.ap["fish"]) and np.isnan(voc10.ap["fish"])
    assert voc07.map == pytest.approx((cat07 + 0.5 + 0) / 3)
    assert voc10.map == pytest.approx((cat10 + 0.5 + 0) / 3)
    # The curve's drawing aids agree: mean of the 11 points, area under the envelope.
    curve = hand_case.curves["cat"]
    np.testing.assert_allclose(curve.eleven_point(), [1] * 4 + [0.5] * 7)
    np.testing.assert_allclose(curve.interpolated(), [1, .5, .5, .5, .5, .5, .5])


def test_coco_ap_of_the_hand_case(hand_case):
    # COCO reads the envelope at 101 recall points 0, .01, ..., 1: for cat 1 at the 34 points
    # up to 1/3, 1/2 at the other 67; the difficult box D is a crowd region (ignored).
    assert hand_case.coco.ap["cat"] == pytest.approx((34 + 67 * 0.5) / 101)
    assert hand_case.coco.ap["dog"] == pytest.approx(0.5)
    assert hand_case.coco.ap["bird"] == 0 and np.isnan(hand_case.coco.ap["fish"])


def test_evaluate_runs_a_detector_over_batches():
    ids, scores, boxes = detections(DETS)

    def det_net(images):  # normalised boxes, as a detector returns them
        return mx.nd.array(ids[:, :, None]), mx.nd.array(scores[:, :, None]), mx.nd.array(
            boxes / 100)
    batches = [Batch(mx.nd.zeros((2, 3, 100, 100)), mx.nd.array(labels(GT)),
                     np.full((2, 2), 100))]
    result = evaluate(det_net, batches, CLASSES, metrics=("voc07", "voc2010"))
    assert result.voc["voc07"].map == pytest.approx((7.5 / 11 + 0.5) / 3)
    assert result.voc["voc2010"].map == pytest.approx((2 / 3 + 0.5) / 3)
    assert result.coco is None and result.num_images == 2


# ------------------------------------------------------------------ against GluonCV's metric

def _random_case(rng, images=12, classes=4):
    """Random detections and ground truth on 80x60 images: several per class, some difficult,
    tied scores, detections of classes without ground truth."""
    k, m = 15, 6
    ids = rng.integers(-1, classes, (images, k)).astype(np.float32)
    scores = rng.choice(np.linspace(0.05, 1, 12), (images, k)).astype(np.float32)  # ties
    corners = rng.uniform(0, 60, (images, k, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(5, 30, (images, k, 2))], axis=2)
    gt = np.full((images, m, 6), -1.0)
    for i in range(images):
        n = rng.integers(0, m + 1)
        gt[i, :n, :2] = rng.uniform(0, 50, (n, 2))
        gt[i, :n, 2:4] = gt[i, :n, :2] + rng.uniform(8, 30, (n, 2))
        gt[i, :n, 4] = rng.integers(0, classes - 1, n)  # the last class never has ground truth
        gt[i, :n, 5] = rng.random(n) < 0.2
        # half the detections near a box of the image
        near = rng.random(k) < 0.5
        if n:
            pick = rng.integers(0, n, k)
            boxes[i, near] = gt[i, pick[near], :4] + rng.normal(0, 3, (int(near.sum()), 4))
            ids[i, near] = gt[i, pick[near], 4]
    return ids, scores, boxes, gt


@pytest.mark.parametrize("seed", range(4))
def test_voc_metrics_equal_gluoncv(seed):
    ids, scores, boxes, gt = _random_case(np.random.default_rng(seed))
    names = ["a", "b", "c", "d"]
    evaluator = DetectionEvaluator(names, ("voc07", "voc2010"))
    for start in range(0, len(ids), 5):  # in batches, as evaluation runs
        part = slice(start, start + 5)
        evaluator.update(ids[part], scores[part], boxes[part], gt[part])
    result = evaluator.result()
    for name, reference in (("voc07", VOC07MApMetric), ("voc2010", VOCMApMetric)):
        metric = reference(iou_thresh=0.5, class_names=names)
        metric.update(boxes, ids, scores, gt[:, :, :4], gt[:, :, 4], gt[:, :, 5])
        keys, values = metric.get()
        assert result.voc[name].map == values[-1]  # to the last digit
        np.testing.assert_array_equal(list(result.voc[name].ap.values()), values[:-1])
    assert np.isnan(result.voc["voc07"].ap["d"]) and "d" not in result.curves


def test_nothing_to_evaluate_is_an_error():
    with pytest.raises(ValueError, match="no images"):
        evaluate(lambda images: None, [], CLASSES)
    with pytest.raises(ValueError, match="unknown metric"):
        DetectionEvaluator(CLASSES, ("voc2012",))


# ----------------------------------------------------------------------------- COCO, by hand

# A 200x200 input; boxes: 20x20 = 400 px^2 is small (< 32^2), 50x50 = 2500 medium, above 96^2
# = 9216 large.
SMALL, MEDIUM, LARGE = [10, 10, 30, 30], [50, 50, 100, 100], [80, 0, 200, 120]
COCO_GT = [[SMALL + [0, 0], MEDIUM + [0, 0], LARGE + [0, 0],          # a: one of each size
            [0, 100, 50, 150, 1, 0], [100, 150, 150, 200, 1, 0],     # b: two medium
            [0, 0, 100, 100, 2, 0]]]                                  # c: one large


def coco_case(dets):
    evaluator = DetectionEvaluator(("a", "b", "c"), ("coco",))
    evaluator.update(*detections(dets), labels(COCO_GT, m=6), np.array([[200, 200]]))
    return evaluator.result().coco


def test_coco_perfect_detections_score_one():
    coco = coco_case([[(int(row[4]), 0.9, row[:4]) for row in COCO_GT[0]]])
    assert coco.stats == {k: pytest.approx(1.0) for k in ("AP", "AP50", "AP75", "APs", "APm",
                                                          "APl")}


def test_coco_half_missed_class_and_a_loose_box():
    coco = coco_case([[(0, .9, SMALL), (0, .8, MEDIUM), (0, .7, LARGE),   # a: perfect
                       (1, .9, [0, 100, 50, 150]),                        # b: one of two found
                       (2, .9, [0, 0, 100, 160])]])                       # c: IoU 100/160
    # b: precision 1 up to recall 1/2, nothing beyond: 51 of the 101 recall points.
    # c: IoU 0.625 passes the thresholds .5, .55, .6 of the ten .5:.05:.95 -> AP 3/10;
    #    at IoU .5 it is a hit (AP50 1), at .75 a miss (AP75 0).
    b = 51 / 101
    assert coco.ap == {"a": pytest.approx(1.0), "b": pytest.approx(b), "c": pytest.approx(0.3)}
    assert coco.stats["AP"] == pytest.approx((1 + b + 0.3) / 3)
    assert coco.stats["AP50"] == pytest.approx((1 + b + 1) / 3)
    assert coco.stats["AP75"] == pytest.approx((1 + b + 0) / 3)
    assert coco.stats["APs"] == pytest.approx(1.0)            # only a has a small box
    assert coco.stats["APm"] == pytest.approx((1 + b) / 2)    # a and b have medium boxes
    assert coco.stats["APl"] == pytest.approx((1 + 0.3) / 2)  # a and c have large boxes


def test_batches_are_scored_in_original_image_pixels():
    """A 400x200 photo and an empty 100x300 one, resized to 100x100: the batch carries their
    sizes; the box is scored at its original size (40x40 = 1600 px^2, medium for COCO), not the
    10x20 = 200 px^2 (small) it has in the network input."""
    photo = np.zeros((200, 400, 3), np.uint8)
    box = np.array([[100, 40, 140, 80, 0, 0]], np.float32)
    dataset = gluon.data.SimpleDataset([(photo, box),
                                        (np.zeros((300, 100, 3), np.uint8), np.zeros((0, 6)))])
    batch = next(iter(evaluation_loader(dataset, (100, 100), (0, 0, 0), (1, 1, 1), 2).epoch(0)))
    assert batch.images.shape == (2, 3, 100, 100) and batch.labels.shape == (2, 3, 6)
    np.testing.assert_array_equal(batch.image_sizes, [[200, 400], [300, 100]])
    np.testing.assert_allclose(batch.labels.asnumpy()[0, 0], [25, 20, 35, 40, 0, 0])
    assert np.all(batch.labels.asnumpy()[1] == -1)

    def det_net(images):  # the box itself, normalised
        ids = mx.nd.array([[[0], [-1]], [[-1], [-1]]])
        scores = mx.nd.array([[[0.9], [-1]], [[-1], [-1]]])
        boxes = mx.nd.array([[[0.25, 0.2, 0.35, 0.4], [0] * 4], [[0] * 4, [0] * 4]])
        return ids, scores, boxes
    result = evaluate(det_net, [batch], ("shape",))
    assert result.num_images == 2 and result.voc["voc07"].map == pytest.approx(1.0)
    assert np.isnan(result.coco.stats["APs"]) and result.coco.stats["APm"] == pytest.approx(1.0)


# ---------------------------------------------------------------------------------- the plots

def test_pr_plots_are_written(hand_case, tmp_path):
    paths = write_pr_plots(hand_case, str(tmp_path), title="hand case")
    names = sorted(p[len(str(tmp_path)) + 1:] for p in paths)
    assert names == ["pr/00_cat.png", "pr/01_dog.png", "pr/02_bird.png", "pr_curves.png"]
    for path in paths:
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size[0] > 300


# ------------------------------------------------------------------ gluon-ssd evaluate (CLI)

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A one-epoch demo run on 64x64 synthetic images: ``(run folder, TrainResult)``."""
    out = tmp_path_factory.mktemp("run")
    result = train(TrainConfig(preset="demo", epochs=1, train_size=32, val_size=16,
                               image_size=64, batch_size=8, out=str(out), progress=False))
    return out, result


def run(capsys, *argv):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


DEMO_DECODER = get_preset("demo").detect.decoder  # what training validates with


def _map(folder, decoder=DEMO_DECODER, metric="voc07"):
    with open(folder / "metrics.json") as f:
        return json.load(f)["decoders"][decoder]["voc"][metric]["map"]


def test_cli_evaluate_reproduces_the_training_val_map(trained, tmp_path, capsys):
    run_dir, result = trained
    status, out, _ = run(capsys, "evaluate", run_dir / "checkpoint-best.params", "-o",
                         tmp_path, "--quiet")
    assert status == 0
    assert _map(tmp_path) == result.history[-1].val_map == result.best_map  # exactly
    assert f"VOC07 mAP {result.best_map:.4f}" in out
    assert "16 images at 64x64, boxes in original pixels" in out and "COCO AP" in out
    for name in ("circle", "square", "triangle", "star", "cross"):
        assert name in out
    with open(tmp_path / "metrics.json") as f:
        doc = json.load(f)
    assert doc["data"] == "synthetic" and doc["batch_size"] == 8 and doc["num_images"] == 16
    assert set(doc["decoders"][DEMO_DECODER]["coco"]["stats"]) == {"AP", "AP50", "AP75", "APs",
                                                                 "APm", "APl"}
    assert (tmp_path / "pr_curves.png").is_file() and len(list((tmp_path / "pr").glob("*.png")))


def test_cli_compares_both_decoders_on_one_pass(trained, tmp_path, capsys):
    run_dir, result = trained
    status, out, _ = run(capsys, "evaluate", run_dir / "checkpoint-best.params", "-o", tmp_path,
                         "--decoder", "both", "--metric", "voc07", "--quiet")
    assert status == 0 and "decoders compared" in out
    assert _map(tmp_path) == result.best_map  # SSD once, both heads on its outputs
    other, = set(DECODERS) - {DEMO_DECODER}
    assert 0 <= _map(tmp_path, other) <= 1
    assert (tmp_path / other / "pr_curves.png").is_file()


def test_an_export_evaluates_like_its_checkpoint(trained, tmp_path, capsys):
    run_dir, result = trained
    detector = load_detector(str(run_dir / "checkpoint-best.params"))
    prefix = str(tmp_path / "export" / "demo")
    export_model(detector.net, prefix, detector.image_size, preset="demo")
    # An export records no training data: name the validation set.
    status, out, _ = run(capsys, "evaluate", prefix, "--val-size", 16, "--batch-size", 8,
                         "--metric", "voc07", "-o", tmp_path / "eval", "--quiet")
    assert status == 0
    assert _map(tmp_path / "eval") == pytest.approx(result.best_map, abs=1e-6)


@pytest.fixture
def other_classes_checkpoint(tmp_path):
    """A demo-preset checkpoint with 2 classes, recording synthetic training data."""
    net = SSD(get_preset("demo").model, ("cat", "dog"))
    net.initialize()
    path = tmp_path / "cats.params"
    save_checkpoint(str(path), net, {"preset": "demo", "image_size": 64,
                                     "config": {"data": "synthetic", "val_size": 4}})
    return path


@pytest.mark.parametrize("case, names", [
    ("missing", ["no-such.params", "no such checkpoint"]),
    ("not_a_checkpoint", ["notes.params"]),
    ("other_classes", ["cats.params", "2 classes", "5 classes", "'circle'"]),
    ("empty_folder", ["no dataset found in folder", "empty"]),
])
def test_bad_input_is_one_line_and_exit_2(trained, other_classes_checkpoint, tmp_path, capsys,
                                          case, names):
    run_dir, _ = trained
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.params").write_text("not a checkpoint")
    argv = {"missing": [tmp_path / "no-such.params"],
            "not_a_checkpoint": [tmp_path / "notes.params"],
            "other_classes": [other_classes_checkpoint],
            "empty_folder": [run_dir / "checkpoint-best.params", "--data", tmp_path / "empty"],
            }[case]
    status, out, err = run(capsys, "evaluate", *argv, "-o", tmp_path / "eval", "--quiet")
    assert status == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("gluon-ssd evaluate: error: ")
    for name in names:
        assert name in err
    assert not (tmp_path / "eval").exists()


# ------------------------------------------------- training's validation == gluon-ssd evaluate

SHAPE_CLASSES = ("block", "disc")


def _voc_folder(root, sizes, seed=0):
    """A VOC-format folder: one JPEG + XML per ``(height, width)`` of ``sizes``, each with 1-3
    filled rectangles (block) or discs (disc); ``ImageSets/Main/{train,val}.txt`` put every
    third image in val."""
    rng = np.random.default_rng(seed)
    for sub in ("Annotations", "JPEGImages", os.path.join("ImageSets", "Main")):
        os.makedirs(root / sub)
    ids = []
    for i, (h, w) in enumerate(sizes):
        image = rng.integers(0, 50, (h, w, 3), dtype=np.uint8)
        objects = []
        for _ in range(rng.integers(1, 4)):
            side = int(rng.integers(min(h, w) // 5, min(h, w) // 2))
            x, y = int(rng.integers(0, w - side)), int(rng.integers(0, h - side))
            name = SHAPE_CLASSES[int(rng.integers(2))]
            if name == "block":
                cv2.rectangle(image, (x, y), (x + side - 1, y + side - 1), (240, 200, 40), -1)
            else:
                cv2.circle(image, (x + side // 2, y + side // 2), side // 2, (40, 220, 240), -1)
            objects.append(f"<object><name>{name}</name><difficult>0</difficult><bndbox>"
                           f"<xmin>{x + 1}</xmin><ymin>{y + 1}</ymin><xmax>{x + side}</xmax>"
                           f"<ymax>{y + side}</ymax></bndbox></object>")
        ids.append(f"im{i:02d}")
        assert cv2.imwrite(str(root / "JPEGImages" / f"{ids[-1]}.jpg"), image)
        (root / "Annotations" / f"{ids[-1]}.xml").write_text(
            f"<annotation><size><width>{w}</width><height>{h}</height><depth>3</depth></size>"
            + "".join(objects) + "</annotation>")
    (root / "ImageSets" / "Main" / "train.txt").write_text(
        "".join(f"{n}\n" for k, n in enumerate(ids) if k % 3))
    (root / "ImageSets" / "Main" / "val.txt").write_text(
        "".join(f"{n}\n" for k, n in enumerate(ids) if not k % 3))
    return root


def test_training_logs_the_map_evaluate_prints_on_large_non_square_images(tmp_path,
                                                                            monkeypatch):
    """320x240 and 240x320 images, a 64x64 network input: training's validation and
    ``evaluate_model`` score boxes in the same (original) pixels, so the mAP training logged for
    the best checkpoint is the one evaluate computes, to the last digit."""
    voc = _voc_folder(tmp_path / "shapes", [(240, 320), (320, 240)] * 9)
    out = tmp_path / "run"
    seen = []  # what training's validation hands the metrics
    update = DetectionEvaluator.update

    def spy(self, ids, scores, boxes, labels, image_sizes=None):
        seen.append((np.array(labels), np.array(image_sizes)))
        return update(self, ids, scores, boxes, labels, image_sizes)
    monkeypatch.setattr(DetectionEvaluator, "update", spy)
    result = train(TrainConfig(data=str(voc), out=str(out), image_size=64, batch_size=4,
                               epochs=2, eval_every=1, progress=False))
    assert [r.val_map is not None for r in result.history] == [True, True]
    labels, sizes = seen[0]
    np.testing.assert_array_equal(sizes, [[240, 320], [320, 240]] * 2)
    assert labels[..., :4].max() > 64  # original pixels, not the 64x64 input's
    monkeypatch.undo()
    evaluation = evaluate_model(str(out / BEST), metrics=("voc07",), progress=False)
    assert evaluation.num_images == 6 and evaluation.batch_size == 4
    # trained on 64 px zoom-in crops, validated and evaluated at the recipe's detection side
    assert evaluation.image_size == (96, 96)
    voc07 = next(iter(evaluation.evaluations.values())).voc["voc07"].map
    assert voc07 == result.best_map  # ==, not approx
    assert voc07 > 0  # something is detected: the units decide matches


def test_a_truncated_image_is_named_or_skipped_and_counted_by_evaluate(tmp_path):
    voc = _voc_folder(tmp_path / "shapes", [(48, 64)] * 6)
    bad = voc / "JPEGImages" / "im03.jpg"  # in val (every third image)
    data = bad.read_bytes()
    bad.write_bytes(data[:len(data) * 2 // 5])
    net = SSD(get_preset("demo").model, SHAPE_CLASSES)
    net.initialize()
    path = str(tmp_path / "shapes.params")
    save_checkpoint(path, net, {"preset": "demo", "image_size": 64,
                                "config": {"data": str(voc), "batch_size": 2}})
    with pytest.raises(BadImageError, match=re.escape(f"{bad}: truncated JPEG")):
        evaluate_model(path, metrics=("voc07",), progress=False)
    result = evaluate_model(path, metrics=("voc07",), progress=False, skip_bad=True)
    assert result.unreadable == [str(bad)] and result.num_images == 1
    assert "1 unreadable image(s) left out" in format_report(result).splitlines()[0]
    write_evaluation(result, str(tmp_path / "eval"))
    with open(tmp_path / "eval" / "metrics.json") as f:
        assert json.load(f)["unreadable"] == [str(bad)]


def test_evaluate_and_training_share_the_class_check():
    ds = type("Split", (), {"classes": ("b", "a")})()
    with pytest.raises(ValueError, match=re.escape(
            "m.params detects 2 classes ['a', 'b'], but 'x' (val) has 2 classes ['b', 'a'] "
            "(the same names in another order)")):
        check_classes(("a", "b"), "m.params detects", ds.classes, "'x' (val) has")
