"""The commands that take a trained model: ``detect``, ``export``, ``evaluate``, ``convert`` and
``quantize``."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Dict, Optional

from ..deploy.engines import ENGINES, PRECISIONS
from ..model.head import DECODERS
from ..quantize import CALIB_MODES
from . import options


def _add_engine(p: argparse.ArgumentParser) -> None:
    """``--engine`` and ``--precision``: how an ONNX file (``*.onnx``) runs."""
    p.add_argument("--engine", choices=ENGINES,
                   help="runs an ONNX file (.onnx): onnxruntime (default) or openvino")
    p.add_argument("--precision", choices=PRECISIONS,
                   help="of an ONNX file: fp32, bf16 (openvino, on CPUs with BF16) or int8 (an "
                        "INT8 file); default: the file's")


# ---------------------------------------------------------------------------------------------
# gluon-ssd detect

def add_detect(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", metavar="CHECKPOINT",
                   help="a checkpoint file (.params), an export prefix or an ONNX file (.onnx)")
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER",
                   help="image files and folders of images (.jpg .jpeg .png .bmp)")
    p.add_argument("-o", "--output", required=True, metavar="DIR",
                   help="folder for one annotated PNG per image and detections.json; it must "
                        "hold no input image, and no file is ever overwritten")
    p.add_argument("--threshold", type=options.fraction, default=0.5,
                   help="lowest score kept, drawn and written, in [0, 1] (default 0.5)")
    options.add_decoding(p, DECODERS)
    p.add_argument("--batch-size", type=options.batch_size, default=8,
                   help=f"images per network call, 1..{options.MAX_BATCH_SIZE} (default 8)")
    p.add_argument("--preset", type=options.preset, metavar="NAME",
                   help="stop unless the model is of this preset")
    p.add_argument("--classes", nargs="+", metavar="NAME",
                   help="stop unless the model has exactly these classes, in this order")
    options.add_gpus(p)
    _add_engine(p)
    p.add_argument("--quiet", dest="progress", action="store_false", help="no progress bar")


def cmd_detect(args: argparse.Namespace) -> int:
    """Detect objects in images and folders: an annotated PNG per image and one JSON (COCO
    results layout, boxes in each image's pixels) in --output, all new files. Unreadable images
    are named and counted, truncated JPEGs (detected on what could be decoded) named and
    counted, non-image files in folders counted; exit status 2 when no image could be read."""
    from ..data.io import list_images
    from ..detect import load_detector
    from ..report import detection_outputs, write_detections

    paths, skipped = list_images(args.inputs)
    detection_outputs(paths, args.output)  # refuses before the model is loaded
    detector = load_detector(args.checkpoint, options.decoding(args) or None,
                             preset=args.preset.name if args.preset else None,
                             classes=args.classes, ctx=options.contexts(args),
                             engine=args.engine, precision=args.precision)
    run = write_detections(detector, paths, args.output, args.threshold,
                           batch_size=args.batch_size, progress=args.progress,
                           document={"skipped": skipped})
    for err in run.failed:
        print(f"gluon-ssd detect: skipped: {err}", file=sys.stderr)
    for path in run.truncated:
        print(f"gluon-ssd detect: warning: truncated image {path} (detected on what could be "
              "decoded)", file=sys.stderr)
    counts = (f"{len(run.failed)} unreadable image(s), {len(skipped)} non-image folder "
              f"entries skipped, {len(run.truncated)} truncated image(s)")
    if not run.results:
        raise ValueError(f"no image could be processed ({counts})")
    total = sum(len(r) for r in run.results)
    print(f"{len(run.results)} image(s), {total} detections with score >= {args.threshold:g}; "
          f"{counts}")
    print(f"wrote {len(run.pngs)} annotated PNG(s) and {run.json}")
    return 0


# ---------------------------------------------------------------------------------------------
# gluon-ssd export

def _add_image_size(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--image-size", nargs="+", action=options.ImageSize, metavar="SIZE",
                   help=f"input size {what}: H W, HxW or one side, each "
                        f"{options.MIN_IMAGE_SIDE}..{options.MAX_IMAGE_SIDE} and at least the "
                        "network's smallest input (default: the checkpoint's detection size)")


def add_export(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="a checkpoint file (.params)")
    p.add_argument("-o", "--output", required=True, metavar="PREFIX_OR_FILE",
                   help="mxnet: writes PREFIX-symbol.json, PREFIX-0000.params and "
                        "PREFIX-meta.json; onnx: the file to create, NAME.onnx (never replaced)")
    p.add_argument("--format", choices=("mxnet", "onnx"), default="mxnet",
                   help="mxnet: symbol JSON + params (default); onnx: one ONNX file with the "
                        "anchors, decoding and NMS inside, for ONNX Runtime and OpenVINO")
    _add_image_size(p, "the graph is traced at and detection resizes to")
    p.add_argument("--threshold", type=options.fraction, dest="score_threshold",
                   help="score threshold built into the graph, in [0, 1] (default: the model's, "
                        "0.01)")
    options.add_decoding(p, DECODERS)
    options.add_gpus(p, "trace the graph on (the export itself is device-free)")
    p.add_argument("--batch", type=options.export_batch, metavar="N|dynamic",
                   help="onnx: the batch size the file takes, or dynamic (default)")
    p.add_argument("--precision", choices=("fp32", "int8"),
                   help="onnx: fp32 (default) or int8 (ONNX Runtime's static quantization, QDQ, "
                        "calibrated on --calib-data's training images)")
    _add_calibration(p, required=False)


def _add_calibration(p: argparse.ArgumentParser, required: bool) -> None:
    """The calibration options of ``quantize`` and of ``export --precision int8``."""
    p.add_argument("--calib-data", required=required, metavar="DATA",
                   help="synthetic, voc, coco or a dataset folder (VOC or COCO format): its "
                        "training images calibrate the INT8 ranges")
    p.add_argument("--data-root", metavar="DIR", help="root folder of voc/coco")
    p.add_argument("--calib-batches", type=options.batches, default=10, metavar="N",
                   help=f"calibration batches, 1..{options.MAX_BATCHES} (default 10)")
    p.add_argument("--batch-size", type=options.batch_size, default=8,
                   help=f"images per calibration batch, 1..{options.MAX_BATCH_SIZE} (default 8)")
    p.add_argument("--calib-mode", choices=CALIB_MODES, default="naive",
                   help="naive: min/max of each output; entropy: KL-optimal ranges, slower "
                        "(default: naive)")
    p.add_argument("--seed", type=options.seed, default=0,
                   help="seed of the calibration image order")


def _calibration(args: argparse.Namespace, detector, size):
    """The calibration batches ``(B, 3, H, W)`` of ``--calib-data``'s training split, resized to
    ``size`` and normalised as ``detector`` wants; ``ValueError`` naming ``--calib-data``."""
    from ..quantize import calibration_batches

    try:
        return calibration_batches(args.calib_data, size, detector.mean, detector.std,
                                   args.batch_size, root=args.data_root, seed=args.seed)
    except ValueError as err:
        raise ValueError(f"--calib-data {args.calib_data}: {err}") from None


def _checkpoint_model(args: argparse.Namespace, spec: Optional[Dict[str, object]] = None):
    """``(model, (H, W))``: the model of ``args.checkpoint`` (a checkpoint file, not an export)
    and the input size to export it at (``--image-size``, else its detection size), checked
    against the network's smallest input."""
    from ..detect import load_detector
    from ..model.ssd import check_input_size
    from ..model import SSD, DetectionNet

    size = args.image_size  # (H, W), checked while parsing
    model = load_detector(args.checkpoint, spec, ctx=options.contexts(args))
    if not (isinstance(model.net, DetectionNet) and isinstance(model.net.ssd, SSD)):
        raise ValueError(f"{args.checkpoint} is an export; {args.command} takes a checkpoint file")
    if size is None:
        return model, model.image_size
    check_input_size(model.net.ssd.spec, size, "--image-size")
    return model, size


def cmd_export(args: argparse.Namespace) -> int:
    """Export a checkpoint as symbol JSON + params + metadata (preprocessing, classes, decoding),
    or as one ONNX file (``--format onnx``)."""
    from ..export import export_model

    onnx_only = [flag for flag, value in (("--batch", args.batch), ("--precision", args.precision),
                                          ("--calib-data", args.calib_data)) if value is not None]
    if args.format == "mxnet" and onnx_only:
        raise ValueError(f"{', '.join(onnx_only)}: only with --format onnx")
    overrides = options.decoding(args)
    if args.score_threshold is not None:
        overrides["score_threshold"] = args.score_threshold
    if args.format == "onnx":
        _check_onnx_output(args)
    else:
        _check_new_prefix(args.output)
    detector, size = _checkpoint_model(args, overrides or None)
    if args.format == "onnx":
        return _export_onnx(args, detector, size)
    paths = export_model(detector.net, args.output, size, preset=detector.preset)
    print(f"exported {detector.source} ({detector.preset or 'no preset'}, "
          f"{len(detector.classes)} classes, input {size[0]}x{size[1]}, {detector.spec})")
    print("wrote " + ", ".join(paths.values()))
    return 0


def _check_new_prefix(prefix: str) -> None:
    """``ValueError`` naming ``-o`` if a file of the export at ``prefix`` exists (an export or
    a quantized model never replaces a file: another run's, or an input)."""
    from ..export import export_paths

    for path in export_paths(prefix).values():
        if os.path.exists(path):
            raise ValueError(f"-o {prefix}: {path} exists; choose another prefix (export never "
                             "replaces a file)")


def _check_onnx_output(args: argparse.Namespace) -> None:
    """``ValueError`` naming ``-o`` unless it is a new ``*.onnx`` file, and naming
    ``--calib-data`` if ``--precision int8`` lacks it (before anything is loaded)."""
    from ..deploy import ONNX_SUFFIX

    if not args.output.endswith(ONNX_SUFFIX):
        raise ValueError(f"-o {args.output}: an ONNX file's name must end in {ONNX_SUFFIX} "
                         "(detect and evaluate recognise it by that)")
    if os.path.exists(args.output):
        raise ValueError(f"-o {args.output} exists; choose another name (export never replaces "
                         "a file)")
    if args.precision == "int8" and args.calib_data is None:
        raise ValueError("--precision int8 needs --calib-data (training images to calibrate on)")


def _export_onnx(args: argparse.Namespace, detector, size) -> int:
    """``export --format onnx``: the detector as one ONNX file, FP32 or INT8."""
    from ..deploy import not_installed

    try:
        from ..deploy.onnx_model import export_onnx
    except ImportError as err:
        raise not_installed(err, "--format onnx") from None
    precision = args.precision or "fp32"
    calibration = None
    if precision == "int8":
        calibration = (b.asnumpy() for b in _calibration(args, detector, size))
    meta = export_onnx(detector.net, args.output, size, batch=args.batch or "dynamic",
                       preset=detector.preset, precision=precision, calibration=calibration,
                       calib_batches=args.calib_batches, calib_mode=args.calib_mode,
                       calib_source=f"{args.calib_data} (train split)")
    print(f"exported {detector.source} ({detector.preset or 'no preset'}, "
          f"{len(detector.classes)} classes, input {size[0]}x{size[1]}, {detector.spec}) as "
          f"ONNX opset {meta['opset']}, batch {meta['batch']}, {precision}")
    if precision == "int8":
        c = meta["calibration"]
        print(f"INT8: {c['mode']} calibration on {c['images']} images of {c['source']}")
    print(f"wrote {args.output}")
    return 0


# ---------------------------------------------------------------------------------------------
# gluon-ssd evaluate

def add_evaluate(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="CHECKPOINT_OR_EXPORT",
                   help="a checkpoint file (.params), an export prefix or an ONNX file (.onnx)")
    p.add_argument("--data", help="synthetic, voc, coco or a dataset folder (VOC or COCO "
                                  "format); default: the data the checkpoint was trained on")
    p.add_argument("--data-root", metavar="DIR", help="root folder of voc/coco")
    p.add_argument("--split", default="val", help="split to evaluate (default: val)")
    p.add_argument("--metric", choices=("voc07", "voc2010", "coco", "all"), default="all",
                   help="VOC07 11-point / VOC2010+ area mAP at IoU 0.5, COCO AP (default: all)")
    p.add_argument("--decoder", choices=DECODERS + ("both",),
                   help="decode with this decoder, or compare both on the same network "
                        "outputs (default: the model's own)")
    p.add_argument("--batch-size", type=options.batch_size,
                   help=f"images per batch, 1..{options.MAX_BATCH_SIZE} (default: training's)")
    p.add_argument("--val-size", type=options.images,
                   help="synthetic images to evaluate (default: training's validation size)")
    p.add_argument("--seed", type=options.seed,
                   help="seed of the synthetic images (default: training's)")
    p.add_argument("--workers", type=options.workers, default=0, dest="num_workers",
                   help="data loader processes (0: load in this process)")
    options.add_gpus(p)
    p.add_argument("-o", "--output", metavar="DIR",
                   help="write metrics.json and the precision-recall plots here")
    _add_engine(p)
    p.add_argument("--quiet", dest="progress", action="store_false", help="no progress bar")


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Evaluate a checkpoint or export: print the per-class AP table and the mAPs; with
    --output, write metrics.json, pr_curves.png and one PR curve per class."""
    from ..evaluation.metrics import METRICS
    from ..evaluation.report import format_report, write_evaluation
    from ..evaluation.run import evaluate_model

    result = evaluate_model(
        args.model, data=args.data, data_root=args.data_root, split=args.split,
        val_size=args.val_size, seed=args.seed, batch_size=args.batch_size,
        metrics=METRICS if args.metric == "all" else (args.metric,),
        decoders=DECODERS if args.decoder == "both" else args.decoder and (args.decoder,),
        num_workers=args.num_workers, progress=args.progress, ctx=options.contexts(args),
        engine=args.engine, precision=args.precision)
    print(format_report(result))
    if args.output:
        paths = write_evaluation(result, args.output)
        print(f"wrote {paths[0]} and {len(paths) - 1} precision-recall plots to {args.output}")
    return 0


# ---------------------------------------------------------------------------------------------
# gluon-ssd convert

def add_convert(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from-gluoncv", required=True, metavar="FILE",
                   help="a GluonCV VGG16 SSD parameter file, e.g. ~/.mxnet/models/"
                        "ssd_300_vgg16_atrous_voc-0e169fbb.params")
    p.add_argument("--preset", type=options.preset, metavar="NAME",
                   help="ssd300_vgg16, ssd300_vgg16_coco (GluonCV's SSD300 for COCO) or "
                        "ssd512_vgg16 (default: the preset whose anchors the file has)")
    p.add_argument("--classes", nargs="+", metavar="NAME",
                   help="voc, coco, or the class names in order (default: VOC for 20 classes, "
                        "COCO for 80)")
    p.add_argument("-o", "--output", required=True, metavar="CHECKPOINT",
                   help="the gluon-ssd checkpoint to write (.params)")


def cmd_convert(args: argparse.Namespace) -> int:
    """Convert a GluonCV SSD parameter file into a gluon-ssd checkpoint."""
    from ..convert import GLUONCV_CLASSES, convert_gluoncv_ssd

    classes = args.classes
    if classes and len(classes) == 1 and classes[0] in GLUONCV_CLASSES:
        classes = classes[0]
    net, preset = convert_gluoncv_ssd(args.from_gluoncv, args.output,
                                      args.preset.name if args.preset else None, classes)
    size = net.spec.anchors.image_size
    print(f"converted {args.from_gluoncv}: preset {preset}, {net.num_classes} classes "
          f"({', '.join(net.classes[:3])}, ...)")
    print(f"wrote {args.output}; feed it RGB images resized to {size}x{size}; "
          "detect/evaluate --decoder per_class decode as GluonCV does")
    return 0


# ---------------------------------------------------------------------------------------------
# gluon-ssd quantize

def add_quantize(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="a checkpoint file (.params)")
    _add_calibration(p, required=True)
    _add_image_size(p, "")
    p.add_argument("-o", "--output", required=True, metavar="PREFIX",
                   help="writes PREFIX-symbol.json, PREFIX-0000.params and PREFIX-meta.json")
    options.add_gpus(p, "use (refused: oneDNN's INT8 runs on CPUs only)")
    p.add_argument("--quiet", dest="progress", action="store_false", help="no progress bar")


def cmd_quantize(args: argparse.Namespace) -> int:
    """Quantize a checkpoint to INT8 (oneDNN), calibrated on training images, and export it in
    the layout of ``gluon-ssd export`` (``detect`` and ``evaluate`` take the prefix)."""
    from ..quantize import export_quantized, quantize_model

    if args.gpus:
        raise ValueError("argument --gpus: quantize makes a oneDNN INT8 model, which runs on "
                         "CPUs only; drop --gpus")
    _check_new_prefix(args.output)
    detector, size = _checkpoint_model(args)
    batches = _calibration(args, detector, size)
    os.environ.setdefault("MXNET_SUBGRAPH_VERBOSE", "0")  # no oneDNN log lines between the bars
    int8 = quantize_model(detector.net, batches, args.calib_batches, args.calib_mode,
                          source=f"{args.calib_data} (train split)", progress=args.progress)
    paths = export_quantized(int8, args.output, size, preset=detector.preset)
    c = int8.ssd.calibration
    print(f"quantized {detector.source} to INT8 ({detector.preset or 'no preset'}, input "
          f"{size[0]}x{size[1]}): {c.mode} calibration on {c.images} images of {c.source}, "
          f"{', '.join(c.fp32_operators)} kept float32")
    print("wrote " + ", ".join(paths.values()))
    return 0
