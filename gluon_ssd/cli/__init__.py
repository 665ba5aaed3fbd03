"""The ``gluon-ssd`` command line: one subcommand per stage, a thin argparse layer over the package.

Modules: :mod:`.options` (argument types: every number is checked finite and in range at parse
time, the limits are stated in the messages), :mod:`.anchors_command` (``anchors``),
:mod:`.training` (``train``, ``demo``, ``launch``) and :mod:`.models` (``detect``, ``export``,
``evaluate``, ``convert``, ``quantize``).

Adding a subcommand ``x``: write ``add_x(parser)`` (declares its arguments) and
``cmd_x(args) -> int`` (does the work, returns the exit status), and add a row to
:data:`COMMANDS`. Bad input is reported as ONE line on stderr with exit status 2: argparse does it
for malformed arguments (argument types raise ``argparse.ArgumentTypeError``), and :func:`main`
does it for the errors of bad input a command raises (:func:`expected_errors`: ``ValueError``
with a message naming the argument or the file, ``OSError``, a diverged training run). Any other
exception is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable, Dict, Optional, Sequence, Tuple

from .anchors_command import add_anchors, cmd_anchors
from .models import (add_convert, add_detect, add_evaluate, add_export, add_quantize, cmd_convert,
                     cmd_detect, cmd_evaluate, cmd_export, cmd_quantize)
from .training import add_demo, add_launch, add_train, cmd_demo, cmd_launch, cmd_train


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``prog: error: message`` on stderr, exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")

    def _get_values(self, action: argparse.Action, arg_strings):
        # argparse drops a "--" given as an option's value (--epochs=--) and would hand the
        # command an empty list that no argument type has seen.
        if action.option_strings and arg_strings == ["--"]:
            raise argparse.ArgumentError(action, "expected a value, got '--'")
        return super()._get_values(action, arg_strings)


Command = Tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]
# name -> (help, add its arguments, run it)
COMMANDS: Dict[str, Command] = {
    "anchors": ("print, plot and export default boxes", add_anchors, cmd_anchors),
    "train": ("train an SSD preset on a dataset", add_train, cmd_train),
    "launch": ("run a command (gluon-ssd train --kvstore dist_sync ...) as a parameter-server "
               "job: scheduler, servers, workers", add_launch, cmd_launch),
    "demo": ("train the demo preset on SyntheticShapes and plot anchors into --out",
             add_demo, cmd_demo),
    "detect": ("detect objects in images: annotated PNGs and one JSON", add_detect, cmd_detect),
    "export": ("export a checkpoint as symbol JSON + params + preprocessing metadata, or as "
               "one ONNX file (--format onnx)", add_export, cmd_export),
    "evaluate": ("VOC07/VOC2010 mAP and COCO AP of a model on a dataset, PR curves",
                 add_evaluate, cmd_evaluate),
    "convert": ("convert a GluonCV SSD parameter file into a gluon-ssd checkpoint",
                add_convert, cmd_convert),
    "quantize": ("quantize a checkpoint to INT8 (oneDNN) and export it like `export`",
                 add_quantize, cmd_quantize),
}


def build_parser() -> argparse.ArgumentParser:
    """The ``gluon-ssd`` parser with one subparser per entry of :data:`COMMANDS`."""
    parser = _Parser(prog="gluon-ssd", description="SSD object detection in MXNet Gluon.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (help_text, add_arguments, run) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(p)
        p.set_defaults(run=run)
    return parser


def expected_errors() -> Tuple[type, ...]:
    """The exceptions :func:`main` reports as one line: bad input (``ValueError``: a wrong value
    or a corrupt file, named), a file that cannot be opened or written (``OSError``), and a
    training run whose loss diverged (``TrainingDiverged``: its message names the checkpoint
    kept). Anything else is a bug and keeps its traceback."""
    # TrainingDiverged can only come from a loaded gluon_ssd.train: looking it up there, rather
    # than importing it, keeps the training stack out of the other commands.
    train = sys.modules.get("gluon_ssd.train")
    return (ValueError, OSError) + ((train.TrainingDiverged,) if train else ())


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``gluon-ssd`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, or a usage error already printed as one line
        return int(exit_.code or 0)
    try:
        return args.run(args)
    except expected_errors() as err:
        message = " ".join(str(err).split()) or type(err).__name__  # one line, always
        print(f"gluon-ssd {args.command}: error: {message}", file=sys.stderr)
        return 2


__all__ = ["COMMANDS", "build_parser", "expected_errors", "main"]
