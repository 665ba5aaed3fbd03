"""``gluon_ssd.detect``: images of any size/orientation/colour in, boxes in their own pixels out.

Most expectations come from a stand-in network whose "detection" is the bounding box of the bright
pixels of its input: drawing a white rectangle at known pixels of an image tells where the box
must land after resizing and mapping back. The real SSD is checked against a hand-made numpy
preprocessing and against its own export.
"""
import json
from dataclasses import replace

import cv2
import mxnet as mx
import numpy as np
import pytest
from gluoncv.utils.bbox import bbox_iou
from PIL import Image
from pycocotools.coco import COCO

from gluon_ssd import get_model
from gluon_ssd.checkpoint import save_checkpoint
from gluon_ssd.data.io import BadImageError, read_image
from gluon_ssd.detect import (Detections, LoadedModel, coco_document, coco_results, detect,
                              load_detector)
from gluon_ssd.export import export_model, export_paths
from gluon_ssd.model import DetectionNet
from gluon_ssd.presets import get_preset

CLASSES = ("cat", "dog", "bird")
DEMO_SPEC = get_preset("demo").detect  # the decoding a demo checkpoint gets
BRIGHT = 0.5  # the stand-in's bright-pixel threshold, on 0..1 inputs (mean 0, std 1)


class BrightBox:
    """Stand-in network: per image, one detection of class 0, score 0.9, at the normalised
    bounding box of the pixels brighter than BRIGHT in channel 0, then one empty row (-1)."""

    def __call__(self, x):
        x = x.asnumpy()
        b, _, h, w = x.shape
        ids, scores = np.full((b, 2, 1), -1.0), np.full((b, 2, 1), -1.0)
        boxes = np.full((b, 2, 4), -1.0)
        for i in range(b):
            rows, cols = np.nonzero(x[i, 0] > BRIGHT)
            ids[i, 0], scores[i, 0] = 0, 0.9
            boxes[i, 0] = [cols.min() / w, rows.min() / h,
                           (cols.max() + 1) / w, (rows.max() + 1) / h]
        return tuple(mx.nd.array(a) for a in (ids, scores, boxes))


def bright_detector(size=(64, 64)):
    return LoadedModel(BrightBox(), ("thing",), size, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), None,
                          "bright-box")


def rectangle_image(height, width, box, channels=3):
    """Black uint8 image with a white rectangle covering pixel box ``[x0, y0, x1, y1)``."""
    image = np.zeros((height, width, channels), np.uint8)
    x0, y0, x1, y1 = box
    image[y0:y1, x0:x1] = 255
    return image


def assert_box_near(found, expected, image_size, model_size):
    """Within one model pixel (scaled back to the image) of the expected box."""
    (h, w), (mh, mw) = image_size, model_size
    tol = np.array([w / mw, h / mh, w / mw, h / mh]) + 0.5
    assert np.all(np.abs(np.asarray(found, float) - expected) <= tol), (found, expected, tol)


@pytest.mark.parametrize("image_size, model_size", [((300, 500), (64, 64)),
                                                    ((480, 120), (60, 100))])
def test_box_lands_on_the_original_pixels_of_a_non_square_image(image_size, model_size):
    box = np.array([100, 60, 250, 180]) if image_size[1] > 200 else np.array([20, 300, 90, 420])
    image = rectangle_image(*image_size, box)
    [found] = detect(bright_detector(model_size), image, threshold=0.5)
    assert found.image_size == image_size and found.source == "<array 0>"
    assert len(found) == 1  # the empty row (-1) is dropped
    assert found.class_ids.tolist() == [0] and found.class_names == ["thing"]
    assert found.scores.tolist() == [pytest.approx(0.9)]
    assert_box_near(found.boxes[0], box, image_size, model_size)


def test_threshold_drops_lower_scores():
    image = rectangle_image(50, 80, (10, 10, 30, 30))
    assert len(detect(bright_detector(), image, threshold=0.95)[0]) == 0
    assert len(detect(bright_detector(), image, threshold=0.9)[0]) == 1
    with pytest.raises(ValueError, match="threshold must lie in"):
        detect(bright_detector(), image, threshold=1.5)


def test_exif_orientation_is_applied_before_detection(tmp_path):
    # Stored 40 high x 80 wide; EXIF orientation 6 means "rotate 90 degrees clockwise to view",
    # so the viewed image is 80 x 40 and stored pixel (r, c) is viewed at (c, 39 - r).
    stored = rectangle_image(40, 80, (60, 5, 75, 15))
    path = tmp_path / "rotated.jpg"
    picture = Image.fromarray(stored)
    exif = picture.getexif()
    exif[0x0112] = 6
    picture.save(path, exif=exif.tobytes(), quality=95)
    viewed_box = np.array([40 - 15, 60, 40 - 5, 75])
    for source in (path, Image.open(path)):
        [found] = detect(bright_detector(), source)
        assert found.image_size == (80, 40)
        assert_box_near(found.boxes[0], viewed_box, (80, 40), (64, 64))


def test_grayscale_and_rgba_images_files_and_arrays(tmp_path):
    box = np.array([30, 20, 90, 50])
    rgb = rectangle_image(60, 120, box)
    gray = rgb[:, :, 0]
    rgba = np.concatenate([rgb, np.where(rgb[:, :, :1] > 0, 255, 0).astype(np.uint8)], axis=2)
    Image.fromarray(gray, "L").save(tmp_path / "gray.png")
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    inputs = [tmp_path / "gray.png", tmp_path / "rgba.png", gray, gray[:, :, None], rgba, rgb]
    results = detect(bright_detector(), inputs, batch_size=4)
    assert [r.index for r in results] == list(range(6))
    assert results[0].source == str(tmp_path / "gray.png") and results[2].source == "<array 2>"
    for r in results:
        assert r.image_size == (60, 120)
        assert_box_near(r.boxes[0], box, (60, 120), (64, 64))
    for array in (gray, rgba):
        assert read_image(array).shape == (60, 120, 3)
    np.testing.assert_array_equal(read_image(tmp_path / "gray.png"), rgb)


def test_unreadable_files_raise_or_are_reported_and_skipped(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(rectangle_image(30, 40, (5, 5, 20, 20))).save(good)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"not a jpeg at all")
    missing = tmp_path / "missing.png"
    with pytest.raises(BadImageError, match="corrupt.jpg"):
        detect(bright_detector(), [good, corrupt])
    errors = []
    results = detect(bright_detector(), [corrupt, good, missing], batch_size=2,
                     on_error=errors.append)
    assert [r.index for r in results] == [1] and results[0].source == str(good)
    assert [e.path for e in errors] == [str(corrupt), str(missing)]


def test_coco_results_are_xywh_pixels_and_load_in_pycocotools():
    found = Detections("a.jpg", 7, (100, 200), np.array([2, 0]), np.array([0.8, 0.3], np.float32),
                       np.array([[10, 20, 50, 80], [0, 0, 200, 100]], np.float32), CLASSES)
    rows = coco_results([found])
    assert rows[0] == {"image_id": 7, "file_name": "a.jpg", "category_id": 2,
                       "bbox": [10.0, 20.0, 40.0, 60.0], "score": pytest.approx(0.8)}
    document = json.loads(json.dumps(coco_document([found], CLASSES)))
    gt = COCO()
    gt.dataset = {"images": document["images"], "categories": document["categories"],
                  "annotations": []}
    gt.createIndex()
    res = gt.loadRes(document["detections"])
    anns = res.loadAnns(res.getAnnIds(imgIds=[7]))
    assert sorted(a["area"] for a in anns) == [2400.0, 20000.0]
    assert gt.loadImgs(7)[0]["width"] == 200 and gt.loadCats(2)[0]["name"] == "bird"


# ---------------------------------------------------------------------------------------------
# The real SSD: checkpoint and export.

@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    """A random demo-preset SSD saved as a checkpoint (trained at 96x96) and exported."""
    folder = tmp_path_factory.mktemp("model")
    mx.random.seed(0)
    ssd = get_model("demo", CLASSES)
    checkpoint = str(folder / "checkpoint.params")
    save_checkpoint(checkpoint, ssd, {"preset": "demo", "image_size": 96})
    prefix = str(folder / "export")
    export_model(DetectionNet(ssd, DEMO_SPEC), prefix, (96, 96), preset="demo")
    return checkpoint, prefix


def by_hand(checkpoint, image, spec):
    """Detections of ``image`` by resizing with cv2, normalising with numpy and running the
    live DetectionNet: ``(ids, scores, boxes in pixels)`` with id >= 0."""
    from gluon_ssd.checkpoint import load_checkpoint

    ssd, _ = load_checkpoint(checkpoint)
    x = cv2.resize(image, (96, 96), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255
    x = (x - np.array(ssd.spec.mean)) / np.array(ssd.spec.std)
    batch = mx.nd.array(x.transpose(2, 0, 1)[None].astype(np.float32))
    ids, scores, boxes = (o.asnumpy()[0] for o in DetectionNet(ssd, spec)(batch))
    keep = ids[:, 0] >= 0
    h, w = image.shape[:2]
    return ids[keep, 0], scores[keep, 0], boxes[keep] * [w, h, w, h]


def test_checkpoint_detections_match_a_hand_made_pipeline(model_files):
    checkpoint, _ = model_files
    detector = load_detector(checkpoint, {"score_threshold": 0.0})
    assert detector.image_size == (96, 96) and detector.preset == "demo"
    assert detector.classes == CLASSES and detector.spec.nms_threshold == 0.45
    image = np.random.RandomState(1).randint(0, 256, (120, 200, 3)).astype(np.uint8)
    [found] = detect(detector, image, threshold=0.0)
    ids, scores, boxes = by_hand(checkpoint, image, replace(DEMO_SPEC, score_threshold=0.0))
    assert len(found) == len(ids) > 0
    np.testing.assert_array_equal(found.class_ids, ids)
    np.testing.assert_allclose(found.scores, scores, atol=1e-4)
    np.testing.assert_allclose(found.boxes, boxes, atol=0.05)
    assert found.boxes[:, [0, 2]].max() <= 200 and found.boxes[:, [1, 3]].max() <= 120


@pytest.mark.parametrize("overrides", [{}, {"nms_threshold": 0.2, "force_suppress": True}])
def test_export_detects_like_the_checkpoint_also_with_other_decoding(model_files, overrides):
    checkpoint, prefix = model_files
    spec = dict(overrides, score_threshold=0.0)
    images = [np.random.RandomState(i).randint(0, 256, (80 + 20 * i, 150, 3)).astype(np.uint8)
              for i in range(3)]
    live = detect(checkpoint, images, threshold=0.0, spec=spec, batch_size=2)
    exported = load_detector(export_paths(prefix)["symbol"], spec)  # a file of it names it too
    assert exported.source == prefix and exported.spec == replace(DEMO_SPEC, **spec)
    assert exported.image_size == (96, 96) and exported.classes == CLASSES
    for a, b in zip(live, detect(exported, images, threshold=0.0)):
        np.testing.assert_array_equal(a.class_ids, b.class_ids)
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(a.boxes, b.boxes, rtol=1e-5, atol=1e-3)


def test_force_suppress_leaves_no_overlap_above_the_nms_threshold(model_files):
    _, prefix = model_files
    image = np.random.RandomState(5).randint(0, 256, (96, 96, 3)).astype(np.uint8)
    # multibox clips boxes before NMS; per_class (GluonCV's order) clips the kept ones after it,
    # which can raise their overlap above the threshold at the image border.
    spec = {"score_threshold": 0.0, "nms_threshold": 0.3, "force_suppress": True,
            "decoder": "multibox"}
    [found] = detect(prefix, image, threshold=0.0, spec=spec)
    iou = bbox_iou(found.boxes.astype(np.float64), found.boxes.astype(np.float64))
    np.fill_diagonal(iou, 0)
    assert len(found) > 1 and iou.max() <= 0.3 + 1e-4


def test_export_without_graph_cut_names_rejects_other_decoding(model_files, tmp_path):
    _, prefix = model_files
    paths = export_paths(prefix)
    copy = str(tmp_path / "fixed")
    meta = json.loads(open(paths["meta"]).read())
    del meta["ssd_outputs"]
    for key, path in export_paths(copy).items():
        if key == "meta":
            json.dump(meta, open(path, "w"))
        else:
            open(path, "wb").write(open(paths[key], "rb").read())
    assert load_detector(copy).spec == DEMO_SPEC  # the exported settings still work
    with pytest.raises(ValueError, match="fixed settings.*export the checkpoint again"):
        load_detector(copy, {"nms_threshold": 0.3})


def test_mismatched_preset_or_classes_and_bad_paths_are_named(model_files, tmp_path):
    checkpoint, prefix = model_files
    for path in (checkpoint, prefix):
        with pytest.raises(ValueError, match=rf"{path} is a model of preset 'demo', not 'ssd300"):
            load_detector(path, preset="ssd300")  # a short name is resolved
        with pytest.raises(ValueError, match=rf"{path} has 3 classes .*expected 2 \['a', 'b'\]"):
            load_detector(path, classes=["a", "b"])
    with pytest.raises(ValueError, match="nope.params: no such checkpoint file, export prefix"):
        load_detector(tmp_path / "nope.params")
    (tmp_path / "text.params").write_text("hello")
    with pytest.raises(ValueError, match="text.params"):
        load_detector(tmp_path / "text.params")
    with pytest.raises(ValueError, match=r"unknown DetectSpec field\(s\) \['nms'\]"):
        load_detector(checkpoint, {"nms": 0.3})
    with pytest.raises(ValueError, match="pass them to load_detector"):
        detect(load_detector(checkpoint), np.zeros((8, 8, 3), np.uint8), spec={"nms_topk": 5})
