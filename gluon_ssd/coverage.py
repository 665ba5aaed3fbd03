"""Anchor coverage: how well a set of default boxes fits a dataset's boxes (fitting anchors to
them: :mod:`gluon_ssd.anchor_fit`).

Conventions (every function here):

* Boxes are corners ``xmin, ymin, xmax, ymax`` normalised to [0, 1] by the image width (x) and
  height (y): ground truth ``(M, 4)``, anchors ``(N, 4)`` (anchors may reach outside [0, 1]).
  Normalised boxes are already in the **network-input frame**: the model resizes every image to
  a square ``image_size`` without keeping the aspect, so a box of a 320x240 image keeps its
  normalised corners (pixel corners divided by the image's width and height).
* A box's *size* is ``sqrt(w * h)`` and its *ratio* ``w / h`` in that square frame, i.e. the
  units of an :class:`~gluon_ssd.presets.AnchorSpec`'s sizes (divided by ``image_size``) and
  ratios.
* A box is *covered* when its best anchor has IoU >= ``threshold`` (default
  :data:`MATCH_THRESHOLD`). Training (``contrib.MultiBoxTarget``) gives every box its best anchor
  (bipartite matching) plus every anchor whose IoU with it is above 0.5; an uncovered box thus
  trains on one poorly fitting anchor.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np
from gluoncv.utils.bbox import bbox_iou

from .anchors import preset_anchors, preset_layer_of_anchor, spec_priors
from .boxes import corner_to_centre
from .presets import AnchorSpec

MATCH_THRESHOLD = 0.5
REPORT_THRESHOLDS = (0.4, 0.5, 0.6)
# IoU entries computed at once by match_anchors (bounds memory to a few hundred MB).
_IOU_CHUNK = 2_000_000
# Shape bins of the summary's table: size (fraction of the input side) and ratio w / h.
SIZE_BINS = (0.1, 0.2, 0.4)
RATIO_BINS = (1 / 3, 2 / 3, 1.5, 3.0)


def check_boxes(boxes, name: str = "boxes", normalised: bool = True) -> np.ndarray:
    """``boxes`` as a float64 ``(M, 4)`` corner array; ``ValueError`` naming the first bad row.

    Rejects a wrong shape, no boxes, non-finite values, ``xmin >= xmax`` or ``ymin >= ymax`` and,
    when ``normalised``, coordinates outside [0, 1] (pixel boxes passed by mistake).
    """
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{name} must have shape (M, 4) (xmin, ymin, xmax, ymax), got {arr.shape}")
    if len(arr) == 0:
        raise ValueError(f"{name} must not be empty")
    checks = [(~np.isfinite(arr).all(axis=1), "non-finite values"),
              (arr[:, 0] >= arr[:, 2], "xmin >= xmax"),
              (arr[:, 1] >= arr[:, 3], "ymin >= ymax")]
    if normalised:
        checks.append((((arr < 0) | (arr > 1)).any(axis=1),
                       "coordinates outside [0, 1] (divide pixel boxes by the image width/height)"))
    for bad, what in checks:
        if bad.any():
            row = int(np.argmax(bad))
            raise ValueError(f"{name} row {row} has {what}: {arr[row].tolist()}")
    return arr


def box_shapes(boxes) -> Tuple[np.ndarray, np.ndarray]:
    """Sizes ``sqrt(w * h)`` and ratios ``w / h`` of corner ``boxes (M, 4)``: two ``(M,)``."""
    centre = corner_to_centre(boxes)
    return np.sqrt(centre[:, 2] * centre[:, 3]), centre[:, 2] / centre[:, 3]


def match_anchors(boxes: np.ndarray, anchors: np.ndarray,
                  match_threshold: float = MATCH_THRESHOLD
                  ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each box's best anchor IoU ``(M,)``, that anchor's index ``(M,)`` and the number of anchors
    with IoU above ``match_threshold`` ``(M,)`` (each box alone, as if alone in its image).

    ``boxes (M, 4)`` and ``anchors (N, 4)`` are normalised corners; computed in chunks of boxes.
    """
    chunk = max(1, _IOU_CHUNK // len(anchors))
    best_iou, best_anchor = np.empty(len(boxes)), np.empty(len(boxes), dtype=np.int64)
    matched = np.empty(len(boxes), dtype=np.int64)
    for start in range(0, len(boxes), chunk):
        part = slice(start, start + chunk)
        iou = bbox_iou(boxes[part], anchors)
        best_anchor[part], best_iou[part] = iou.argmax(axis=1), iou.max(axis=1)
        matched[part] = (iou > match_threshold).sum(axis=1)
    return best_iou, best_anchor, matched


@dataclass(frozen=True, eq=False)
class CoverageReport:
    """How well ``N`` anchors cover ``M`` ground-truth boxes (plain numbers and arrays).

    Attributes:
        boxes: ``(M, 4)`` the boxes, normalised corners in the network-input frame.
        best_iou: ``(M,)`` each box's best IoU with any anchor.
        best_anchor: ``(M,)`` the index of that anchor.
        num_matched: ``(M,)`` anchors with IoU > :data:`MATCH_THRESHOLD` (0: the box trains only
            on its forced best anchor).
        best_layer: ``(M,)`` the layer of the best anchor, or ``None`` without layers.
        num_layers: number of layers (0 without layers).
        threshold: the IoU a box needs to count as covered.
        hist_counts, hist_edges: histogram of ``best_iou`` over [0, 1] (``np.histogram``).
        anchor_shapes: ``(A, 3)`` ``layer, size, ratio`` of each anchor of a cell, sizes as
            fractions of the input side (``(0, 3)`` without a preset).
        image_size: the preset's input side in pixels (0 without a preset).
    """

    boxes: np.ndarray
    best_iou: np.ndarray
    best_anchor: np.ndarray
    num_matched: np.ndarray
    best_layer: Optional[np.ndarray]
    num_layers: int
    threshold: float
    hist_counts: np.ndarray
    hist_edges: np.ndarray
    anchor_shapes: np.ndarray
    image_size: int = 0

    @property
    def num_boxes(self) -> int:
        return len(self.best_iou)

    @property
    def shapes(self) -> Tuple[np.ndarray, np.ndarray]:
        """Sizes (fractions of the input side) and ratios ``w / h`` of the boxes, two ``(M,)``."""
        return box_shapes(self.boxes)

    @property
    def covered(self) -> np.ndarray:
        """``(M,)`` bool: the box's best IoU reaches the threshold."""
        return self.best_iou >= self.threshold

    @property
    def coverage(self) -> float:
        """Fraction of boxes covered."""
        return float(self.covered.mean())

    def coverage_at(self, threshold: float) -> float:
        """Fraction of boxes whose best IoU is >= ``threshold``."""
        return float((self.best_iou >= threshold).mean())

    @property
    def mean_iou(self) -> float:
        """Mean best IoU over the boxes."""
        return float(self.best_iou.mean())

    @property
    def anchors_per_box(self) -> np.ndarray:
        """``(M,)`` anchors a box trains on: those above 0.5, or its forced best one."""
        return np.maximum(self.num_matched, 1)

    @property
    def forced_only(self) -> int:
        """Boxes with no anchor above 0.5: they train on their forced best match alone."""
        return int((self.num_matched == 0).sum())

    @property
    def layer_counts(self) -> np.ndarray:
        """``(num_layers,)`` boxes whose best anchor lies in each layer."""
        return self._per_layer(np.ones(self.num_boxes, dtype=bool))

    @property
    def layer_covered(self) -> np.ndarray:
        """``(num_layers,)`` covered boxes whose best anchor lies in each layer."""
        return self._per_layer(self.covered)

    def _per_layer(self, mask: np.ndarray) -> np.ndarray:
        if self.best_layer is None:
            return np.zeros(0, dtype=np.int64)
        return np.bincount(self.best_layer[mask], minlength=self.num_layers)

    def worst(self, n: int = 10) -> np.ndarray:
        """Indices of the ``n`` boxes with the lowest best IoU, worst first."""
        return np.argsort(self.best_iou, kind="stable")[:n]

    def shape_table(self) -> Tuple[np.ndarray, np.ndarray]:
        """Boxes and covered boxes per shape bin: two count arrays ``(S + 1, R + 1)``, rows the
        size bins (edges :data:`SIZE_BINS`), columns the ratio bins (edges :data:`RATIO_BINS`)."""
        sizes, ratios = self.shapes
        cell = (np.digitize(sizes, SIZE_BINS) * (len(RATIO_BINS) + 1)
                + np.digitize(ratios, RATIO_BINS))
        shape = (len(SIZE_BINS) + 1, len(RATIO_BINS) + 1)
        count = np.bincount(cell, minlength=shape[0] * shape[1]).reshape(shape)
        covered = np.bincount(cell[self.covered], minlength=shape[0] * shape[1]).reshape(shape)
        return count, covered

    def summary(self, worst: int = 5) -> str:
        """The report as text a person reads (coverage, matches, shapes, layers, worst boxes)."""
        n = self.num_boxes
        at = "   ".join(f">= {t:g}: {self.coverage_at(t):.1%}" for t in REPORT_THRESHOLDS)
        per_box = self.anchors_per_box
        lines = [f"{n} boxes; best anchor IoU {at} (mean {self.mean_iou:.3f})",
                 f"anchors per box (IoU > {MATCH_THRESHOLD:g}, as in training): mean "
                 f"{per_box.mean():.1f}, median {np.median(per_box):g}; {self.forced_only} boxes "
                 f"({self.forced_only / n:.1%}) only by their forced best anchor"]
        lines += self._shape_lines() + self._layer_lines() + _table_lines(*self.shape_table())
        lines.append("worst-covered boxes (index: best IoU, size, w/h):")
        sizes, ratios = self.shapes
        lines += [f"  {i}: {self.best_iou[i]:.2f}, {self._size_text(sizes[i])}, {ratios[i]:.2f}"
                  for i in self.worst(worst)]
        return "\n".join(lines)

    def _size_text(self, size: float) -> str:
        px = f" ({size * self.image_size:.0f} px)" if self.image_size else ""
        return f"{size:.1%}{px}"

    def _shape_lines(self) -> List[str]:
        """Quantiles of the box sizes and ratios, and the anchors' range of each."""
        q, (sizes, ratios) = (5, 25, 50, 75, 95), self.shapes
        lines = ["box size sqrt(w*h) / side, percentiles 5 25 50 75 95: "
                 + "  ".join(f"{s:.1%}" for s in np.percentile(sizes, q)),
                 "box ratio w/h, percentiles 5 25 50 75 95: "
                 + "  ".join(f"{r:.2f}" for r in np.percentile(ratios, q))]
        if len(self.anchor_shapes):
            _, a_size, a_ratio = self.anchor_shapes.T
            lines.append(f"anchors: sizes {self._size_text(a_size.min())} .. "
                         f"{self._size_text(a_size.max())}, ratios {a_ratio.min():.2f} .. "
                         f"{a_ratio.max():.2f}")
        return lines

    def _layer_lines(self) -> List[str]:
        lines = []  # one per layer: its anchor shapes, its boxes
        for k, (count, cov) in enumerate(zip(self.layer_counts, self.layer_covered)):
            shapes = self.anchor_shapes[self.anchor_shapes[:, 0] == k]
            desc = (f" (sizes {', '.join(self._size_text(s) for s in np.unique(shapes[:, 1]))};"
                    f" ratios {' '.join(f'{r:.3g}' for r in np.unique(shapes[:, 2]))})"
                    if len(shapes) else "")
            lines.append(f"  layer {k}{desc}: best anchor of {count} boxes, {cov} covered")
        return (["boxes per layer of their best anchor:"] + lines) if lines else []


def _table_lines(count: np.ndarray, covered: np.ndarray) -> List[str]:
    """Coverage per shape bin as a text table (rows: size, columns: ratio)."""
    def edges(bins, fmt):
        return ([f"<{fmt(bins[0])}"] + [f"{fmt(a)}-{fmt(b)}" for a, b in zip(bins, bins[1:])]
                + [f">={fmt(bins[-1])}"])
    cols, rows = edges(RATIO_BINS, lambda r: f"{r:.2g}"), edges(SIZE_BINS, lambda s: f"{s:.0%}")
    lines = ["covered / boxes by shape (rows: size / side, columns: w/h):",
             "  " + " " * 9 + "".join(f"{c:>14}" for c in cols)]
    for name, n_row, c_row in zip(rows, count, covered):
        cells = [f"{c}/{n} {c / n:.0%}" if n else "-" for n, c in zip(n_row, c_row)]
        lines.append(f"  {name:>9}" + "".join(f"{c:>14}" for c in cells))
    return lines


def anchor_coverage(boxes, anchors, layer_of_anchor: Optional[np.ndarray] = None,
                    threshold: float = MATCH_THRESHOLD, bins: int = 20,
                    anchor_shapes: Optional[np.ndarray] = None,
                    image_size: int = 0) -> CoverageReport:
    """Coverage of ground truth ``boxes (M, 4)`` by ``anchors (N, 4)`` (normalised corners).

    ``layer_of_anchor`` ``(N,)`` gives each anchor's layer (e.g. from
    :func:`~gluon_ssd.anchors.preset_layer_of_anchor`) to count boxes per layer;
    ``anchor_shapes`` and ``image_size`` only enter the report (see :class:`CoverageReport`).
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    boxes = check_boxes(boxes)
    anchors = check_boxes(anchors, "anchors", normalised=False)
    best_iou, best_anchor, matched = match_anchors(boxes, anchors)
    best_layer, num_layers = None, 0
    if layer_of_anchor is not None:
        layer_of_anchor = np.asarray(layer_of_anchor, dtype=np.int64)
        if layer_of_anchor.shape != (len(anchors),):
            raise ValueError(f"layer_of_anchor must have shape ({len(anchors)},), "
                             f"got {layer_of_anchor.shape}")
        best_layer, num_layers = layer_of_anchor[best_anchor], int(layer_of_anchor.max()) + 1
    counts, edges = np.histogram(best_iou, bins=bins, range=(0.0, 1.0))
    shapes = np.zeros((0, 3)) if anchor_shapes is None else np.asarray(anchor_shapes, float)
    return CoverageReport(boxes, best_iou, best_anchor, matched, best_layer, num_layers,
                          float(threshold), counts, edges, shapes, int(image_size))


def preset_anchor_shapes(spec: AnchorSpec) -> np.ndarray:
    """``(A, 3)`` ``layer, size, ratio`` of every anchor of a cell of each layer, in
    MultiBoxPrior's order; sizes as fractions of ``spec.image_size``."""
    return np.array([(k, a.size, a.ratio) for k, p in enumerate(spec_priors(spec))
                     for a in p.shapes()])


def preset_coverage(boxes, spec: AnchorSpec, threshold: float = MATCH_THRESHOLD,
                    bins: int = 20) -> CoverageReport:
    """Coverage of ``boxes (M, 4)`` by all anchors of a preset at ``spec.image_size``, per layer."""
    return anchor_coverage(boxes, preset_anchors(spec), preset_layer_of_anchor(spec), threshold,
                           bins, preset_anchor_shapes(spec), spec.image_size)


def sample_boxes(num: int, seed: int = 0, min_size: float = 0.05, max_size: float = 0.9,
                 max_ratio: float = 3.0) -> np.ndarray:
    """Random ground-truth-like boxes for examples: ``(num, 4)`` normalised corners.

    Sizes ``sqrt(w * h)`` are log-uniform in ``[min_size, max_size]``, aspect ratios ``w / h``
    log-uniform in ``[1 / max_ratio, max_ratio]``, centres uniform; boxes are clipped to the image.
    """
    rng = np.random.default_rng(seed)
    size = np.exp(rng.uniform(np.log(min_size), np.log(max_size), num))
    ratio = np.exp(rng.uniform(-np.log(max_ratio), np.log(max_ratio), num))
    wh = np.stack([size * np.sqrt(ratio), size / np.sqrt(ratio)], axis=1)
    centre = rng.uniform(0, 1, (num, 2))
    return np.clip(np.concatenate([centre - wh / 2, centre + wh / 2], axis=1), 0, 1)
