"""``gluon-ssd anchors``: print, plot and export default boxes (of one feature map, or of a
preset), and measure (and fit) a preset's anchors on a dataset's boxes (``--data``)."""
from __future__ import annotations

import argparse
import os

from ..jsonfile import write_json
from . import options

# The arguments that describe one feature map's anchors (a preset fixes them all).
_MAP_ARGS = ("feature_map", "sizes", "ratios", "steps", "offsets")


def add_anchors(p: argparse.ArgumentParser) -> None:
    from ..presets import list_presets

    p.add_argument("--preset", type=options.preset, metavar="NAME",
                   help=f"all anchors of a preset: ssd300, ssd512 or one of {list_presets()}")
    p.add_argument("--feature-map", type=options.feature_map, metavar="HxW",
                   help="feature map, sides up to "
                        f"{options.MAX_FEATURE_MAP_SIDE} (default: the image's pixel grid, one "
                        "cell per pixel)")
    p.add_argument("--sizes", type=options.anchor_size, nargs="+", metavar="S",
                   help="box sizes as fractions of the image height, e.g. 0.2 0.5 (at most "
                        f"{options.MAX_ANCHOR_SIZE:g})")
    p.add_argument("--ratios", type=options.ratio, nargs="+", metavar="R",
                   help="aspect ratios width/height (default 1); ratios[0] applies to every size")
    p.add_argument("--steps", type=options.step, nargs=2, metavar=("Y", "X"),
                   help="distance between cell centres, normalised (default -1: 1 / map size)")
    p.add_argument("--offsets", type=options.offset, nargs=2, metavar=("Y", "X"),
                   help="centre of a cell inside it, in cells (default 0.5 0.5)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--image", metavar="PATH", help="draw on this image")
    source.add_argument("--image-size", type=options.canvas, metavar="HxW",
                        help="draw on a blank canvas, sides up to "
                             f"{options.MAX_CANVAS_SIDE} (default 300 high with the map's "
                             "aspect, or the preset's image size)")
    p.add_argument("--at", type=options.row_col, metavar="ROW,COL",
                   help="the cell whose anchors are drawn (a pixel when the map is the pixel "
                        "grid); with --preset, a pixel of the image: each layer draws the cell "
                        "holding it. Default: the centre")
    data = p.add_argument_group(
        "a dataset's boxes (--data): the coverage report of the preset's anchors (default demo) "
        "on them, a picture of box and anchor shapes, and with --fit anchors fitted to them")
    data.add_argument("--data", metavar="DATA",
                      help="synthetic, voc, coco, or a dataset folder (VOC or COCO format)")
    data.add_argument("--data-root", metavar="DIR", help="root folder of voc/coco")
    data.add_argument("--split", default="train", help="which split's boxes (default train)")
    how = data.add_mutually_exclusive_group()
    how.add_argument("--fit", action="store_true",
                     help="fit anchors to the boxes and report the coverage before and after")
    how.add_argument("--extend", action="store_true",
                     help="keep the preset's anchors and add some for the boxes they miss (what "
                          "`train --anchors extend` does); report the coverage before and after")
    p.add_argument("-o", "--output", metavar="PNG",
                   help="write the plot here (with --data default: anchor-coverage.png, or "
                        "anchor-coverage-N.png if that exists)")
    p.add_argument("--json", metavar="PATH",
                   help="write the anchors (normalised corners, MultiBoxPrior's order) here; "
                        "with --data the anchor file `gluon-ssd train --anchors PATH` reads "
                        "(the fitted anchors with --fit or --extend, else the preset's)")


def cmd_anchors(args: argparse.Namespace) -> int:
    """Print the anchor-shape table; optionally plot the anchors and write them as JSON. With
    ``--data``: the coverage report of a dataset's boxes, and fitted anchors."""
    if args.data is not None:
        return _data_anchors(args)
    if args.fit or args.extend:
        raise ValueError(f"--{'fit' if args.fit else 'extend'} needs --data: the boxes the "
                         "anchors are fitted to")
    if args.preset is not None:
        given = ["--" + k.replace("_", "-") for k in _MAP_ARGS if getattr(args, k) is not None]
        if given:
            raise ValueError(f"--preset fixes the anchors; drop {' '.join(given)}")
        return _preset_anchors(args)
    if args.sizes is None:
        raise ValueError("--sizes (or --preset) is required")
    return _map_anchors(args)


def _map_anchors(args: argparse.Namespace) -> int:
    from ..anchors import (anchor_document, check_prior_args, feature_map_anchors,
                           format_anchor_table, layer_meta, num_anchors, shapes_on_image)
    from ..visualize import (blank_canvas, check_cell, default_canvas_size,
                             plot_feature_map_anchors)

    sizes, ratios = args.sizes, args.ratios or [1.0]
    steps, offsets = args.steps or (-1.0, -1.0), args.offsets or (0.5, 0.5)
    check_prior_args(sizes, ratios, steps, offsets)
    image = options.option_image(args.image)
    if image is None:
        image = blank_canvas(args.image_size or default_canvas_size(args.feature_map or (300, 300)))
    feature_map = args.feature_map or image.shape[:2]
    at = check_cell(args.at, feature_map, "--at") if args.at else None
    per_cell = num_anchors(sizes, ratios)
    if args.output or args.json:  # both compute every anchor of the map
        options.check_anchor_count(feature_map, per_cell, "-o" if args.output else "--json")
    print(format_anchor_table(shapes_on_image(sizes, ratios, feature_map, image.shape[:2])))
    print(f"{feature_map[0]}x{feature_map[1]} cells x {per_cell} anchors "
          f"= {feature_map[0] * feature_map[1] * per_cell} anchors")
    if args.output:
        plot_feature_map_anchors(feature_map, sizes, ratios, cells=[at] if at else None,
                                 steps=steps, offsets=offsets, image=image, path=args.output)
        print(f"wrote {args.output}")
    if args.json:
        anchors = feature_map_anchors(feature_map, sizes, ratios, steps, offsets)
        layer = layer_meta(feature_map, sizes, ratios, steps, offsets)
        write_json(args.json, anchor_document(anchors, image.shape[:2], [layer]), indent=None)
        print(f"wrote {len(anchors)} anchors to {args.json}")
    return 0


def _preset_anchors(args: argparse.Namespace) -> int:
    from ..anchors import preset_document, preset_table
    from ..visualize import blank_canvas, check_cell, plot_preset_anchors

    preset = args.preset
    spec = preset.model.anchors
    image = options.option_image(args.image)
    if image is None:
        image = blank_canvas(args.image_size or (spec.image_size, spec.image_size))
    at = check_cell(args.at, image.shape[:2], "--at") if args.at else None
    print(preset_table(spec))
    if args.output:
        plot_preset_anchors(spec, image=image, at=at, title=preset.name, path=args.output)
        print(f"wrote {args.output}")
    if args.json:
        document = preset_document(spec, preset.name)
        write_json(args.json, document, indent=None)
        print(f"wrote {document['num_anchors']} anchors to {args.json}")
    return 0


def _new_file(path: str, option: str) -> str:
    """``path`` if no file is there; ``ValueError`` naming ``option`` otherwise (nothing a user
    has is overwritten)."""
    if os.path.exists(path):
        raise ValueError(f"argument {option}: {path} exists; choose another name")
    return path


def _free_name(stem: str, suffix: str) -> str:
    """``stem + suffix``, or ``stem-2 + suffix``, ``stem-3 ...``: the first that does not exist."""
    path, n = stem + suffix, 1
    while os.path.exists(path):
        n += 1
        path = f"{stem}-{n}{suffix}"
    return path


def _data_anchors(args: argparse.Namespace) -> int:
    """``anchors --data``: coverage of the preset's anchors on a split's boxes (printed, drawn),
    and with ``--fit`` the fitted anchors and their coverage; ``--json`` writes an anchor file."""
    from ..anchor_fit import anchor_file_document, describe_fit, extend_anchors, fit_anchors
    from ..coverage import preset_coverage
    from ..data.datasets import get_dataset
    from ..data.labels import dataset_boxes
    from ..presets import get_preset
    from ..visualize import plot_dataset_coverage

    given = ["--" + k.replace("_", "-") for k in _MAP_ARGS + ("image", "image_size", "at")
             if getattr(args, k) is not None]
    if given:
        raise ValueError(f"--data measures a preset's anchors; drop {' '.join(given)}")
    preset = args.preset or get_preset("demo")
    spec = preset.model.anchors
    png = _new_file(args.output, "-o") if args.output else _free_name("anchor-coverage", ".png")
    if args.json:
        _new_file(args.json, "--json")
    dataset = get_dataset(args.data, args.split, root=args.data_root,
                          size=(spec.image_size, spec.image_size))
    name = f"the {args.split} split of {args.data}"
    boxes, _ = dataset_boxes(dataset, name, progress=True)
    before = preset_coverage(boxes, spec)
    print(f"{name}: {len(dataset)} images; anchors of {preset.name} at {spec.image_size} px\n"
          f"{before.summary()}")
    reports, chosen = {preset.name: before}, spec
    if args.fit or args.extend:
        kind = "fitted" if args.fit else "extended"
        chosen = (fit_anchors if args.fit else extend_anchors)(boxes, spec)
        reports[kind] = after = preset_coverage(boxes, chosen)
        print(f"\n{kind} anchors:\n{describe_fit(spec, chosen, before, after)}")
    plot_dataset_coverage(reports, title=f"{args.data} ({args.split}, {len(boxes)} boxes)",
                          path=png)
    print(f"wrote {png}")
    if args.json:
        coverage = {name: round(r.coverage, 4) for name, r in reports.items()}
        write_json(args.json, anchor_file_document(
            chosen, preset.name, data=args.data, split=args.split,
            fitted=args.fit or args.extend,
            method="fit" if args.fit else "extend" if args.extend else "preset",
            coverage=coverage), mode="x")
        print(f"wrote {args.json}: train with `gluon-ssd train --preset {preset.name} --anchors "
              f"{args.json} ...`")
    return 0
