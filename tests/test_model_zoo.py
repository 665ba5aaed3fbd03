"""The shipped demo weights (issue 16): loadable by name everywhere, VOC07 >= 0.90 on the split
their recorded config rebuilds, and regenerable by ``tools/make_demo_weights.py``."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from gluon_ssd import get_model
from gluon_ssd.checkpoint import read_checkpoint
from gluon_ssd.cli import main
from gluon_ssd.data.datasets import DataConfig, build_split
from gluon_ssd.demo import demo_config
from gluon_ssd.detect import load_detector
from gluon_ssd.evaluation.run import evaluate, evaluation_loader
from gluon_ssd.model_zoo import PRETRAINED, pretrained_path, resolve_model
from gluon_ssd.presets import get_preset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_demo_weights_ship_small_and_load_by_name(tmp_path, monkeypatch):
    path = pretrained_path("demo")
    assert os.path.getsize(path) < 3 * 2 ** 20
    net = get_model("demo", pretrained=True)
    assert net.classes == ("circle", "square", "triangle", "star", "cross")
    assert get_model("demo", ["star", "kite"], pretrained=True).classes == ("star", "kite")
    with pytest.raises(ValueError, match="no pretrained model 'ssd300_vgg16'"):
        get_model("ssd300_vgg16", pretrained=True)
    with pytest.raises(ValueError, match="needs classes"):
        get_model("demo")
    # a file of that name wins over the shipped model
    monkeypatch.chdir(tmp_path)
    assert resolve_model("demo") == path
    (tmp_path / "demo").write_text("mine")
    assert resolve_model("demo") == "demo"
    assert set(PRETRAINED) == {"demo"}


def test_the_demo_weights_score_090_on_the_split_their_config_rebuilds():
    arrays, meta = read_checkpoint(pretrained_path("demo"))
    # the recorded config is the make demo recipe, so its validation split is the demo's
    recorded = {k: v for k, v in meta["config"].items() if k not in ("out", "progress")}
    expected = {k: v for k, v in demo_config().__dict__.items() if k not in ("out", "progress")}
    assert {k: recorded.get(k) for k in expected} == expected
    data = DataConfig.from_dict(meta["config"], ignore_unknown=True)
    size = (meta["image_size"],) * 2
    val = build_split(data, "val", size)
    model = load_detector("demo")
    spec = get_preset("demo").model
    result = evaluate(model.net, evaluation_loader(val, size, spec.mean, spec.std, 50).epoch(0),
                      model.classes, metrics=("voc07",))
    assert result.voc["voc07"].map >= 0.90
    np.testing.assert_allclose(result.voc["voc07"].map, meta["best_map"], atol=1e-6)


def test_detect_and_evaluate_take_the_shipped_model_by_name(tmp_path, capsys):
    from gluon_ssd.data.synthetic import SyntheticShapes
    import cv2

    images = tmp_path / "images"
    images.mkdir()
    shapes = SyntheticShapes(3, (192, 256), "val", seed=7)
    for i in range(3):
        cv2.imwrite(str(images / f"{i}.png"), shapes.render(i)[0][:, :, ::-1])
    out = tmp_path / "found"
    assert main(["detect", "demo", str(images), "-o", str(out)]) == 0
    with open(out / "detections.json") as f:
        found = json.load(f)
    assert len(found["images"]) == 3
    assert {d["image_id"] for d in found["detections"]} == {0, 1, 2}
    assert main(["evaluate", "demo", "--val-size", "20", "--metric", "voc07", "--quiet"]) == 0
    assert "VOC07 mAP" in capsys.readouterr().out
    assert main(["export", "demo", "-o", str(tmp_path / "export" / "demo")]) == 0


def test_the_regeneration_script_refuses_an_existing_output(tmp_path):
    target = tmp_path / "demo.params"
    target.write_text("keep")
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "make_demo_weights.py"),
                           "-o", str(target)], capture_output=True, text=True)
    assert proc.returncode == 2 and "exists" in proc.stderr
    assert target.read_text() == "keep"
