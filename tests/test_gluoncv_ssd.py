"""GluonCV's SSD weights in gluon-ssd: same weights, same numbers; wrong files refused.

No download: GluonCV's own SSDs are built with random weights and saved to temporary files. The
expectations are GluonCV's computations on the same input, captured from its network (the
softmax probabilities its class decoder receives, the anchors and decoded boxes of its box
decoder, and its final ``net(x)``). The class and box predictors are rescaled first so that the
probabilities spread over (0, 1) (random VGG activations would saturate them at 0 or 1 and make
most scores equal) and the box offsets stay moderate.

The decoders' own behaviour is checked on a hand-made two-anchor case with hand-computed rows.
"""
import os
from dataclasses import dataclass, replace
from typing import Dict

import gluoncv
import mxnet as mx
import numpy as np
import pytest

from gluon_ssd.checkpoint import read_checkpoint
from gluon_ssd.cli import main
from gluon_ssd.convert import (GLUONCV_CLASSES, convert_gluoncv_ssd, gluoncv_class_names,
                               load_gluoncv_ssd)
from gluon_ssd.detect import load_detector
from gluon_ssd.boxes import BoxCoder
from gluon_ssd.model.head import DetectionHead
from gluon_ssd.presets import DetectSpec

PER_CLASS = DetectSpec(decoder="per_class")


@dataclass
class Reference:
    """A GluonCV SSD's file, input and outputs (GluonCV's units: pixels, centre anchors)."""

    path: str
    size: int
    x: mx.nd.NDArray
    probs: np.ndarray  # (1, N, C+1)
    anchors: np.ndarray  # (N, 4) cx, cy, w, h in pixels
    boxes: np.ndarray  # (1, N, 4) decoded corners in pixels
    final: tuple  # net(x): ids (1, 100, 1), scores (1, 100, 1), boxes (1, 100, 4) pixels


def gluoncv_reference(name: str, size: int, folder: str, seed: int = 0) -> Reference:
    """Build GluonCV's ``name`` with random weights, run it once on a random image, save it."""
    mx.random.seed(seed)
    net = gluoncv.model_zoo.get_model(name, pretrained=False, pretrained_base=False)
    net.initialize()
    x = mx.nd.array(np.random.RandomState(seed).normal(size=(1, 3, size, size)), dtype="float32")
    # Rescale the predictors: class logits with std 2, box offsets with std 1 on this input.
    features = net.features(x)
    for predictors, target in ((net.class_predictors, 2.0), (net.box_predictors, 1.0)):
        for predictor, feature in zip(predictors, features):
            factor = target / predictor(feature).asnumpy().std()  # also ends deferred init
            predictor.predictor.weight.set_data(predictor.predictor.weight.data() * factor)
    seen: Dict[str, np.ndarray] = {}

    def on_classes(block, inputs, output):
        seen["probs"] = inputs[0].asnumpy()

    def on_boxes(block, inputs, output):
        seen["anchors"], seen["boxes"] = inputs[1].asnumpy()[0], output.asnumpy()

    net.cls_decoder.register_forward_hook(on_classes)
    net.bbox_decoder.register_forward_hook(on_boxes)
    final = tuple(o.asnumpy() for o in net(x))
    path = os.path.join(folder, f"{name}.params")
    net.save_parameters(path)
    return Reference(path, size, x, seen["probs"], seen["anchors"], seen["boxes"], final)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return str(tmp_path_factory.mktemp("gluoncv_ssd"))


CASES = {  # GluonCV model -> (input side, the gluon-ssd preset it converts into)
    "ssd_300_vgg16_atrous_voc": (300, "ssd300_vgg16"),
    "ssd_512_vgg16_atrous_voc": (512, "ssd512_vgg16"),
    "ssd_300_vgg16_atrous_coco": (300, "ssd300_vgg16_coco"),
}


@pytest.fixture(scope="module")
def converted(folder):
    """GluonCV model name -> (its Reference, gluon-ssd's raw outputs on the same input), each
    built on first use."""
    cache = {}

    def get(name):
        if name not in cache:
            size, preset = CASES[name]
            ref = gluoncv_reference(name, size, folder)
            net, found = load_gluoncv_ssd(ref.path)  # the preset found from the file's anchors
            assert found == preset
            cache[name] = ref, net(ref.x)
        return cache[name]

    return get


def corners(centre: np.ndarray) -> np.ndarray:
    """cx, cy, w, h -> xmin, ymin, xmax, ymax."""
    return np.concatenate([centre[..., :2] - centre[..., 2:] / 2,
                           centre[..., :2] + centre[..., 2:] / 2], axis=-1)


def valid_rows(ids, scores, boxes) -> np.ndarray:
    """The non-empty rows of one image as ``[id, score, box]``, in a tie-independent order."""
    rows = np.concatenate([ids[0], scores[0], boxes[0]], axis=1)
    rows = rows[rows[:, 0] >= 0]
    return rows[np.lexsort(rows.T[::-1])]


@pytest.mark.parametrize("name", list(CASES))
def test_probabilities_anchors_and_boxes_equal_gluoncv(converted, name):
    ref, (cls_preds, box_preds, anchors) = converted(name)
    n = ref.anchors.shape[0]
    assert cls_preds.shape == ref.probs.shape and anchors.shape == (1, n, 4)
    # Anchors in the same order: GluonCV's pixel centres as normalised corners.
    np.testing.assert_allclose(anchors[0].asnumpy(), corners(ref.anchors) / ref.size, atol=1e-6)
    probs = mx.nd.softmax(cls_preds, axis=-1).asnumpy()
    assert 0.05 < probs[..., 1:].max() < 0.999  # spread out, not saturated
    np.testing.assert_allclose(probs, ref.probs, atol=1e-4)
    boxes = BoxCoder().decode_graph(mx.nd, box_preds, anchors).asnumpy()
    np.testing.assert_allclose(boxes, ref.boxes / ref.size, atol=1e-4)


@pytest.mark.parametrize("name", list(CASES))
def test_per_class_decoder_equals_gluoncv_output(converted, name):
    ref, outputs = converted(name)
    ids, scores, boxes = (o.asnumpy() for o in DetectionHead(PER_CLASS)(*outputs))
    assert ids.shape == (1, 100, 1) and boxes.shape == (1, 100, 4)
    theirs = valid_rows(ref.final[0], ref.final[1], np.clip(ref.final[2] / ref.size, 0, 1))
    ours = valid_rows(ids, scores, boxes)
    assert len(theirs) == 100  # enough candidates survive NMS to fill every row
    np.testing.assert_array_equal(ours[:, 0], theirs[:, 0])
    np.testing.assert_allclose(ours[:, 1], theirs[:, 1], atol=1e-6)
    np.testing.assert_allclose(ours[:, 2:], theirs[:, 2:], atol=1e-4)
    # The multibox decoder on the same outputs keeps one class per anchor: other detections.
    multibox = valid_rows(*(o.asnumpy() for o in DetectionHead(DetectSpec())(*outputs)))
    assert not (len(multibox) == len(ours) and np.allclose(multibox, ours))


def test_converted_checkpoint_detects_like_gluoncv(converted, folder):
    ref, _ = converted("ssd_300_vgg16_atrous_voc")
    out = os.path.join(folder, "converted-voc300.params")
    assert main(["convert", "--from-gluoncv", ref.path, "--preset", "ssd300_vgg16",
                 "--classes", "voc", "-o", out]) == 0
    _, meta = read_checkpoint(out)
    assert meta["preset"] == "ssd300_vgg16" and meta["classes"] == list(GLUONCV_CLASSES["voc"])
    assert meta["image_size"] == 300 and meta["source"]["gluoncv_file"] == os.path.basename(ref.path)
    detector = load_detector(out, PER_CLASS)
    assert detector.classes[:2] == ("aeroplane", "bicycle") and detector.image_size == (300, 300)
    np.testing.assert_allclose(detector.mean, (0.485, 0.456, 0.406))
    ids, scores, boxes = (o.asnumpy() for o in detector.net(ref.x))
    theirs = valid_rows(ref.final[0], ref.final[1], np.clip(ref.final[2] / ref.size, 0, 1))
    np.testing.assert_allclose(valid_rows(ids, scores, boxes), theirs, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# Wrong files

def test_ssd512_file_into_ssd300_names_the_first_mismatch_and_both_shapes(converted):
    ref, _ = converted("ssd_512_vgg16_atrous_voc")
    # Layer 4 has 6 anchors per cell in SSD512 and 4 in SSD300: 24 or 16 box channels.
    with pytest.raises(ValueError, match=r"'box_predictors\.4\.weight' has shape "
                                         r"\(24, 256, 3, 3\) in the file but \(16, 256, 3, 3\)"):
        load_gluoncv_ssd(ref.path, "ssd300_vgg16")


def test_ssd300_file_into_ssd512_names_the_first_mismatch_and_both_shapes(converted):
    ref, _ = converted("ssd_300_vgg16_atrous_voc")
    with pytest.raises(ValueError, match=r"'box_predictors\.4\.weight' has shape "
                                         r"\(16, 256, 3, 3\) in the file but \(24, 256, 3, 3\)"):
        load_gluoncv_ssd(ref.path, "ssd512_vgg16")


def test_coco_file_as_voc_names_the_class_predictor_and_both_shapes(converted):
    ref, _ = converted("ssd_300_vgg16_atrous_coco")
    # 4 anchors per cell on conv4_3: 4 * 81 class channels for COCO, 4 * 21 for VOC.
    with pytest.raises(ValueError, match=r"'class_predictors\.0\.weight' has shape "
                                         r"\(324, 512, 3, 3\) in the file but \(84, 512, 3, 3\)"):
        load_gluoncv_ssd(ref.path, "ssd300_vgg16_coco", classes="voc")


def test_coco300_file_into_voc300_preset_names_the_anchors_and_the_right_preset(converted):
    ref, _ = converted("ssd_300_vgg16_atrous_coco")
    with pytest.raises(ValueError, match=r"not a model of preset 'ssd300_vgg16': the file's "
                                         r"anchors of layer 0 differ.*'ssd300_vgg16_coco'"):
        load_gluoncv_ssd(ref.path, "ssd300_vgg16")


def test_files_that_are_not_gluoncv_ssds_are_refused(converted, folder):
    ref, _ = converted("ssd_300_vgg16_atrous_voc")
    checkpoint = os.path.join(folder, "ours.params")
    convert_gluoncv_ssd(ref.path, checkpoint)
    with pytest.raises(ValueError, match=r"not a GluonCV SSD parameter file.*'model:"):
        load_gluoncv_ssd(checkpoint)
    classifier = gluoncv.model_zoo.get_model("mobilenet0.25")  # a GluonCV file, not an SSD
    classifier.initialize()
    classifier(mx.nd.zeros((1, 3, 32, 32)))
    classifier.save_parameters(os.path.join(folder, "classifier.params"))
    with pytest.raises(ValueError, match="not a GluonCV SSD parameter file"):
        load_gluoncv_ssd(os.path.join(folder, "classifier.params"))
    other = {"features.mobilenet0_conv0_weight": mx.nd.zeros((8, 3, 3, 3)),
             "class_predictors.0.predictor.weight": mx.nd.zeros((84, 8, 3, 3)),
             "box_predictors.0.predictor.weight": mx.nd.zeros((16, 8, 3, 3))}
    mx.nd.save(os.path.join(folder, "mobilenet.params"), other)
    with pytest.raises(ValueError, match="another base network.*mobilenet0_conv0_weight"):
        load_gluoncv_ssd(os.path.join(folder, "mobilenet.params"))
    with open(os.path.join(folder, "garbage.params"), "wb") as f:
        f.write(b"not a parameter file")
    with pytest.raises(ValueError, match="not an MXNet parameter file"):
        load_gluoncv_ssd(os.path.join(folder, "garbage.params"))
    with pytest.raises(ValueError, match="no such file"):
        load_gluoncv_ssd(os.path.join(folder, "missing.params"))


def test_cli_convert_reports_a_wrong_preset_in_one_line(converted, folder, capsys):
    ref, _ = converted("ssd_512_vgg16_atrous_voc")
    out = os.path.join(folder, "never.params")
    assert main(["convert", "--from-gluoncv", ref.path, "--preset", "ssd300", "-o", out]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "box_predictors.4.weight" in err
    assert not os.path.exists(out)
    # Two class names for a 20-class file: 4 * 3 class channels on conv4_3, not 4 * 21.
    assert main(["convert", "--from-gluoncv", ref.path, "--classes", "cat", "dog", "-o", out]) == 2
    assert ("'class_predictors.0.weight' has shape (84, 512, 3, 3) in the file but "
            "(12, 512, 3, 3)") in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"unknown class list 'imagenet'.*\['coco', 'voc'\]"):
        gluoncv_class_names("imagenet", 20)
    with pytest.raises(ValueError, match="90 classes, neither VOC's 20 nor COCO's 80"):
        gluoncv_class_names(None, 90)


# ---------------------------------------------------------------------------------------------
# The two decoders on a hand-made case

# Two anchors, two classes (+ background). Anchor 0 is two classes at once; anchor 1, far away,
# is nearly background. Logits are log-probabilities, so the softmax gives back these numbers.
PROBS = np.array([[[0.1, 0.5, 0.4], [0.9, 0.06, 0.04]]])
ANCHORS = np.array([[[0.2, 0.2, 0.4, 0.6], [0.7, 0.7, 0.9, 0.9]]])
# Anchor 0 moved by (1, -1) in x/y and doubled in width: centre (0.3 + 0.1 * 0.2, 0.4 - 0.1 *
# 0.4) = (0.32, 0.36), size 0.4 x 0.4. Anchor 1 grows 3x (w = h = 0.6, past the image edge).
OFFSETS = np.array([[1.0, -1.0, np.log(2) / 0.2, 0.0, 0.0, 0.0, np.log(3) / 0.2, np.log(3) / 0.2]])
BOX0 = [0.12, 0.16, 0.52, 0.56]
BOX1 = [0.5, 0.5, 1.0, 1.0]  # (0.5, 0.5, 1.1, 1.1) clipped to the image


def hand_made(spec: DetectSpec, hybridize: bool = False) -> np.ndarray:
    detector = DetectionHead(spec)
    if hybridize:
        detector.hybridize()
    ids, scores, boxes = detector(mx.nd.array(np.log(PROBS)), mx.nd.array(OFFSETS),
                                  mx.nd.array(ANCHORS))
    return np.concatenate([ids.asnumpy(), scores.asnumpy(), boxes.asnumpy()], axis=2)[0]


def rows(*found):
    """Expected output rows, padded with empty (-1) rows to 5."""
    return np.array(list(found) + [[-1.0] * 6] * (5 - len(found)))


@pytest.mark.parametrize("hybridize", [False, True])
def test_per_class_keeps_two_classes_of_one_anchor_where_multibox_keeps_one(hybridize):
    per_class = hand_made(DetectSpec(decoder="per_class", max_detections=5), hybridize)
    np.testing.assert_allclose(per_class, rows([0, 0.5] + BOX0, [1, 0.4] + BOX0,
                                               [0, 0.06] + BOX1, [1, 0.04] + BOX1), atol=1e-6)
    multibox = hand_made(DetectSpec(decoder="multibox", max_detections=5), hybridize)
    np.testing.assert_allclose(multibox, rows([0, 0.5] + BOX0, [0, 0.06] + BOX1), atol=1e-6)


def test_per_class_honours_force_suppress_topk_and_threshold():
    spec = DetectSpec(decoder="per_class", max_detections=5)
    # Class-agnostic NMS: the class-1 box on anchor 0 (IoU 1 with the class-0 box) goes.
    np.testing.assert_allclose(hand_made(replace(spec, force_suppress=True)),
                               rows([0, 0.5] + BOX0, [0, 0.06] + BOX1), atol=1e-6)
    np.testing.assert_allclose(hand_made(replace(spec, nms_topk=3)),
                               rows([0, 0.5] + BOX0, [1, 0.4] + BOX0, [0, 0.06] + BOX1),
                               atol=1e-6)
    np.testing.assert_allclose(hand_made(replace(spec, score_threshold=0.05)),
                               rows([0, 0.5] + BOX0, [1, 0.4] + BOX0, [0, 0.06] + BOX1),
                               atol=1e-6)


def test_unknown_decoder_is_refused():
    with pytest.raises(ValueError, match=r"unknown decoder 'caffe'.*'multibox', 'per_class'"):
        DetectionHead(DetectSpec(decoder="caffe"))
