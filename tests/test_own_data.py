"""A user's own data (issue 17): the boxes of a dataset read without decoding, the coverage
report and fitted anchors of ``gluon-ssd anchors --data``, anchor files, ``train --anchors``
and ``--init``, the finite-dataset recipe, and a checkpoint with fitted anchors in every job.

The data: VOC-format folders written here by :mod:`gluon_ssd.data.voc_shapes` (shapes and
image sizes SyntheticShapes does not have) and small COCO folders.
"""
import json
import os
import re
from dataclasses import replace

import mxnet as mx
import numpy as np
import pytest

from gluon_ssd.anchor_fit import (COVERAGE_WARNING, anchor_file_document, choose_anchors,
                                  extend_anchors, fit_anchors, read_anchor_file)
from gluon_ssd.anchors import preset_anchors
from gluon_ssd.checkpoint import fine_tune_start, load_checkpoint, read_checkpoint
from gluon_ssd.cli import main
from gluon_ssd.coverage import preset_coverage
from gluon_ssd.data.datasets import get_dataset
from gluon_ssd.data.labels import dataset_boxes
from gluon_ssd.detect import detect, load_detector
from gluon_ssd.export import export_model
from gluon_ssd.model_zoo import pretrained_path
from gluon_ssd.presets import DEMO_ANCHORS, get_preset
from gluon_ssd.recipe import DETECT_ALIGN, Schedule, choose_recipe, choose_schedule, detect_side
from gluon_ssd.run_folder import fixed_settings

from gluon_ssd.data.voc_shapes import make_dataset

TINY = ["--image-size", "96", "--batch-size", "8", "--quiet"]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """A VOC folder unlike SyntheticShapes: 48 training and 16 validation images."""
    return str(make_dataset(tmp_path_factory.mktemp("own") / "shapes", train=48, val=16, seed=3))


def _refused(capsys, argv, match):
    """``gluon-ssd ARGV`` stops with exit status 2 and one line matching ``match``."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(match, err), err


def _json(path):
    with open(path) as f:
        return json.load(f)


# ------------------------------------------------------------------------- boxes of a dataset

def test_dataset_boxes_are_the_labels_over_each_image_size_without_decoding(shapes, tmp_path):
    data = get_dataset(shapes, "train")
    boxes, class_ids = dataset_boxes(data, "shapes")
    expected, ids = [], []
    for i in range(len(data)):
        image, label = data[i]
        h, w = image.shape[:2]
        expected.append(label[:, :4] / [w, h, w, h])
        ids.append(label[:, 4])
    np.testing.assert_allclose(boxes, np.concatenate(expected), rtol=1e-6)
    np.testing.assert_array_equal(class_ids, np.concatenate(ids))
    assert boxes.min() >= 0 and boxes.max() <= 1
    # the images are not decoded: the same boxes come back with every image file broken
    broken = tmp_path / "broken"
    os.makedirs(broken)
    for sub in ("Annotations", "ImageSets"):
        os.symlink(os.path.join(shapes, sub), broken / sub)
    os.makedirs(broken / "JPEGImages")
    for name in os.listdir(os.path.join(shapes, "JPEGImages")):
        (broken / "JPEGImages" / name).write_bytes(b"not a jpeg")
    again, _ = dataset_boxes(get_dataset(str(broken), "train"), "broken")
    np.testing.assert_array_equal(again, boxes)


def test_dataset_boxes_of_coco_and_synthetic_and_a_sample(tmp_path):
    root = tmp_path / "coco"
    os.makedirs(root / "annotations")
    os.makedirs(root / "val2017")
    images = [{"id": 1, "file_name": "a.jpg", "width": 80, "height": 60},
              {"id": 2, "file_name": "b.jpg", "width": 40, "height": 100}]
    annotations = [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [8, 6, 40, 30],
                    "area": 1200, "iscrowd": 0},
                   {"id": 2, "image_id": 2, "category_id": 7, "bbox": [0, 50, 20, 50],
                    "area": 1000, "iscrowd": 0}]
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(
        {"images": images, "annotations": annotations, "categories": [{"id": 7, "name": "x"}]}))
    boxes, ids = dataset_boxes(get_dataset(str(root), "val"), "coco")
    np.testing.assert_allclose(boxes, [[0.1, 0.1, 0.6, 0.6], [0, 0.5, 0.5, 1.0]])
    np.testing.assert_array_equal(ids, [0, 0])
    synthetic = get_dataset("synthetic", "val", length=20, size=(64, 96))
    boxes, _ = dataset_boxes(synthetic, "synthetic")
    label = synthetic.render(3)[1]
    assert any(np.allclose(b, label[0, :4] / [96, 64, 96, 64]) for b in boxes)
    sample, _ = dataset_boxes(synthetic, "synthetic", max_images=5)
    assert 5 <= len(sample) < len(boxes)


def test_a_dataset_without_boxes_is_a_value_error_naming_it(tmp_path):
    root = tmp_path / "coco"
    os.makedirs(root / "annotations")
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(
        {"images": [{"id": 1, "file_name": "a.jpg", "width": 8, "height": 8}],
         "annotations": [], "categories": [{"id": 1, "name": "x"}]}))
    with pytest.raises(ValueError, match="empty set has no object boxes in its 1 images"):
        dataset_boxes(get_dataset(str(root), "val"), "the empty set")


# ---------------------------------------------------------------------- gluon-ssd anchors --data

def test_anchors_data_fit_reports_writes_a_picture_and_an_anchor_file(shapes, tmp_path, capsys,
                                                                      monkeypatch):
    png, spec_file = tmp_path / "cov.png", tmp_path / "fit.json"
    assert main(["anchors", "--data", shapes, "--fit", "-o", str(png), "--json",
                 str(spec_file)]) == 0
    out = capsys.readouterr().out
    assert "best anchor IoU >= 0.4" in out and ">= 0.6" in out
    assert "worst-covered boxes" in out and "fitted anchors:" in out
    assert png.stat().st_size > 10_000
    fitted = read_anchor_file(str(spec_file), DEMO_ANCHORS)
    boxes, _ = dataset_boxes(get_dataset(shapes, "train"), "shapes")
    assert fitted == fit_anchors(boxes, DEMO_ANCHORS)
    document = _json(spec_file)
    assert document["coverage"]["fitted"] > document["coverage"]["demo"]
    # nothing is overwritten: the same names again are refused; the default picture name
    # moves on to a free one
    _refused(capsys, ["anchors", "--data", shapes, "-o", str(png)], "-o: .*cov.png exists")
    _refused(capsys, ["anchors", "--data", shapes, "--json", str(spec_file)],
             "--json: .*fit.json exists")
    monkeypatch.chdir(tmp_path)
    for name in ("anchor-coverage.png", "anchor-coverage-2.png"):
        assert main(["anchors", "--data", shapes]) == 0
        assert f"wrote {name}" in capsys.readouterr().out
    _refused(capsys, ["anchors", "--preset", "demo", "--fit"], "--fit needs --data")
    _refused(capsys, ["anchors", "--preset", "demo", "--extend"], "--extend needs --data")
    _refused(capsys, ["anchors", "--data", shapes, "--fit", "--extend"],
             "--extend: not allowed with argument --fit")


def test_anchors_data_extend_keeps_the_preset_and_adds(shapes, tmp_path, capsys):
    spec_file = tmp_path / "extended.json"
    assert main(["anchors", "--data", shapes, "--extend", "-o", str(tmp_path / "c.png"),
                 "--json", str(spec_file)]) == 0
    assert "extended anchors:" in capsys.readouterr().out
    boxes, _ = dataset_boxes(get_dataset(shapes, "train"), "shapes")
    extended = read_anchor_file(str(spec_file), DEMO_ANCHORS)
    assert extended == extend_anchors(boxes, DEMO_ANCHORS) != DEMO_ANCHORS
    assert (extended.sizes, extended.ratios) == (DEMO_ANCHORS.sizes, DEMO_ANCHORS.ratios)
    document = _json(spec_file)
    assert document["method"] == "extend" and document["fitted"] is True
    assert document["coverage"]["extended"] > document["coverage"]["demo"]
    assert choose_anchors("extend", DEMO_ANCHORS, boxes) == extended
    _refused(capsys, ["anchors", "--data", shapes, "--sizes", "0.2"], "drop --sizes")


# ----------------------------------------------------------------------------- anchor files

def test_anchor_files_round_trip_and_name_each_problem(tmp_path):
    spec = replace(DEMO_ANCHORS, ratios=((1.0, 3.0),) + DEMO_ANCHORS.ratios[1:])
    path = tmp_path / "a.json"
    path.write_text(json.dumps(anchor_file_document(spec, "demo")))
    assert read_anchor_file(str(path), DEMO_ANCHORS) == spec
    assert choose_anchors(str(path), DEMO_ANCHORS, None) == spec
    assert choose_anchors("preset", DEMO_ANCHORS, None) == DEMO_ANCHORS

    def bad(change, match):
        document = json.loads(json.dumps(anchor_file_document(spec, "demo")))  # lists
        change(document["anchors"])
        path.write_text(json.dumps(document))
        with pytest.raises(ValueError, match=match):
            read_anchor_file(str(path), DEMO_ANCHORS)

    bad(lambda a: a["sizes"].__setitem__(2, 0.0), r"anchor file .*sizes must be positive")
    bad(lambda a: a["sizes"].__setitem__(2, -5), r"sizes must be positive")
    bad(lambda a: a["ratios"][1].__setitem__(1, -2.0), r"ratios\[1\] must be positive")
    bad(lambda a: a["ratios"][1].__setitem__(1, "wide"), r"ratios\[1\] must be positive")
    bad(lambda a: a["feature_maps"].pop(), "has 5 layers; the network has 6 feature maps")
    bad(lambda a: a["steps"].__setitem__(0, 9), "has steps .*; the network has")
    path.write_text("{not json")
    with pytest.raises(ValueError, match="is not JSON"):
        read_anchor_file(str(path), DEMO_ANCHORS)
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="has no 'anchors' object"):
        read_anchor_file(str(path), DEMO_ANCHORS)


# ------------------------------------------------------------------------------- the recipe

def test_the_recipe_for_finite_data_and_its_overrides():
    demo = get_preset("demo")
    finite = demo.finite
    recipe = choose_recipe({"data": "/my/data"}, demo)
    assert recipe.augment is finite.augment and recipe.anchors == finite.anchors
    assert recipe.flip is finite.flip is True and not demo.train.flip
    assert recipe.distort is finite.distort is True and not demo.train.distort
    assert recipe.zoom_in == finite.zoom_in > 1 == demo.train.zoom_in
    assert any(n.startswith("augmentation ") for n in recipe.notes)
    for start, flag in (("horizontal flips", "--no-flip"), ("colour distortion", "--no-distort"),
                        (f"zoom-in up to {finite.zoom_in:g}x", "--zoom-in 1")):
        assert any(n.startswith(start) and flag in n for n in recipe.notes), start
    assert recipe.batch_size == finite.batch_size != demo.train.batch_size
    assert any(n.startswith("batch size") for n in recipe.notes)
    assert choose_recipe({"data": "synthetic"}, demo) == replace(
        recipe, augment=demo.train.augment, zoom_out=demo.train.zoom_out, anchors="preset",
        flip=demo.train.flip, distort=demo.train.distort, zoom_in=demo.train.zoom_in,
        batch_size=demo.train.batch_size, detect_size=recipe.image_size, notes=())
    fitted = choose_recipe({"data": "/my/data"}, replace(demo, finite=replace(finite,
                                                                               anchors="fit")))
    assert fitted.anchors == "fit" and any("--anchors preset overrides" in n
                                           for n in fitted.notes)
    override = choose_recipe({"data": "voc", "augment": False, "flip": False, "distort": False,
                              "zoom_in": 1.0, "batch_size": 16, "anchors": "preset"}, demo)
    assert (override.augment, override.flip, override.distort, override.zoom_in,
            override.anchors, override.notes) == (False, False, False, 1.0, "preset", ())
    # the paper's augmentation does all three its own way: no note on them
    paper = choose_recipe({"data": "voc", "augment": True}, demo)
    assert not any(n.startswith(("horizontal", "colour", "zoom-in")) for n in paper.notes)
    assert choose_recipe({"data": "x", "init": "demo"}, demo).anchors == finite.anchors
    # detection where whole images show objects as large as the zoom-in's crops: 192 * 1.3
    assert (recipe.image_size, recipe.detect_size) == (192, 256)
    assert any(n.startswith("detection at 256 px") and "--detect-size overrides" in n
               for n in recipe.notes)
    assert choose_recipe({"data": "x", "detect_size": 224}, demo).detect_size == 224
    assert choose_recipe({"data": "x", "image_size": 96}, demo).detect_size == 128
    assert override.detect_size == paper.detect_size == 192  # no zoom-in
    assert [detect_side(side, zoom) for side, zoom in ((192, 1.0), (192, 1.6), (300, 2.0),
                                                       (96, 1.6), (20, 1.1))] == [
        192, 256, 448, 128, DETECT_ALIGN]
    assert choose_recipe({"data": "synthetic", "init": "demo"}, demo).anchors is None
    schedule = choose_schedule({"data": "x"}, demo, 600)
    epochs = -(-finite.images_seen // 600)
    assert schedule.epochs == epochs and "images seen" in schedule.notes[0]
    assert schedule.eval_every == -(-epochs // finite.evaluations) > 1
    assert "validation every" in schedule.notes[1]
    assert choose_schedule({"data": "x", "epochs": 3, "eval_every": 2}, demo, 600) == Schedule(3, 2)
    assert choose_schedule({"data": "x", "epochs": 3}, demo, 600).eval_every == 1  # 3 / 8 epochs
    assert choose_schedule({"data": "synthetic"}, demo, 5000) == Schedule(
        demo.train.epochs, demo.train.eval_every)
    assert choose_schedule({"data": "x"}, get_preset("ssd300"), 600).epochs == 240  # no recipe
    settings = fixed_settings({"data": "/my/data"}, demo)
    assert (settings["anchors"], settings["augment"], settings["flip"], settings["distort"],
            settings["zoom_in"], settings["init"]) == (
        finite.anchors, finite.augment, finite.flip, finite.distort, finite.zoom_in, None)
    assert (settings["image_size"], settings["detect_size"]) == (192, 256)
    paper = fixed_settings({"data": "/my/data", "augment": True}, demo)
    assert paper["flip"] is paper["distort"] is paper["zoom_in"] is None
    assert paper["detect_size"] == 192
    assert fixed_settings({"data": "d", "init": "./demo"}, demo)["init"] == "demo"
    assert fixed_settings({"data": "d", "anchors": "./a.json"}, demo)["anchors"] == "a.json"


# ----------------------------------------------------- training with fitted anchors, and --init

def test_training_fits_anchors_and_every_job_uses_them_without_a_flag(shapes, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", shapes, "--out", str(run), "--epochs", "1", "--anchors",
                 "fit", *TINY]) == 0
    out = capsys.readouterr().out
    assert "recipe: augmentation off" in out and "recipe: 2 epochs" not in out
    assert "anchors (fitted to the training boxes" in out and "demo's: " in out
    boxes, _ = dataset_boxes(get_dataset(shapes, "train"), "shapes")
    fitted = fit_anchors(boxes, DEMO_ANCHORS)
    assert fitted != DEMO_ANCHORS
    net, meta = load_checkpoint(str(run / "checkpoint-last.params"))
    assert net.spec.anchors == fitted and meta["config"]["anchors"] == "fit"
    # detect, evaluate, export (equal detections) and resume: no anchor flag anywhere
    model = load_detector(str(run / "checkpoint-best.params"))
    assert model.image_size == (128, 128) and meta["detect_size"] == 128  # 96 px zoomed 1.3x
    image = get_dataset(shapes, "val")[0][0].asnumpy()
    found = detect(model, image, threshold=0.01)[0]
    prefix = str(tmp_path / "export" / "m")
    export_model(model.net, prefix, model.image_size, preset="demo")
    exported = detect(load_detector(prefix), image, threshold=0.01)[0]
    assert len(found.scores) > 0
    for name in ("class_ids", "scores", "boxes"):
        np.testing.assert_allclose(getattr(found, name), getattr(exported, name), atol=1e-4)
    assert main(["evaluate", str(run / "checkpoint-best.params"), "--data", shapes,
                 "--metric", "voc07", "--quiet"]) == 0
    assert main(["train", "--data", shapes, "--out", str(run), "--epochs", "2", "--resume",
                 *TINY]) == 0
    assert "anchors (the resumed run's" in capsys.readouterr().out
    assert load_checkpoint(str(run / "checkpoint-last.params"))[0].spec.anchors == fitted
    _refused(capsys, ["train", "--data", shapes, "--out", str(run), "--epochs", "3", "--resume",
                      "--anchors", "preset", *TINY], "--anchors 'preset' \\(the run's: 'fit'\\)")
    _refused(capsys, ["train", "--data", shapes, "--out", str(run), "--epochs", "3", "--resume",
                      "--detect-size", "96", *TINY], "--detect-size 96 \\(the run's: 128\\)")


def test_the_coverage_warning_names_the_fix(shapes, tmp_path, capsys):
    boxes, _ = dataset_boxes(get_dataset(shapes, "train"), "shapes")
    assert preset_coverage(boxes, DEMO_ANCHORS).coverage < COVERAGE_WARNING
    # the preset's anchors
    assert main(["train", "--data", shapes, "--out", str(tmp_path / "run"), "--epochs", "1",
                 "--anchors", "preset", *TINY]) == 0
    out = capsys.readouterr().out
    assert "anchors (demo's, 3458 at 192 px)" in out
    assert f"warning: under {COVERAGE_WARNING:.0%}" in out and "--anchors fit" in out
    assert f"gluon-ssd anchors --data {shapes} --fit" in out
    # the default anchors of a dataset folder: the preset's extended, both coverages printed,
    # the warning as their coverage says
    assert main(["train", "--data", shapes, "--out", str(tmp_path / "run2"), "--epochs", "1",
                 *TINY]) == 0
    out = capsys.readouterr().out
    extended = extend_anchors(boxes, DEMO_ANCHORS)
    coverage = preset_coverage(boxes, extended).coverage
    assert "recipe: anchors extend" in out
    assert (f"anchors (demo's, and more for the training boxes they miss, "
            f"{len(preset_anchors(extended))} at 192 px): cover {coverage:.1%}") in out
    assert f"demo's: {preset_coverage(boxes, DEMO_ANCHORS).coverage:.1%}" in out
    assert (f"warning: under {COVERAGE_WARNING:.0%}" in out) == (coverage < COVERAGE_WARNING)


def _check_changed_layers_start_fresh(demo, classes, kept):
    """Anchors of layer 0 added (an extra size, a ratio) or replaced (same count): its box
    predictor starts fresh (N(0, 0.01), no trained row), every other array is the trained one."""
    trained = demo._collect_params_with_prefix()
    for change in (lambda a: replace(a, extra_sizes=((20.0,),) + ((),) * 5),
                   lambda a: replace(a, ratios=((1.0, 2.0, 0.5, 3.0),) + a.ratios[1:]),
                   lambda a: replace(a, ratios=((1.0, 3.0, 0.5),) + a.ratios[1:])):
        net, kept_here, _ = fine_tune_start(pretrained_path("demo"), classes, "demo", change)
        assert kept_here == kept - 2 and net.spec.anchors == change(DEMO_ANCHORS)
        params = net._collect_params_with_prefix()
        fresh, old = (p["box_predictors.0.weight"].data().asnumpy() for p in (params, trained))
        assert 0 < np.abs(fresh).max() < 0.1
        assert not any(np.array_equal(fresh[i], old[j]) for i in range(4) for j in range(4))
        np.testing.assert_array_equal(params["box_predictors.1.weight"].data().asnumpy(),
                                      trained["box_predictors.1.weight"].data().asnumpy())


def test_init_keeps_the_trained_model_but_its_class_predictors(shapes, tmp_path, capsys):
    demo = load_checkpoint(pretrained_path("demo"))[0]
    classes = get_dataset(shapes, "train").classes
    net, kept, total = fine_tune_start(pretrained_path("demo"), classes, "demo")
    assert net.classes == classes and net.spec == demo.spec
    assert kept == total  # everything but the class predictors
    trained = demo._collect_params_with_prefix()
    for name, param in net._collect_params_with_prefix().items():
        if not name.startswith("class_predictors."):
            np.testing.assert_array_equal(param.data().asnumpy(), trained[name].data().asnumpy())
    # other anchors: a layer whose anchors change starts its predictors afresh
    _check_changed_layers_start_fresh(demo, classes, kept)
    run = tmp_path / "run"
    assert main(["train", "--data", shapes, "--out", str(run), "--epochs", "1", "--init", "demo",
                 *TINY]) == 0
    out = capsys.readouterr().out
    assert "recipe: started from demo" in out
    assert "anchors (the initial model's, --init demo, and more for the training boxes" in out
    extended = extend_anchors(dataset_boxes(get_dataset(shapes, "train"), "s")[0], DEMO_ANCHORS)
    assert load_checkpoint(str(run / "checkpoint-last.params"))[0].spec.anchors == extended
    # the initial model's anchors exactly: the preset's, here
    assert main(["train", "--data", shapes, "--out", str(tmp_path / "run2"), "--epochs", "1",
                 "--init", "demo", "--anchors", "preset", *TINY]) == 0
    assert "anchors (demo's, 3458 at 192 px)" in capsys.readouterr().out
    assert read_checkpoint(str(run / "checkpoint-last.params"))[1]["classes"] == list(classes)
    _refused(capsys, ["train", "--preset", "ssd300", "--data", shapes, "--out",
                      str(tmp_path / "x"), "--init", "demo", "--quiet"],
             "is a model of preset 'demo', not 'ssd300_vgg16'")
    _refused(capsys, ["train", "--data", shapes, "--out", str(tmp_path / "y"), "--init", "demo",
                      "--pretrained-base", "vgg.params", "--quiet"], "drop --pretrained-base")
    mx.nd.waitall()
