"""``gluon-ssd train``: a tiny run through the command line; one-line errors with exit status 2."""
import subprocess
import sys
from pathlib import Path

import pytest

import gluon_ssd.train  # noqa: F401  (imported here, so import-time warnings stay out of capsys)
from gluon_ssd.checkpoint import read_checkpoint
from gluon_ssd.cli import COMMANDS, main

TINY = ["--image-size", "64", "--train-size", "16", "--val-size", "8", "--batch-size", "8",
        "--quiet"]


def run(capsys, *argv):
    """``main(argv)`` -> (exit status, stdout, stderr)."""
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_train_writes_the_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    status, stdout, _ = run(capsys, "train", "--out", out, "--epochs", 1, "--seed", 3, *TINY)
    assert status == 0
    assert "best VOC07 mAP" in stdout and str(out) in stdout
    arrays, meta = read_checkpoint(str(out / "checkpoint-last.params"))
    assert meta["preset"] == "demo" and meta["epoch"] == 0 and meta["image_size"] == 64
    assert meta["iteration"] == 2  # 16 images / batch 8
    assert meta["config"]["seed"] == 3 and meta["config"]["progress"] is False
    assert any(k.startswith("optimizer:") for k in arrays)
    for name in ("checkpoint-best.params", "log.csv", "log.json", "config.json", "curve.png",
                 "detections.png"):
        assert (out / name).is_file(), name


def test_train_ablation_flags_and_resume_reach_the_config(tmp_path, capsys):
    out = tmp_path / "run"
    assert run(capsys, "train", "--out", out, "--epochs", 1, "--no-mining", "--no-augment",
               *TINY)[0] == 0
    status, _, _ = run(capsys, "train", "--out", out, "--epochs", 2, "--resume", "--no-mining",
                       "--no-augment", *TINY)
    assert status == 0
    _, meta = read_checkpoint(str(out / "checkpoint-last.params"))
    assert meta["epoch"] == 1 and len(meta["history"]) == 2  # continued, not restarted
    assert meta["config"]["mining"] is False and meta["config"]["augment"] is False
    assert meta["config"]["resume"] is True


@pytest.mark.parametrize("argv, names", [
    (["--epochs", "0"], ["--epochs", "0"]),
    (["--epochs", "-3"], ["--epochs", "-3"]),
    (["--epochs", "two"], ["--epochs", "'two'"]),
    (["--batch-size", "0"], ["--batch-size", "0"]),
    (["--image-size", "0"], ["--image-size", "0"]),
    (["--train-size", "0"], ["--train-size", "0"]),
    (["--eval-every", "0"], ["--eval-every", "0"]),
    (["--data", "no-such-dataset"], ["'no-such-dataset'", "neither a dataset name"]),
    (["--data", "EMPTY"], ["no dataset found in folder", "empty"]),
    (["--preset", "ssd1000"], ["unknown preset", "'ssd1000'"]),
    (["--bogus"], ["unrecognized arguments", "--bogus"]),
])
def test_bad_arguments_are_one_line_and_exit_2(tmp_path, monkeypatch, capsys, argv, names):
    monkeypatch.chdir(tmp_path)  # relative --data names are looked up here
    (tmp_path / "empty").mkdir()
    argv = [str(tmp_path / "empty") if a == "EMPTY" else a for a in argv]
    status, out, err = run(capsys, "train", "--out", tmp_path / "run", "--epochs", 1, *TINY[:-1],
                           *argv)
    assert status == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("gluon-ssd") and "error: " in err
    for name in names:
        assert name in err
    assert not (tmp_path / "run" / "checkpoint-last.params").exists()


def test_console_script_bad_epochs_has_no_traceback(tmp_path):
    script = Path(sys.executable).with_name("gluon-ssd")
    if not script.exists():
        pytest.skip("console script not installed (pip install -e .)")
    proc = subprocess.run([str(script), "train", "--epochs", "0", "--out", str(tmp_path / "r")],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == ("gluon-ssd train: error: argument --epochs: must be an integer in "
                           "1..100000, got '0'\n")


def test_train_is_registered_with_help(capsys):
    assert "train" in COMMANDS
    assert main(["train", "--help"]) == 0
    help_text = capsys.readouterr().out
    for option in ("--preset", "--data", "--resume", "--no-mining", "--no-augment", "--epochs"):
        assert option in help_text
