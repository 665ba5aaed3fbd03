"""``gluon-ssd anchors`` and ``gluon-ssd demo``: outputs, and one-line errors with exit status 2."""
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gluon_ssd.anchors import feature_map_anchors, preset_anchors
from gluon_ssd.cli import COMMANDS, main
from gluon_ssd.presets import SSD300_ANCHORS, SSD512_ANCHORS


def run(capsys, *argv):
    """``main(argv)`` -> (exit status, stdout, stderr)."""
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_seed_example_writes_32_anchors_and_a_png(tmp_path, capsys):
    status, out, _ = run(capsys, "anchors", "--feature-map", "2x4", "--sizes", 0.2, 0.5,
                         "--ratios", 1, 4, 0.25, "--json", tmp_path / "a.json",
                         "-o", tmp_path / "a.png")
    assert status == 0
    doc = json.loads((tmp_path / "a.json").read_text())
    assert len(doc["anchors"]) == doc["num_anchors"] == 32
    expected = feature_map_anchors((2, 4), [0.2, 0.5], [1, 4, 0.25])
    np.testing.assert_allclose(doc["anchors"], expected, atol=1e-6)
    assert doc["layers"][0]["feature_map"] == [2, 4] and doc["layers"][0]["anchors_per_cell"] == 4
    with Image.open(tmp_path / "a.png") as img:
        assert img.format == "PNG"
    table = out.splitlines()
    assert table[0].split() == ["#", "size", "ratio", "width", "height", "width_px", "height_px"]
    assert [row.split()[:3] for row in table[1:5]] == [["0", "0.2", "1"], ["1", "0.5", "1"],
                                                      ["2", "0.2", "4"], ["3", "0.2", "0.25"]]
    assert "2x4 cells x 4 anchors = 32 anchors" in out


@pytest.mark.parametrize("name, spec, total", [("ssd300", SSD300_ANCHORS, 8732),
                                               ("ssd512", SSD512_ANCHORS, 24564)])
def test_preset_json_has_the_papers_anchors(tmp_path, capsys, name, spec, total):
    status, out, _ = run(capsys, "anchors", "--preset", name, "--json", tmp_path / "p.json")
    assert status == 0 and f"total: {total} anchors" in out
    assert out.splitlines()[0].split()[:2] == ["#", "layer"]
    doc = json.loads((tmp_path / "p.json").read_text())
    anchors = np.array(doc["anchors"])
    assert anchors.shape == (total, 4) and doc["image_size"] == [spec.image_size] * 2
    np.testing.assert_allclose(anchors, preset_anchors(spec), atol=1e-6)
    side, step, size = spec.image_size, spec.steps[0], spec.sizes[0]
    first = [step / 2 - size / 2] * 2 + [step / 2 + size / 2] * 2  # cell (0, 0), the s_1 square
    np.testing.assert_allclose(anchors[0] * side, first, atol=1e-3)
    np.testing.assert_allclose(anchors[1, 2] - anchors[1, 0],
                               math.sqrt(spec.sizes[0] * spec.sizes[1]) / side, atol=1e-5)
    assert [layer["num_anchors"] for layer in doc["layers"]] == [
        f * f * (len(r) + 1) for f, r in zip(spec.feature_maps, spec.ratios)]


def test_preset_plot_on_an_image_at_a_pixel(tmp_path, capsys):
    Image.fromarray(np.full((120, 160, 3), 200, np.uint8)).save(tmp_path / "in.jpg")
    status, _, _ = run(capsys, "anchors", "--preset", "demo", "--image", tmp_path / "in.jpg",
                       "--at", "10,20", "-o", tmp_path / "p.png")
    assert status == 0 and (tmp_path / "p.png").stat().st_size > 0


def test_non_square_canvas_table_in_pixels(capsys):
    status, out, _ = run(capsys, "anchors", "--sizes", 0.5, "--ratios", 1, 4,
                         "--image-size", "200x400", "--feature-map", "2x4")
    assert status == 0
    rows = [line.split() for line in out.splitlines()[1:3]]
    assert [r[-2:] for r in rows] == [["100.0", "100.0"], ["200.0", "50.0"]]  # square r=1 in pixels


@pytest.fixture
def corrupt_image(tmp_path):
    path = tmp_path / "corrupt.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n but not really")
    return path


@pytest.mark.parametrize("argv, names", [
    (["--sizes", "0"], ["--sizes", "'0'"]),
    (["--sizes", "-0.5", "0.2"], ["--sizes", "'-0.5'"]),
    (["--sizes", "0.2", "--ratios", "0"], ["--ratios", "'0'"]),
    (["--sizes", "0.2", "--ratios", "-1"], ["--ratios", "'-1'"]),
    (["--sizes"], ["--sizes", "expected at least one"]),
    (["--sizes", "0.2", "--ratios"], ["--ratios", "expected at least one"]),
    (["--feature-map", "0x4", "--sizes", "0.2"], ["--feature-map", "'0x4'"]),
    (["--feature-map", "2by4", "--sizes", "0.2"], ["--feature-map", "'2by4'"]),
    (["--sizes", "0.2", "--image", "missing.png"], ["--image", "missing.png"]),
    (["--sizes", "0.2", "--image", "CORRUPT"], ["--image", "corrupt.png"]),
    (["--sizes", "0.2", "--steps", "0", "0.1"], ["--steps", "'0'", "-1 or"]),
    (["--feature-map", "2x4", "--sizes", "0.2", "--at", "2,0"], ["--at", "2,0"]),
    (["--preset", "ssd1000"], ["--preset", "'ssd1000'"]),
    (["--preset", "ssd300", "--sizes", "0.2"], ["--preset", "--sizes"]),
    ([], ["--sizes"]),
])
def test_bad_input_is_one_line_and_exit_2(capsys, corrupt_image, argv, names):
    argv = [str(corrupt_image) if a == "CORRUPT" else a for a in argv]
    status, out, err = run(capsys, "anchors", *argv)
    assert status == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    for name in names:
        assert name in err


def test_console_script_error_has_no_traceback(tmp_path):
    script = Path(sys.executable).with_name("gluon-ssd")
    if not script.exists():
        pytest.skip("console script not installed (pip install -e .)")
    proc = subprocess.run([str(script), "anchors", "--feature-map", "0x4", "--sizes", "0.2"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and proc.stdout == ""


def test_demo_trains_then_writes_the_anchor_plots(tmp_path, monkeypatch, capsys):
    """``demo`` trains the demo preset (minutes at its settings), then plots SSD300's anchors.

    ``demo`` has no options to shrink the data, so the training it asks for is shrunk here: the
    TrainConfig it builds is checked, then run at 64x64 on 16 + 8 images."""
    import dataclasses

    import gluon_ssd.demo

    real_train, configs = gluon_ssd.demo.train, []

    def tiny_train(cfg):
        configs.append(cfg)
        return real_train(dataclasses.replace(cfg, image_size=64, train_size=16, val_size=8,
                                              batch_size=8))

    monkeypatch.setattr(gluon_ssd.demo, "train", tiny_train)
    status, out, _ = run(capsys, "demo", "--out", tmp_path / "demo", "--epochs", 1, "--quiet")
    assert status == 0 and "total: 8732 anchors" in out and "coverage" in out
    assert "demo: VOC07 mAP" in out
    (cfg,) = configs
    assert (cfg.preset, cfg.data, cfg.epochs, cfg.progress) == ("demo", "synthetic", 1, False)
    assert cfg.out == str(tmp_path / "demo")
    assert sorted(p.name for p in (tmp_path / "demo").iterdir()) == [
        "anchors_at_pixel.png", "anchors_per_layer.png", "checkpoint-best.params",
        "checkpoint-last.params", "config.json", "coverage.png", "curve.png", "detections.png",
        "log.csv", "log.json"]


def test_demo_bad_epochs_is_one_line_and_exit_2(tmp_path, capsys):
    status, out, err = run(capsys, "demo", "--out", tmp_path / "demo", "--epochs", 0)
    assert status == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "--epochs" in err and not (tmp_path / "demo").exists()


def test_commands_are_registered_with_help(capsys):
    assert {"anchors", "demo"} <= set(COMMANDS)
    assert main(["--help"]) == 0
    assert "anchors" in capsys.readouterr().out
