"""Training: the run folder, exact resume after SIGKILL, checkpoints without pickle, divergence,
dataset-folder errors and training on a VOC-format folder, and the learning-rate schedule.

Every run is tiny (64x64 images, 32 training / 16 validation images, batch 8, 1-3 epochs: about
a second per run) so the whole file takes a few seconds of CPU.
"""
import dataclasses
import json
import math
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import time

import cv2
import mxnet as mx
import numpy as np
import pytest
from PIL import Image

from gluon_ssd import train as train_module
from gluon_ssd.checkpoint import load_checkpoint, read_checkpoint
from gluon_ssd.data.io import BadImageError
from gluon_ssd.loss import SSDLoss
from gluon_ssd.presets import TrainSpec, get_preset
from gluon_ssd.report import write_run_pictures
from gluon_ssd.schedule import learning_rate
from gluon_ssd.train import BEST, LAST, TrainConfig, TrainingDiverged, train

TINY = dict(image_size=64, train_size=32, val_size=16, batch_size=8, progress=False)
BATCHES = TINY["train_size"] // TINY["batch_size"]  # iterations per epoch
TIMING = ("images_per_second", "load_seconds", "step_seconds")  # differ from run to run


def tiny(out, **kw) -> TrainConfig:
    return TrainConfig(out=str(out), **dict(TINY, **kw))


def _arrays(path):
    arrays, meta = read_checkpoint(str(path))
    return {k: v.asnumpy() for k, v in arrays.items()}, meta


def _without_timing(history):
    return [{k: v for k, v in row.items() if k not in TIMING} for row in history]


@pytest.fixture(scope="module")
def run_a(tmp_path_factory):
    """An uninterrupted 3-epoch run, evaluated after epochs 2 and 3, and its pictures."""
    out = tmp_path_factory.mktemp("run_a")
    config = tiny(out, epochs=3, eval_every=2)
    result = train(config)
    assert sorted(os.listdir(out)) == sorted([BEST, LAST, "log.csv", "log.json", "config.json"])
    write_run_pictures(str(out))  # what the CLI and the demo do after training
    return config, result


# ----------------------------------------------------------------------------- the run folder

def test_a_run_writes_the_run_folder(run_a):
    config, result = run_a
    out = config.out
    assert sorted(os.listdir(out)) == sorted([
        BEST, LAST, "log.csv", "log.json", "config.json", "curve.png", "detections.png"])
    for png in ("curve.png", "detections.png"):
        with Image.open(os.path.join(out, png)) as image:
            assert image.format == "PNG" and image.size[0] > 100
    with open(os.path.join(out, "config.json")) as f:
        assert json.load(f) == dataclasses.asdict(config)

    with open(os.path.join(out, "log.json")) as f:
        rows = json.load(f)
    assert [r["epoch"] for r in rows] == [1, 2, 3]  # one row per epoch
    assert [r["iteration"] for r in rows] == [BATCHES, 2 * BATCHES, 3 * BATCHES]
    assert rows[0]["val_map"] is None  # eval_every=2: epochs 2 and 3 (the last) are evaluated
    assert all(0 <= r["val_map"] <= 1 for r in rows[1:])
    for r in rows:
        assert all(math.isfinite(r[k]) and r[k] >= 0 for k in
                   ("loss", "confidence", "localization", "load_seconds", "step_seconds"))
        assert r["loss"] == pytest.approx(r["confidence"] + r["localization"], rel=1e-5)
        assert r["images_per_second"] > 0
    assert rows == [dataclasses.asdict(r) for r in result.history]
    with open(os.path.join(out, "log.csv")) as f:
        lines = f.read().splitlines()
    assert lines[0].split(",")[:4] == ["epoch", "iteration", "learning_rate", "loss"]
    assert len(lines) == 4 and lines[1].endswith(",")  # epoch 1: empty val_map column

    # the logged learning rate is the schedule's at the epoch's last iteration
    preset = get_preset("demo")
    for r in rows:
        expected = learning_rate(preset.train, preset.train.learning_rate,
                                 r["epoch"] - 1 + (BATCHES - 1) / BATCHES, 3)
        assert r["learning_rate"] == pytest.approx(expected, rel=1e-6)

    maps = [r["val_map"] for r in rows[1:]]
    assert result.best_map == max(maps) and result.last_map == maps[-1]
    _, last = read_checkpoint(os.path.join(out, LAST))
    _, best = read_checkpoint(os.path.join(out, BEST))
    assert last["epoch"] == 2 and last["iteration"] == 3 * BATCHES
    assert best["epoch"] == 1 + maps.index(max(maps))  # epoch index of the best mAP
    assert last["history"] == rows and last["best_map"] == result.best_map


# ----------------------------------------------------------------------------- exact resume

# Run B in a child process, each step slowed by 0.2 s so the parent can kill it mid-run
# (the sleep changes no number). The config comes as JSON in argv[1].
CHILD = """
import json, sys, time
import gluon_ssd.train as T
step = T.Run.step
def slow_step(self, *args):
    time.sleep(0.2)
    return step(self, *args)
T.Run.step = slow_step
T.train(T.TrainConfig(**json.loads(sys.argv[1])))
"""


def _epoch_of(path):
    """Epoch index recorded in a checkpoint, or None while there is none."""
    try:
        return read_checkpoint(path)[1]["epoch"]
    except (ValueError, OSError):
        return None


def test_killed_and_resumed_run_equals_an_uninterrupted_one(run_a, tmp_path):
    config_a, _ = run_a
    config_b = dataclasses.replace(config_a, out=str(tmp_path / "run_b"))
    last_b = os.path.join(config_b.out, LAST)
    env = dict(os.environ, MPLBACKEND="Agg")
    argv = [sys.executable, "-c", CHILD, json.dumps(dataclasses.asdict(config_b))]
    stderr = tmp_path / "run_b.stderr"
    with open(stderr, "wb") as err:
        child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, env=env)
    deadline = time.monotonic() + 120
    try:
        while _epoch_of(last_b) is None:
            assert child.poll() is None, f"run B ended: {stderr.read_text()[-2000:]}"
            assert time.monotonic() < deadline, "run B wrote no checkpoint within 120 s"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=30)
    killed_at = _epoch_of(last_b)
    assert killed_at in (0, 1), "run B was not interrupted"  # 3 epochs: indices 0, 1, 2

    train(dataclasses.replace(config_b, resume=True))

    for name in (LAST, BEST):
        arrays_a, meta_a = _arrays(os.path.join(config_a.out, name))
        arrays_b, meta_b = _arrays(os.path.join(config_b.out, name))
        assert sorted(arrays_a) == sorted(arrays_b)
        assert any(k.startswith("optimizer:") for k in arrays_a) == (name == LAST)
        for key in arrays_a:
            np.testing.assert_array_equal(arrays_b[key], arrays_a[key], err_msg=f"{name} {key}")
        for key in ("epoch", "iteration", "best_map", "classes", "optimizer"):
            assert meta_b.get(key) == meta_a.get(key), key
        assert _without_timing(meta_b["history"]) == _without_timing(meta_a["history"])
    with open(os.path.join(config_b.out, "log.json")) as f:
        assert len(json.load(f)) == 3


# ----------------------------------------------------------------------------- checkpoints

def test_checkpoints_load_without_pickle(run_a, monkeypatch):
    def no_pickle(*args, **kwargs):
        raise AssertionError("a checkpoint must load without pickle")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, no_pickle)
    config, _ = run_a
    for name in (LAST, BEST):
        path = os.path.join(config.out, name)
        arrays, meta = read_checkpoint(path)
        net, meta2 = load_checkpoint(path, preset="demo", classes=meta["classes"])
        assert meta2 == meta and meta["preset"] == "demo"
        assert tuple(meta["classes"]) == ("circle", "square", "triangle", "star", "cross")
        assert tuple(net.classes) == tuple(meta["classes"])
        params = net._collect_params_with_prefix()
        assert {f"model:{k}" for k in params} == {k for k in arrays if k.startswith("model:")}
        for key, param in params.items():
            np.testing.assert_array_equal(param.data().asnumpy(), arrays[f"model:{key}"].asnumpy())


def test_checkpoint_of_another_preset_or_classes_names_both(run_a):
    path = os.path.join(run_a[0].out, LAST)
    with pytest.raises(ValueError, match=r"preset 'demo', not 'ssd300_vgg16'"):
        load_checkpoint(path, preset="ssd300_vgg16")
    with pytest.raises(ValueError) as err:
        load_checkpoint(path, classes=("cat", "dog"))
    message = str(err.value)
    assert "'circle'" in message and "'cat', 'dog'" in message and path in message


def test_not_a_checkpoint_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        read_checkpoint(str(tmp_path / "missing.params"))
    other = str(tmp_path / "plain.params")
    mx.nd.save(other, {"weight": mx.nd.ones((2,))})
    with pytest.raises(ValueError, match="not a gluon-ssd checkpoint"):
        read_checkpoint(other)


# ----------------------------------------------------------------------------- divergence

def _poison_loss(monkeypatch):
    """From the second epoch on, the loss is NaN (the first epoch trains normally)."""
    calls = []
    real = SSDLoss.__call__

    def nan_after_first_epoch(self, *args, **kwargs):
        parts = real(self, *args, **kwargs)
        calls.append(1)
        if len(calls) > BATCHES:
            parts = dataclasses.replace(parts, total=parts.total * float("nan"))
        return parts

    monkeypatch.setattr(SSDLoss, "__call__", nan_after_first_epoch)


def _infinite_learning_rate(monkeypatch):
    """From the second epoch on, the learning rate is inf: the weights blow up."""
    real = train_module.learning_rate

    def lr(spec, base, epoch, total):
        return float("inf") if epoch >= 1 else real(spec, base, epoch, total)

    monkeypatch.setattr(train_module, "learning_rate", lr)


@pytest.mark.parametrize("poison", [_poison_loss, _infinite_learning_rate],
                         ids=["nan-loss", "inf-learning-rate"])
def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, poison):
    poison(monkeypatch)
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged) as err:
        train(tiny(out, epochs=3, eval_every=1))
    message = str(err.value)
    assert re.search(r"loss became -?(nan|inf) at epoch 2, iteration \d+", message), message
    assert os.path.join(str(out), LAST) in message
    for name in (LAST, BEST):  # both from epoch 1 (index 0), complete and finite
        path = str(out / name)
        arrays, meta = read_checkpoint(path)
        assert meta["epoch"] == 0 and meta["iteration"] == BATCHES and len(meta["history"]) == 1
        assert all(np.isfinite(a.asnumpy()).all() for a in arrays.values())
        net, _ = load_checkpoint(path, preset="demo")
        cls_preds, box_preds, _ = net(mx.nd.zeros((1, 3, 64, 64)))
        assert np.isfinite(cls_preds.asnumpy()).all() and np.isfinite(box_preds.asnumpy()).all()
    assert not [n for n in os.listdir(out) if n.startswith(".tmp-")]  # no half-written files
    with open(out / "log.json") as f:
        assert len(json.load(f)) == 1


# ----------------------------------------------------------------------------- dataset folders

def _voc_folder(root, names, with_images=True):
    """A VOC-format folder: one 96x128 JPEG + XML per entry of ``names`` (own class names)."""
    os.makedirs(root / "Annotations")
    os.makedirs(root / "JPEGImages")
    rng = np.random.default_rng(0)
    for i, name in enumerate(names):
        if with_images:
            image = rng.integers(0, 60, (96, 128, 3), dtype=np.uint8)
            x1, y1 = 10 + 8 * i, 12 + 4 * i
            cv2.rectangle(image, (x1, y1), (x1 + 50, y1 + 40), (250, 200, 30), -1)
            assert cv2.imwrite(str(root / "JPEGImages" / f"im{i}.jpg"), image)
        (root / "Annotations" / f"im{i}.xml").write_text(
            "<annotation><size><width>128</width><height>96</height><depth>3</depth></size>"
            f"<object><name>{name}</name><difficult>0</difficult><bndbox>"
            f"<xmin>{11 + 8 * i}</xmin><ymin>{13 + 4 * i}</ymin>"
            f"<xmax>{61 + 8 * i}</xmax><ymax>{53 + 4 * i}</ymax></bndbox></object></annotation>")
    return root


def test_empty_dataset_folders_are_value_errors_naming_them(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=f"no dataset found in folder {empty}"):
        train(tiny(tmp_path / "out", data=str(empty), epochs=1))
    voc = _voc_folder(tmp_path / "voc_empty", [])  # Annotations/ and JPEGImages/, both empty
    with pytest.raises(ValueError, match=f"{voc} has no Annotations"):
        train(tiny(tmp_path / "out", data=str(voc), epochs=1))
    with pytest.raises(ValueError, match="neither a dataset name"):
        train(tiny(tmp_path / "out", data=str(tmp_path / "nowhere"), epochs=1))
    assert not (tmp_path / "out" / LAST).exists()


def test_voc_folder_without_images_is_a_value_error_naming_it(tmp_path):
    voc = _voc_folder(tmp_path / "no_images", ["kiwi", "apple", "kiwi"], with_images=False)
    with pytest.raises(ValueError, match=str(voc)):
        train(tiny(tmp_path / "out", data=str(voc), epochs=1, batch_size=1))


def test_training_on_a_voc_format_folder_uses_its_class_names(tmp_path):
    # 11 images: the derived split puts the first id in val (every 10th), 10 in train
    names = ["kiwi", "apple", "zebra", "apple", "kiwi", "zebra", "kiwi", "apple", "kiwi", "zebra",
             "apple"]
    voc = _voc_folder(tmp_path / "mydata", names)
    out = tmp_path / "out"
    result = train(tiny(out, data=str(voc), epochs=1, batch_size=4))
    assert len(result.history) == 1 and result.history[0].iteration == 2  # 10 // 4 batches
    assert result.last_map is not None and 0 <= result.last_map <= 1
    net, meta = load_checkpoint(str(out / LAST), classes=("apple", "kiwi", "zebra"))
    assert meta["classes"] == ["apple", "kiwi", "zebra"] and tuple(net.classes) == tuple(
        meta["classes"])
    assert write_run_pictures(str(out)) == [str(out / "curve.png"), str(out / "detections.png")]
    assert (out / "detections.png").exists()

    # resuming it on other data names both
    with pytest.raises(ValueError, match=rf"--data 'synthetic' \(the run's: '{voc}'\)"):
        train(tiny(out, epochs=2, resume=True))


# ----------------------------------------------------------------- a run's folder is safe

def _bytes(folder):
    return {name: (folder / name).read_bytes() for name in sorted(os.listdir(folder))}


def test_a_new_run_refuses_a_folder_holding_a_run_and_overwrite_replaces_it(run_a, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(run_a[0].out, out)
    (out / "notes.txt").write_text("mine")
    before = _bytes(out)
    with pytest.raises(ValueError) as err:
        train(tiny(out, epochs=1))
    message = str(err.value)
    assert f"run folder {out} already holds a run" in message, message
    assert "--resume" in message and "--overwrite" in message
    assert _bytes(out) == before  # checkpoint-best/last, logs and config byte-identical

    result = train(tiny(out, epochs=1, overwrite=True))
    assert len(result.history) == 1
    _, meta = read_checkpoint(str(out / LAST))
    assert meta["epoch"] == 0 and len(meta["history"]) == 1  # a new run, not the old one's
    with open(out / "config.json") as f:
        assert json.load(f)["epochs"] == 1
    assert (out / "notes.txt").read_text() == "mine"  # not a run file: kept
    with pytest.raises(ValueError, match="choose one"):
        train(tiny(out, epochs=2, resume=True, overwrite=True))


def test_resume_without_a_checkpoint_names_the_path_it_looked_for(tmp_path):
    out = tmp_path / "typo"
    with pytest.raises(ValueError, match=re.escape(f"no checkpoint to resume in {out} "
                                                   f"({out / LAST} does not exist)")):
        train(tiny(out, epochs=1, resume=True))
    assert not out.exists()


@pytest.mark.parametrize("change, names", [
    (dict(image_size=96), ["--image-size 96 (the run's: 64)"]),
    (dict(seed=1, batch_size=4), ["--seed 1 (the run's: 0)", "--batch-size 4 (the run's: 8)"]),
    (dict(augment=True, mining=False, train_size=16), [
        "--augment True (the run's: False)", "--mining False (the run's: True)",
        "--train-size 16 (the run's: 32)"]),
    (dict(flip=True, distort=True, zoom_in=1.5), [
        "--flip True (the run's: False)", "--distort True (the run's: False)",
        "--zoom-in 1.5 (the run's: 1.0)"]),
])
def test_resume_refuses_settings_that_change_the_model_or_the_data(run_a, tmp_path, change,
                                                                  names):
    out = tmp_path / "run"
    shutil.copytree(run_a[0].out, out)
    before = _bytes(out)
    with pytest.raises(ValueError) as err:
        train(dataclasses.replace(run_a[0], out=str(out), resume=True, epochs=4, **change))
    message = str(err.value)
    assert message.startswith(f"cannot resume {out / LAST} with other settings"), message
    for name in names:
        assert name in message
    assert _bytes(out) == before


def test_config_json_is_kept_resumes_are_appended_and_no_nan_is_written(tmp_path, monkeypatch):
    monkeypatch.setattr(train_module.Run, "evaluate", lambda self: float("nan"))
    out = tmp_path / "run"
    first = tiny(out, epochs=1)
    train(first)
    train(dataclasses.replace(first, epochs=2, resume=True, eval_every=1))
    train(dataclasses.replace(first, epochs=3, resume=True))

    def strict(text):
        def refuse(constant):
            raise AssertionError(f"non-standard JSON constant {constant}")
        return json.loads(text, parse_constant=refuse)

    assert strict((out / "config.json").read_text()) == dataclasses.asdict(first)
    lines = (out / "resumes.jsonl").read_text().splitlines()
    assert [strict(line)["epoch"] for line in lines] == [2, 3]
    assert [strict(line)["config"]["epochs"] for line in lines] == [2, 3]
    rows = strict((out / "log.json").read_text())
    assert [r["val_map"] for r in rows] == [None, None, None]  # NaN -> null
    arrays = mx.nd.load(str(out / LAST))
    strict(arrays["meta"].asnumpy().tobytes().decode())


def _coco_folder(root, val_categories):
    """A COCO-format folder, 8 train and 2 val 64x64 images, one box each; the val file lists
    ``val_categories``."""
    for split, count, categories in (("train2017", 8, [{"id": 1, "name": "cat"},
                                                       {"id": 2, "name": "dog"}]),
                                     ("val2017", 2, val_categories)):
        os.makedirs(root / split)
        images = [{"id": i, "file_name": f"{i}.jpg", "width": 64, "height": 64}
                  for i in range(count)]
        for entry in images:
            assert cv2.imwrite(str(root / split / entry["file_name"]),
                               np.full((64, 64, 3), 90, np.uint8))
        annotations = [{"id": i, "image_id": i, "category_id": 1 + i % 2,
                        "bbox": [8, 8, 30, 30], "iscrowd": 0} for i in range(count)]
        os.makedirs(root / "annotations", exist_ok=True)
        with open(root / "annotations" / f"instances_{split}.json", "w") as f:
            json.dump({"images": images, "annotations": annotations,
                       "categories": categories}, f)
    return root


def test_training_refuses_a_validation_split_with_other_classes(tmp_path):
    swapped = _coco_folder(tmp_path / "coco", [{"id": 1, "name": "dog"},
                                               {"id": 2, "name": "cat"}])
    with pytest.raises(ValueError) as err:
        train(tiny(tmp_path / "out", data=str(swapped), epochs=1, batch_size=4))
    assert str(err.value) == (
        f"the training split of {str(swapped)!r} has 2 classes ['cat', 'dog'], but its "
        "validation split has 2 classes ['dog', 'cat'] (the same names in another order)")
    assert not (tmp_path / "out").exists()


def test_truncated_images_stop_training_named_or_are_skipped_and_counted(tmp_path):
    voc = _voc_folder(tmp_path / "voc", ["kiwi", "apple"] * 5 + ["kiwi"])
    bad = voc / "JPEGImages" / "im3.jpg"  # in the training split
    bad.write_bytes(bad.read_bytes()[:len(bad.read_bytes()) * 2 // 5])
    with pytest.raises(BadImageError, match=f"{bad}: truncated JPEG"):
        train(tiny(tmp_path / "out", data=str(voc), epochs=1, batch_size=3))
    result = train(tiny(tmp_path / "skipping", data=str(voc), epochs=1, batch_size=3,
                        skip_bad=True))
    assert result.unreadable == [str(bad)]


# ----------------------------------------------------------------------------- the schedule

def test_warmup_rises_linearly_to_the_base_rate():
    spec = TrainSpec(warmup_epochs=2.0, schedule="cosine")
    epochs = np.linspace(0, 1.99, 12)
    rates = np.array([learning_rate(spec, 0.5, e, 10) for e in epochs])
    np.testing.assert_allclose(np.diff(rates), np.diff(rates)[0], rtol=1e-9)  # a straight line
    assert 0 < rates[0] < 0.5 * 1e-2 and rates[-1] == pytest.approx(0.5, rel=1e-2)
    assert learning_rate(spec, 0.5, 2.0, 10) == pytest.approx(0.5)  # warm-up ends at the base
    assert learning_rate(spec, 0.5, 1.0, 10) == pytest.approx(0.25, rel=1e-2)  # halfway


def test_cosine_decays_to_zero_at_the_end():
    spec = TrainSpec(warmup_epochs=1.0, schedule="cosine")
    rates = [learning_rate(spec, 2e-3, e, 11) for e in np.linspace(1, 11, 41)]
    assert rates[0] == pytest.approx(2e-3)
    assert all(b < a for a, b in zip(rates, rates[1:]))  # strictly decreasing
    assert rates[20] == pytest.approx(1e-3)  # halfway: half the base rate
    assert rates[-1] == pytest.approx(0, abs=1e-12)
    assert learning_rate(spec, 2e-3, 10.999, 11) < 1e-8  # the last iteration: ~0
    assert learning_rate(spec, 2e-3, 12, 11) == pytest.approx(0, abs=1e-12)  # never negative


def test_step_schedule_decays_at_the_steps():
    spec = TrainSpec(schedule="step", lr_steps=(3, 6), lr_factor=0.1)
    rates = [learning_rate(spec, 1.0, e, 8) for e in (0, 2.99, 3, 5.5, 6, 7.9)]
    np.testing.assert_allclose(rates, [1, 1, 0.1, 0.1, 0.01, 0.01])
    ssd300 = get_preset("ssd300").train  # the paper's VOC schedule: x0.1 at 160 and 200 epochs
    assert learning_rate(ssd300, 1e-3, 159, 240) == pytest.approx(1e-3)
    assert learning_rate(ssd300, 1e-3, 160, 240) == pytest.approx(1e-4)
    assert learning_rate(ssd300, 1e-3, 239, 240) == pytest.approx(1e-5)


def test_unknown_schedule_is_an_error():
    with pytest.raises(ValueError, match="unknown schedule 'linear'"):
        learning_rate(TrainSpec(schedule="linear"), 1.0, 1, 10)


def test_demo_preset_warms_up_then_follows_the_cosine():
    spec = get_preset("demo").train
    assert spec.schedule == "cosine" and spec.warmup_epochs > 0
    base = spec.learning_rate
    assert learning_rate(spec, base, 0, spec.epochs) < 0.01 * base
    assert learning_rate(spec, base, spec.warmup_epochs, spec.epochs) == pytest.approx(base)
    assert learning_rate(spec, base, spec.epochs, spec.epochs) == pytest.approx(0, abs=1e-12)
