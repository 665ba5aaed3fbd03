"""Anchors fitted to a dataset's boxes: sizes and ratios (and extra sizes) for a network's
feature maps that cover the boxes well, by the coverage of :mod:`gluon_ssd.coverage`.

Boxes are normalised corners in the network-input frame, as in :mod:`gluon_ssd.coverage`.

An anchor's best IoU with a box only needs the nearest cell centre of its layer: with the shapes
fixed, the intersection shrinks as the centres move apart along x or along y, and the grid is a
product of an x grid and a y grid. So the best IoU of every box with every candidate shape is one
``(M,)`` array per shape, and choosing shapes is cheap set cover over those arrays.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import replace
from typing import Dict, List, Tuple

import numpy as np

from .anchors import paper_scales, preset_layer_of_anchor, spec_priors
from .boxes import centre_to_corner, corner_to_centre
from .coverage import MATCH_THRESHOLD, CoverageReport, box_shapes, check_boxes, preset_coverage
from .presets import AnchorSpec


def _grid_iou(boxes: np.ndarray, spec: AnchorSpec, layer: int, sizes: np.ndarray,
              ratios: np.ndarray) -> np.ndarray:
    """``(S, M)`` IoU of each box with the nearest anchor of each shape ``(sizes[s], ratios[s])``
    of ``layer`` (sizes as fractions of the side); equal to the best over all its anchors."""
    step = spec.steps[layer] / spec.image_size
    centre = corner_to_centre(boxes)
    cell = np.clip(np.round(centre[:, :2] / step - spec.offset), 0, spec.feature_maps[layer] - 1)
    grid = (cell + spec.offset) * step                                        # (M, 2)
    wh = np.stack([sizes * np.sqrt(ratios), sizes / np.sqrt(ratios)], axis=1)  # (S, 2)
    anchors = centre_to_corner(np.concatenate(np.broadcast_arrays(
        grid[None], wh[:, None]), axis=-1))                                   # (S, M, 4)
    # bbox_iou pairs every box with every anchor; here each box meets one anchor per shape.
    low = np.maximum(anchors[..., :2], boxes[..., :2])
    inter = np.prod(np.clip(np.minimum(anchors[..., 2:], boxes[..., 2:]) - low, 0, None), axis=-1)
    union = np.prod(wh, axis=1)[:, None] + centre[:, 2] * centre[:, 3] - inter
    return inter / union


def _spec_scales(spec: AnchorSpec, s_min: float, s_max: float) -> Tuple[float, ...]:
    """The paper's ``m + 1`` sizes in pixels: ``m`` linear scales from ``s_min`` to ``s_max``
    and one more step for the last layer's extra box."""
    m = len(spec.feature_maps)
    scales = paper_scales(m, s_min, s_max)
    scales.append(scales[-1] + (s_max - s_min) / (m - 1) if m > 1 else s_max)
    return tuple(round(s * spec.image_size, 2) for s in scales)


def _ratio_candidates(ratios: np.ndarray, spec: AnchorSpec) -> np.ndarray:
    """Ratios (not 1) a layer may add: a grid of factors 2^(1/3) and the preset's own ratios,
    within the range of the boxes' ratios (1st to 99th percentile, widened by 1.5)."""
    grid = {float(f"{2 ** (k / 3):.3g}") for k in range(-15, 16) if k}
    grid |= {float(f"{r:.3g}") for layer in spec.ratios for r in layer if not math.isclose(r, 1)}
    low, high = np.percentile(ratios, (1, 99))
    return np.array(sorted(r for r in grid if low / 1.5 <= r <= high * 1.5))


def _greedy_ratios(boxes: np.ndarray, spec: AnchorSpec, candidates: np.ndarray,
                   max_ratios: int, min_gain: float, threshold: float
                   ) -> Tuple[Tuple[Tuple[float, ...], ...], np.ndarray]:
    """Each layer's ratio set for ``spec``'s sizes and the boxes' best IoU ``(M,)``.

    Starts from ratio 1 (both sizes of a layer) and adds ``(layer, ratio)`` options by
    :func:`_greedy_cover`, up to ``max_ratios`` ratios per layer. The ratios go to a layer's
    first size only, as MultiBoxPrior applies them.
    """
    m, side = len(spec.feature_maps), spec.image_size
    sizes = np.asarray(spec.sizes, float) / side
    best = np.zeros(len(boxes))
    options = []
    for k in range(m):
        square = np.array([sizes[k], math.sqrt(sizes[k] * sizes[k + 1])])
        best = np.maximum(best, _grid_iou(boxes, spec, k, square, np.ones(2)).max(axis=0))
        options.append(_grid_iou(boxes, spec, k, np.full(len(candidates), sizes[k]), candidates))
    options = np.concatenate(options)                                      # (m * R, M)
    layer_of = np.repeat(np.arange(m), len(candidates))
    picked, best = _greedy_cover(options, layer_of, np.ones(len(options)),
                                 np.full(m, max_ratios - 1), best, min_gain, threshold)
    chosen: List[List[float]] = [[] for _ in range(m)]
    for pick in picked:
        chosen[layer_of[pick]].append(float(candidates[pick % len(candidates)]))
    return tuple((1.0,) + tuple(sorted(c)) for c in chosen), best


def _greedy_cover(options: np.ndarray, layer_of: np.ndarray, costs: np.ndarray,
                  budgets: np.ndarray, best: np.ndarray, min_gain: float, threshold: float
                  ) -> Tuple[List[int], np.ndarray]:
    """Greedy set cover: the options (rows of ``options (K, M)``, each box's best IoU with an
    option's anchors) to add, and the boxes' best IoU ``(M,)`` after them, from ``best``.

    One at a time, the option that newly covers the most boxes (ties: the larger gain in IoU) is
    added while it covers at least ``min_gain`` of them and its ``costs[k]`` anchors per cell
    fit in what is left of its layer's ``budgets[layer_of[k]]``.
    """
    budgets = np.asarray(budgets, float).copy()
    open_ = costs <= budgets[layer_of]
    picked: List[int] = []
    while open_.any():
        new = ((options >= threshold) & (best < threshold)).sum(axis=1)
        score = new + np.maximum(options - best, 0).sum(axis=1) / (len(best) + 1)
        pick = int(np.argmax(np.where(open_, score, -1)))
        if new[pick] < max(1, min_gain * len(best)):
            break
        best = np.maximum(best, options[pick])
        picked.append(pick)
        budgets[layer_of[pick]] -= costs[pick]
        open_[pick] = False
        open_ &= costs <= budgets[layer_of]
    return picked, best


def _greedy_extra_sizes(boxes: np.ndarray, spec: AnchorSpec, best: np.ndarray,
                        max_anchors: int, min_gain: float, threshold: float
                        ) -> Tuple[Tuple[Tuple[float, ...], ...], np.ndarray]:
    """Extra sizes per layer (pixels) for ``spec`` (sizes and ratios fixed), and the boxes' best
    IoU ``(M,)`` after them, starting from ``best``.

    The paper's form gives a layer's ratios to its first size only, so an elongated box between
    two layers' sizes matches nothing well. An extra size brings every ratio of its layer (as
    many anchors per cell); candidates lie between half the layer's size and the next layer's.
    Added by :func:`_greedy_cover` while a layer stays within ``max_anchors`` per cell.
    """
    m, side = len(spec.feature_maps), spec.image_size
    sizes = np.asarray(spec.sizes, float) / side
    options, owners = [], []
    for k in range(m):
        ratios = np.asarray(spec.ratios[k], float)
        for e in np.geomspace(sizes[k] / 2, sizes[k + 1], 9)[1:-1]:
            if np.min(np.abs(np.log(e / sizes[k:k + 2]))) < 0.1:
                continue  # the layer's own size already
            iou = _grid_iou(boxes, spec, k, np.full(len(ratios), e), ratios).max(axis=0)
            options.append(iou)
            owners.append((k, float(f"{e * side:.4g}")))
    layer_of = np.array([k for k, _ in owners], int)
    costs = np.array([len(spec.ratios[k]) for k in layer_of], float)
    budgets = np.array([max_anchors - prior.num_anchors for prior in spec_priors(spec)], float)
    picked, best = _greedy_cover(np.array(options).reshape(len(owners), len(boxes)), layer_of,
                                 costs, budgets, best, min_gain, threshold)
    extra: List[List[float]] = [[] for _ in range(m)]
    for pick in picked:
        extra[owners[pick][0]].append(owners[pick][1])
    return tuple(tuple(sorted(e)) for e in extra), best


def _spec_best_iou(boxes: np.ndarray, spec: AnchorSpec) -> np.ndarray:
    """``(M,)`` each box's best IoU with ``spec``'s anchors (as :func:`preset_coverage`)."""
    best = np.zeros(len(boxes))
    for k, prior in enumerate(spec_priors(spec)):
        shapes = prior.shapes()
        iou = _grid_iou(boxes, spec, k, np.array([a.size for a in shapes]),
                        np.array([a.ratio for a in shapes]))
        best = np.maximum(best, iou.max(axis=0))
    return best


def _sample(boxes: np.ndarray, max_boxes: int) -> np.ndarray:
    """``boxes``, or ``max_boxes`` of them chosen with a fixed seed (fitting stays fast and
    deterministic)."""
    if len(boxes) <= max_boxes:
        return boxes
    return boxes[np.sort(np.random.default_rng(0).choice(len(boxes), max_boxes, False))]


def extend_anchors(boxes, spec: AnchorSpec, *, max_anchors_per_cell: int = 8,
                   min_gain: float = 0.003, threshold: float = MATCH_THRESHOLD,
                   max_boxes: int = 5000) -> AnchorSpec:
    """``spec``'s anchors, every one kept, plus extra sizes for the boxes ``(M, 4)`` (normalised
    corners, network-input frame) that none of them covers.

    Each extra size brings its layer's ratios (:func:`_greedy_extra_sizes`) and is added while it
    newly covers at least ``min_gain`` of the boxes and its layer stays within
    ``max_anchors_per_cell`` anchors per cell. Where :func:`fit_anchors` chooses every anchor
    for the highest coverage, this keeps the preset's, so the boxes they cover match as before
    and in the same place of their cell: the data's small objects get anchors of their own
    without the others losing theirs. Returns ``spec`` when nothing helps. Deterministic.
    """
    boxes = _sample(check_boxes(boxes), max_boxes)
    extra, _ = _greedy_extra_sizes(boxes, spec, _spec_best_iou(boxes, spec),
                                   max_anchors_per_cell, min_gain, threshold)
    if not any(extra):
        return spec
    # appended, so that every anchor of ``spec`` keeps its place in its cell (predictor rows)
    mine = spec.extra_sizes or ((),) * len(extra)
    return replace(spec, extra_sizes=tuple(a + b for a, b in zip(mine, extra)))


def fit_anchors(boxes, spec: AnchorSpec, *, max_anchors_per_cell: int = 8,
                min_gain: float = 0.003, threshold: float = MATCH_THRESHOLD,
                max_boxes: int = 5000) -> AnchorSpec:
    """Anchor sizes and ratios for ``spec``'s network that cover ``boxes (M, 4)`` well.

    ``boxes`` are normalised corners in the network-input frame (see the module docstring). The
    result keeps ``spec``'s ``image_size``, feature maps, steps and offset, and has at most
    ``max_anchors_per_cell`` anchors per cell of any layer.

    1. Sizes follow the paper's linear scale rule between ``s_min`` and ``s_max`` (plus the
       extra ``sqrt(s_k s_k+1)`` box per layer), ``s_min`` and ``s_max`` tried on a grid from
       low and high percentiles of the box sizes (``s_max`` up to twice the largest box: a wider
       rule puts larger boxes on the finer layers).
    2. For each, every layer's ratios are chosen greedily (``ratios[0] == 1``, each added ratio
       newly covering at least ``min_gain`` of the boxes), so elongated data get more ratios
       where they are (:func:`_greedy_ratios`).
    3. The best of those gets extra sizes per layer, each with all of the layer's ratios, for the
       boxes between two layers' sizes (:func:`_greedy_extra_sizes`).

    Ratios and extra sizes compete for the same anchors of a cell, so steps 1-3 run for several
    caps on the ratios (3 to 5 per layer), and the best result is kept. Candidates are ranked by
    coverage at ``threshold``, then mean best IoU. The result replaces ``spec`` only if it covers
    more boxes, so coverage never goes down. Deterministic; more than ``max_boxes`` boxes are
    subsampled with a fixed seed.
    """
    if max_anchors_per_cell < 2:
        raise ValueError(f"max_anchors_per_cell must be >= 2, got {max_anchors_per_cell}")
    boxes = _sample(check_boxes(boxes), max_boxes)
    sizes, ratios = box_shapes(boxes)
    candidates = _ratio_candidates(ratios, spec)
    lows = np.geomspace(*np.percentile(sizes, (1, 40)), 7)
    highs = np.geomspace(np.percentile(sizes, 70), 2 * sizes.max(), 7)
    sized = [spec] + [replace(spec, sizes=_spec_scales(spec, a, b))
                      for a in lows for b in highs if a <= b]

    def score(best: np.ndarray) -> Tuple[float, float]:
        return float((best >= threshold).mean()), float(best.mean())

    fits: Dict[AnchorSpec, Tuple[float, float]] = {}
    for per_cell in sorted({min(n, max_anchors_per_cell) for n in (4, 5, 6)}):
        scores: Dict[AnchorSpec, Tuple[float, float]] = {}
        for candidate in sized:
            fitted, best = _greedy_ratios(boxes, candidate, candidates, per_cell - 1, min_gain,
                                          threshold)
            scores.setdefault(replace(candidate, ratios=fitted), score(best))
        best_fit = max(scores, key=scores.get)  # the first of equals: deterministic
        extra, best = _greedy_extra_sizes(boxes, best_fit, _spec_best_iou(boxes, best_fit),
                                          max_anchors_per_cell, min_gain, threshold)
        if any(extra):
            best_fit = replace(best_fit, extra_sizes=extra)
        fits.setdefault(best_fit, score(best))
    best_fit = max(fits, key=fits.get)
    # Only more coverage justifies other anchors (a network built for them, weights that no
    # longer fit): with coverage equal, the preset stays.
    return best_fit if fits[best_fit][0] > score(_spec_best_iou(boxes, spec))[0] else spec


def describe_fit(spec: AnchorSpec, fitted: AnchorSpec, before: CoverageReport,
                 after: CoverageReport) -> str:
    """Coverage before -> after and the fitted sizes (px) and ratios per layer, as text."""
    total = [len(preset_layer_of_anchor(s)) for s in (spec, fitted)]
    lines = [f"coverage (IoU >= {before.threshold:g}) {before.coverage:.1%} -> {after.coverage:.1%}"
             f"; mean best IoU {before.mean_iou:.3f} -> {after.mean_iou:.3f}; anchors {total[0]} "
             f"-> {total[1]}" + (" (the preset kept)" if fitted == spec else ""),
             f"sizes (px at {fitted.image_size}): {', '.join(f'{s:.4g}' for s in fitted.sizes)}"]
    for k, prior in enumerate(spec_priors(fitted)):
        extra = fitted.extra_sizes[k] if fitted.extra_sizes else ()
        more = f", extra sizes {', '.join(f'{e:.4g}' for e in extra)} px" if extra else ""
        lines.append(f"  layer {k}: ratios {', '.join(f'{r:.3g}' for r in prior.ratios)}{more} "
                     f"({prior.num_anchors} anchors per cell)")
    return "\n".join(lines)


# Anchors covering fewer of a run's training boxes (best IoU >= 0.5) get a warning at its start.
COVERAGE_WARNING = 0.9


def coverage_note(boxes, anchors: AnchorSpec, base: AnchorSpec, base_name: str, how: str,
                  data: str) -> str:
    """The training log's lines on a run's ``anchors`` (``how`` they were chosen): how many,
    the share of the training ``boxes (M, 4)`` they cover (and the ``base_name`` preset's
    ``base`` anchors', when they differ), and under :data:`COVERAGE_WARNING` a warning with the
    fix (for dataset ``data``)."""
    report = preset_coverage(boxes, anchors)
    versus = ("" if anchors == base else
              f"; {base_name}'s: {preset_coverage(boxes, base).coverage:.1%}")
    lines = [f"anchors ({how}, {len(preset_layer_of_anchor(anchors))} at {anchors.image_size} "
             f"px): cover {report.coverage:.1%} of {report.num_boxes} training boxes at IoU >= "
             f"{report.threshold:g} (mean best IoU {report.mean_iou:.3f}{versus})"]
    if report.coverage < COVERAGE_WARNING:
        lines.append(f"warning: under {COVERAGE_WARNING:.0%} of the training boxes have an "
                     f"anchor at IoU >= {report.threshold:g}; fit the anchors to this data with "
                     f"`--anchors fit` (report: `gluon-ssd anchors --data {data} --fit`)")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Anchor files: what `gluon-ssd anchors --data ... --json` writes and `train --anchors` reads.

ANCHOR_FILE_KIND = "gluon-ssd anchors"
# The fields of an anchor file a network's layout fixes: a file may change the others only.
_LAYOUT_FIELDS = ("image_size", "feature_maps", "steps")


def anchor_file_document(spec: AnchorSpec, preset: str, **about) -> dict:
    """The JSON of an anchor file: ``spec`` (:class:`AnchorSpec` fields, sizes in pixels at
    ``spec.image_size``) for ``preset``'s network, and ``about`` (e.g. the data it was fitted
    on and the coverage before/after), for the reader."""
    return {"kind": ANCHOR_FILE_KIND, "preset": preset, "anchors": dataclasses.asdict(spec),
            **about}


def read_anchor_file(path: str, base: AnchorSpec) -> AnchorSpec:
    """The anchors of an anchor file (:func:`anchor_file_document`) for a network laid out as
    ``base``: ``ValueError`` naming ``path`` if it is not one, has another number of layers, a
    non-positive size or ratio, or another image size, feature maps or steps than ``base``."""
    try:
        with open(path) as f:
            document = json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"anchor file {path} is not JSON ({err})") from None
    if not isinstance(document, dict) or not isinstance(document.get("anchors"), dict):
        raise ValueError(f"anchor file {path} has no 'anchors' object (write one with "
                         "`gluon-ssd anchors --data PATH --fit --json FILE`)")
    fields = document["anchors"]
    layers = fields.get("feature_maps")
    if isinstance(layers, list) and len(layers) != len(base.feature_maps):
        raise ValueError(f"anchor file {path} has {len(layers)} layers; the network has "
                         f"{len(base.feature_maps)} feature maps {list(base.feature_maps)}")
    spec = AnchorSpec.from_dict(fields, f"anchor file {path}")
    for name in _LAYOUT_FIELDS:
        if getattr(spec, name) != getattr(base, name):
            raise ValueError(f"anchor file {path} has {name} {getattr(spec, name)}; the network "
                             f"has {getattr(base, name)}")
    return spec


def choose_anchors(choice: str, base: AnchorSpec, boxes) -> AnchorSpec:
    """The anchors a run trains with: ``"preset"`` (``base``), ``"extend"`` (``base`` and more
    for the ``boxes (M, 4)``, normalised corners, it misses; :func:`extend_anchors`), ``"fit"``
    (fitted to the boxes; :func:`fit_anchors`) or an anchor file's (:func:`read_anchor_file`)."""
    if choice == "preset":
        return base
    if choice == "extend":
        return extend_anchors(boxes, base)
    if choice == "fit":
        return fit_anchors(boxes, base)
    return read_anchor_file(choice, base)
