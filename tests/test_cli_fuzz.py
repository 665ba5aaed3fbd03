"""Fuzzing the numeric flags of every command: NaN, infinities, negative, zero, huge values and
non-numbers all end in exit status 2 and one line naming the flag, before any work starts."""
import subprocess
import sys

import pytest

from gluon_ssd import cli
from gluon_ssd.cli import main

# What each command needs besides the flag under test (the files need not exist: the flag is
# refused while parsing, before any is opened).
BASE = {
    "train": ["train", "--out", "run"],
    "demo": ["demo", "--out", "run"],
    "launch": ["launch", "-n", "1"],  # the job command goes last, after --
    "anchors": ["anchors", "--sizes", "0.2"],
    "detect": ["detect", "model.params", "photo.jpg", "-o", "out"],
    "export": ["export", "model.params", "-o", "out/x"],
    "evaluate": ["evaluate", "model.params"],
    "quantize": ["quantize", "model.params", "--calib-data", "synthetic", "-o", "out/q"],
    "convert": ["convert", "--from-gluoncv", "in.params", "-o", "out.params"],
}
ALWAYS_BAD = ["nan", "NaN", "inf", "-inf", "+inf", "1e308", "1e999", "-1e308",
              "99999999999999999999", "abc", "", "0x10", "1,5", "--"]
# flag -> (commands, values outside its range besides ALWAYS_BAD)
FLAGS = {
    "--epochs": (("train", "demo"), ["0", "-1", "1.5", "100001"]),
    "--batch-size": (("train", "demo", "detect", "evaluate", "quantize", "export"),
                     ["0", "-8", "2.0", "1025"]),
    "--batch": (("export",), ["0", "-1", "2.0", "1025", "Dynamic"]),
    "--image-size": (("train", "demo"), ["0", "-1", "7", "31", "2049", "100000", "64.5"]),
    "--detect-size": (("train",), ["0", "-1", "7", "31", "2049", "100000", "64.5"]),
    "--train-size": (("train", "demo"), ["0", "-1"]),
    "--val-size": (("train", "demo", "evaluate"), ["0", "-1"]),
    "--lr": (("train",), ["0", "-1", "-0.0", "10.5", "1e-400"]),
    "--eval-every": (("train",), ["0", "-2"]),
    "--cache-mb": (("train",), ["-1", "-0.5", "1e12"]),
    "--seed": (("train", "evaluate", "quantize", "export"), ["-1", "4294967296", "0.5"]),
    "--workers": (("train", "evaluate"), ["-1", "257", "1.0"]),
    "--threshold": (("detect", "export"), ["-0.1", "1.01", "2"]),
    "--nms": (("detect", "export"), ["-0.1", "1.5"]),
    "--topk": (("detect", "export"), ["0", "-1", "100001"]),
    "--max-detections": (("detect", "export"), ["0", "-5"]),
    "--calib-batches": (("quantize", "export"), ["0", "-1"]),
    "--port": (("launch",), ["0", "-1", "65536", "80.5"]),
    "--timeout": (("launch",), ["0", "-1", "-0.0"]),
    "--num-workers": (("launch",), ["0", "-1", "257"]),
    "--num-servers": (("launch",), ["0", "-2"]),
    "--sizes": (("anchors",), ["0", "-0.2", "10.5"]),
    "--ratios": (("anchors",), ["0", "-1", "0.0001", "1001"]),
    "--feature-map": (("anchors",), ["0x4", "4x0", "4097x1", "-1x2", "2by4"]),
}


def _cases():
    for flag, (commands, values) in FLAGS.items():
        for command in commands:
            yield pytest.param(command, flag, values + ALWAYS_BAD, id=f"{command}{flag}")
    for command, flag, two in (("anchors", "--steps", "0.1"), ("anchors", "--offsets", "0.5")):
        yield pytest.param(command, flag, ["-2", "1.01", "1.5", "nan"] if flag == "--offsets"
                           else ["-2", "0", "10.5"], id=f"{command}{flag}")
    for command in ("export", "quantize"):
        yield pytest.param(command, "--image-size", ["7", "0", "2049", "100000", "0x5", "nan"],
                           id=f"{command}--image-size")
    yield pytest.param("anchors", "--image-size", ["0x4", "100000x100000", "4097x2"],
                       id="anchors--image-size")


def _argv(command, flag, value):
    argv = BASE[command] + [f"{flag}={value}"]
    if flag in ("--steps", "--offsets"):  # two values: the bad one first, a good one second
        argv = BASE[command] + [flag, value, "0.5"] if value else argv
    return argv + (["--", "true"] if command == "launch" else [])


@pytest.fixture
def no_work(monkeypatch):
    """Every command's function replaced by one that fails the test: a refused flag must never
    reach it."""
    def reached(args):
        raise AssertionError(f"{args.command} ran with a bad flag")

    for name, (help_text, add, _) in list(cli.COMMANDS.items()):
        monkeypatch.setitem(cli.COMMANDS, name, (help_text, add, reached))


@pytest.mark.parametrize("command, flag, values", list(_cases()))
def test_bad_numbers_are_refused_while_parsing(no_work, tmp_path, monkeypatch, capsys, command,
                                               flag, values):
    monkeypatch.chdir(tmp_path)
    for value in values:
        status = main(_argv(command, flag, value))
        out, err = capsys.readouterr()
        assert status == 2, (flag, value, out, err)
        assert out == "" and "Traceback" not in err
        assert err.count("\n") == 1 and err.startswith(f"gluon-ssd {command}: error: "), err
        name = "--num-workers" if flag == "--num-workers" else flag
        assert name in err or (flag == "--num-workers" and "-n" in err), (flag, value, err)


def test_every_command_with_numeric_flags_is_fuzzed():
    fuzzed = {c for commands, _ in FLAGS.values() for c in commands} | {"export", "quantize"}
    assert fuzzed == set(cli.COMMANDS) - {"convert"}  # convert has no numeric flag


# A handful through the console script (tests/test_bad_inputs.py runs every command's there).
@pytest.mark.parametrize("command, flag, value", [
    ("train", "--cache-mb", "inf"), ("launch", "--timeout", "-inf"), ("anchors", "--ratios", "nan"),
    ("quantize", "--image-size", "1e308"),
])
def test_through_the_console_script(tmp_path, command, flag, value):
    proc = subprocess.run([sys.executable, "-m", "gluon_ssd.cli", *_argv(command, flag, value)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == "", proc
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert flag in proc.stderr
