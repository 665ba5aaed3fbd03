"""Anchor coverage: can a set of default boxes match a set of ground-truth boxes?

Conventions (every function here):

* Boxes are corners ``xmin, ymin, xmax, ymax`` normalised to [0, 1] by the image width (x) and
  height (y): ground truth ``(M, 4)``, anchors ``(N, 4)`` (anchors may reach outside [0, 1]).
* A ground-truth box is *covered* when its best anchor has IoU >= ``threshold`` (default
  :data:`MATCH_THRESHOLD`, the 0.5 at which SSD's matching makes an anchor a positive). An
  uncovered box still gets its best anchor (bipartite matching), but only that one, and a poor fit.
* Box shapes ``(M, 2)`` are ``(width, height)`` in the same normalised units. For a square preset
  (an :class:`~gluon_ssd.presets.AnchorSpec`), a box of shape ``(w, h)`` has size ``sqrt(w * h)``
  and aspect ratio ``w / h`` in the resized square image, i.e. the preset's size and ratio.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import List, Optional, Sequence, Tuple

import numpy as np
from gluoncv.utils.bbox import bbox_iou

from .anchors import paper_scales, preset_anchors, preset_layer_of_anchor
from .presets import AnchorSpec

MATCH_THRESHOLD = 0.5
# IoU entries computed at once by best_anchor_iou (bounds memory to a few hundred MB).
_IOU_CHUNK = 2_000_000


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


def best_anchor_iou(boxes: np.ndarray, anchors: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """For each box, its best IoU with any anchor and that anchor's index: two ``(M,)`` arrays.

    ``boxes (M, 4)`` and ``anchors (N, 4)`` are normalised corners; computed in chunks of boxes.
    """
    chunk = max(1, _IOU_CHUNK // len(anchors))
    best_iou = np.empty(len(boxes))
    best_anchor = np.empty(len(boxes), dtype=np.int64)
    for start in range(0, len(boxes), chunk):
        iou = bbox_iou(boxes[start:start + chunk], anchors)
        best_anchor[start:start + chunk] = iou.argmax(axis=1)
        best_iou[start:start + chunk] = iou.max(axis=1)
    return best_iou, best_anchor


@dataclass(frozen=True, eq=False)
class CoverageReport:
    """How well ``N`` anchors cover ``M`` ground-truth boxes.

    Attributes:
        best_iou: ``(M,)`` each box's best IoU with any anchor.
        best_anchor: ``(M,)`` the index of that anchor.
        best_layer: ``(M,)`` the layer of that anchor (the layer that would take the box), or
            ``None`` when the anchors came without layers.
        num_layers: number of layers (0 without layers).
        threshold: the IoU a box needs to count as covered.
        hist_counts, hist_edges: histogram of ``best_iou`` over [0, 1] (``np.histogram``).
    """

    best_iou: np.ndarray
    best_anchor: np.ndarray
    best_layer: Optional[np.ndarray]
    num_layers: int
    threshold: float
    hist_counts: np.ndarray
    hist_edges: np.ndarray

    @property
    def num_boxes(self) -> int:
        return len(self.best_iou)

    @property
    def covered(self) -> np.ndarray:
        """``(M,)`` bool: the box's best IoU reaches the threshold."""
        return self.best_iou >= self.threshold

    @property
    def coverage(self) -> float:
        """Fraction of boxes covered."""
        return float(self.covered.mean())

    @property
    def mean_iou(self) -> float:
        """Mean best IoU over the boxes."""
        return float(self.best_iou.mean())

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

    def summary(self) -> str:
        """A few lines of text: coverage, mean IoU and, with layers, boxes per layer."""
        lines = [f"{self.num_boxes} boxes: {self.coverage:.1%} have an anchor with IoU >= "
                 f"{self.threshold:g} (mean best IoU {self.mean_iou:.3f})"]
        for k, (n, c) in enumerate(zip(self.layer_counts, self.layer_covered)):
            lines.append(f"  layer {k}: best anchor of {n} boxes, {c} of them covered")
        return "\n".join(lines)


def anchor_coverage(boxes, anchors, layer_of_anchor: Optional[np.ndarray] = None,
                    threshold: float = MATCH_THRESHOLD, bins: int = 20) -> CoverageReport:
    """Coverage of ground truth ``boxes (M, 4)`` by ``anchors (N, 4)`` (normalised corners).

    ``layer_of_anchor`` ``(N,)`` gives each anchor's layer (e.g. from
    :func:`~gluon_ssd.anchors.preset_layer_of_anchor`) to count boxes per layer.
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    boxes = check_boxes(boxes)
    anchors = check_boxes(anchors, "anchors", normalised=False)
    best_iou, best_anchor = best_anchor_iou(boxes, anchors)
    best_layer, num_layers = None, 0
    if layer_of_anchor is not None:
        layer_of_anchor = np.asarray(layer_of_anchor, dtype=np.int64)
        if layer_of_anchor.shape != (len(anchors),):
            raise ValueError(f"layer_of_anchor must have shape ({len(anchors)},), "
                             f"got {layer_of_anchor.shape}")
        best_layer, num_layers = layer_of_anchor[best_anchor], int(layer_of_anchor.max()) + 1
    counts, edges = np.histogram(best_iou, bins=bins, range=(0.0, 1.0))
    return CoverageReport(best_iou, best_anchor, best_layer, num_layers, float(threshold),
                          counts, edges)


def preset_coverage(boxes, spec: AnchorSpec, threshold: float = MATCH_THRESHOLD,
                    bins: int = 20) -> CoverageReport:
    """Coverage of ``boxes (M, 4)`` by all anchors of a preset at ``spec.image_size``, per layer."""
    return anchor_coverage(boxes, preset_anchors(spec), preset_layer_of_anchor(spec),
                           threshold, bins)


# ---------------------------------------------------------------------------------------------
# Suggesting better anchors.

def shape_iou(shapes_a: np.ndarray, shapes_b: np.ndarray) -> np.ndarray:
    """IoU ``(M, K)`` of box shapes ``(M, 2)`` x ``(K, 2)`` (width, height) centred on one point."""
    def centred(wh):
        return np.concatenate([-wh / 2, wh / 2], axis=1)
    return bbox_iou(centred(np.asarray(shapes_a, float)), centred(np.asarray(shapes_b, float)))


def kmeans_shapes(shapes: np.ndarray, k: int, seed: int = 0, max_iter: int = 100) -> np.ndarray:
    """k-means of box shapes ``(M, 2)`` with distance ``1 - shape_iou``: ``(K, 2)`` by area.

    k-means++ seeding from ``np.random.default_rng(seed)``, so the result depends only on the
    inputs and ``seed``. ``K < k`` when there are fewer than ``k`` distinct shapes.
    """
    shapes = np.asarray(shapes, dtype=np.float64)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    rng = np.random.default_rng(seed)
    centres = shapes[[rng.integers(len(shapes))]]
    while len(centres) < k:
        weight = (1 - shape_iou(shapes, centres).max(axis=1)) ** 2
        if weight.sum() <= 0:
            break
        centres = np.vstack([centres, shapes[rng.choice(len(shapes), p=weight / weight.sum())]])
    for _ in range(max_iter):
        assign = shape_iou(shapes, centres).argmax(axis=1)
        updated = np.array([shapes[assign == c].mean(axis=0) if (assign == c).any() else centres[c]
                            for c in range(len(centres))])
        if np.allclose(updated, centres):
            break
        centres = updated
    return centres[np.argsort(centres.prod(axis=1))]


@dataclass(frozen=True, eq=False)
class AnchorSuggestion:
    """A preset's anchors adapted to some boxes, with the coverage before and after.

    Attributes:
        spec: the suggested :class:`AnchorSpec` (the input spec when nothing did better).
        before, after: coverage of the boxes by the input spec and by ``spec``.
        clusters: ``(K, 2)`` k-means box shapes (width, height), normalised, by area.
    """

    spec: AnchorSpec
    before: CoverageReport
    after: CoverageReport
    clusters: np.ndarray

    def summary(self) -> str:
        """Coverage before -> after and the suggested sizes (px) and ratios per layer."""
        lines = [f"coverage {self.before.coverage:.1%} -> {self.after.coverage:.1%} "
                 f"(mean best IoU {self.before.mean_iou:.3f} -> {self.after.mean_iou:.3f})",
                 f"sizes (px): {', '.join(f'{s:.4g}' for s in self.spec.sizes)}"]
        for k, ratios in enumerate(self.spec.ratios):
            lines.append(f"  layer {k} ratios: {', '.join(f'{r:.3g}' for r in ratios)}")
        return "\n".join(lines)


def _layer_of_size(spec_sizes: Sequence[float], sizes: np.ndarray) -> np.ndarray:
    """Layer whose size range ``[s_k, s_{k+1})`` holds each size (smaller -> 0, larger -> last)."""
    return np.searchsorted(np.asarray(spec_sizes[1:-1]), sizes, side="right")


def _extend_ratios(spec: AnchorSpec, clusters: np.ndarray,
                   ratio_tol: float) -> Tuple[Tuple[float, ...], ...]:
    """Each layer's ratios plus the ratios (2 significant digits) of the clusters in its size
    range, skipping those within a factor ``1 + ratio_tol`` of a ratio the layer has."""
    sizes = np.sqrt(clusters.prod(axis=1)) * spec.image_size
    layers = _layer_of_size(spec.sizes, sizes)
    ratios: List[List[float]] = [list(r) for r in spec.ratios]
    for layer, (w, h) in zip(layers, clusters):
        ratio = float(f"{w / h:.2g}")
        if all(abs(math.log(ratio / r)) >= math.log1p(ratio_tol) for r in ratios[layer]):
            ratios[layer].append(ratio)
    return tuple(tuple(r) for r in ratios)


def _fit_sizes(spec: AnchorSpec, clusters: np.ndarray) -> Tuple[float, ...]:
    """The paper's linear scales, spanning the clusters' sizes, as ``m + 1`` sizes in pixels."""
    cluster_sizes = np.sqrt(clusters.prod(axis=1))
    scales = paper_scales(len(spec.feature_maps) + 1, cluster_sizes.min(), cluster_sizes.max())
    return tuple(round(s * spec.image_size, 2) for s in scales)


def suggest_anchors(boxes, spec: AnchorSpec, num_clusters: int = 9, seed: int = 0,
                    threshold: float = MATCH_THRESHOLD,
                    ratio_tol: float = 0.25) -> AnchorSuggestion:
    """Sizes and ratios for ``spec`` that cover ``boxes (M, 4)`` (normalised corners) better.

    The box shapes are clustered (:func:`kmeans_shapes`, deterministic by ``seed``). Candidates
    keep the feature maps and steps and change sizes and/or ratios: sizes refitted to the
    clusters' range with the paper's linear scale, and/or each layer's ratios extended with the
    ratios of the clusters in its size range. The best candidate wins by coverage, then fewer
    anchors, then mean IoU; the input spec is one of them and is kept unless another beats it,
    so coverage never goes down.
    """
    boxes = check_boxes(boxes)
    clusters = kmeans_shapes(boxes[:, 2:] - boxes[:, :2], min(num_clusters, len(boxes)), seed)
    fitted = replace(spec, sizes=_fit_sizes(spec, clusters))
    candidates = [spec, replace(spec, ratios=_extend_ratios(spec, clusters, ratio_tol)),
                  fitted, replace(fitted, ratios=_extend_ratios(fitted, clusters, ratio_tol))]
    reports = {c: preset_coverage(boxes, c, threshold) for c in dict.fromkeys(candidates)}

    def rank(c: AnchorSpec) -> Tuple[float, int, float]:
        return reports[c].coverage, -len(preset_layer_of_anchor(c)), reports[c].mean_iou

    best = max(reports, key=rank)  # the first of equals: the input spec wins ties
    return AnchorSuggestion(best, reports[spec], reports[best], clusters)


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
