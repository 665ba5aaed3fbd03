"""SyntheticShapes: the embedded default dataset, rendered on the fly with OpenCV.

Each image holds 1-6 filled shapes (circles, squares, triangles, stars, crosses, ...) in random
colours on a cluttered background: a smooth random gradient, blotchy texture, random lines and
pixel noise. Shapes may overlap, but every shape keeps at least ``MIN_VISIBLE`` of its pixels.

Item ``i`` is a pure function of ``(seed, split, i)``: the same in any process, worker or order.

Labels have the layout of :mod:`gluon_ssd.data.labels` (``ignore`` always 0): corner boxes in
continuous pixel coordinates, where pixel ``(row r, col c)`` covers ``[c, c + 1) x [r, r + 1)``.
A box is the tight box of every pixel the shape touched (antialiased edges included), so
``xmax`` is the last column + 1 and boxes lie in ``[0, W] x [0, H]``.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Sequence, Tuple

import cv2
import mxnet as mx
import numpy as np
from mxnet import gluon

from .cache import ImageCache
from .labels import LoadStats, make_label

Contours = List[np.ndarray]  # polygons (K, 2) in unit coordinates, filled with the even-odd rule

SPLITS = {"train": 0, "val": 1}  # a split's code enters the seed: the two splits never share seeds
DEFAULT_CLASSES = ("circle", "square", "triangle", "star", "cross")
DEFAULT_LENGTH = {"train": 5000, "val": 500}
# Object size: the square on the longer box side covers this fraction of the image area
# (22% to 84% of the side of a square image), drawn log-uniformly.
MIN_AREA, MAX_AREA = 0.05, 0.7
MIN_VISIBLE = 0.6  # fraction of a shape's pixels that later shapes must leave uncovered
MAX_OBJECTS = 6
MIN_SIDE = 32  # smallest image side: the smallest shape is then still ~2 px
SIDE_MARGIN = 4  # a shape's extent stays this far below the shorter image side (antialiased edges)
PLACEMENT_TRIALS = 10
NOISE_MARGIN = 64  # the noise bank is this much larger than the image; offsets pick a window


def _regular(n: int, radius: float = 1.0, phase: float = 0.0) -> np.ndarray:
    """Vertices (n, 2) of a regular n-gon of the given circumradius, centred at 0."""
    t = phase + np.arange(n) * (2 * np.pi / n)
    return radius * np.stack([np.cos(t), np.sin(t)], axis=1)


def _star(_: np.random.Generator) -> Contours:
    outer, inner = _regular(5, 1.0, -np.pi / 2), _regular(5, 0.45, -np.pi / 2 + np.pi / 5)
    return [np.stack([outer, inner], axis=1).reshape(-1, 2)]


def _cross(_: np.random.Generator) -> Contours:
    a = 0.3  # half the arm width
    return [np.array([(-a, -1), (a, -1), (a, -a), (1, -a), (1, a), (a, a),
                      (a, 1), (-a, 1), (-a, a), (-1, a), (-1, -a), (-a, -a)], float)]


def _ellipse(rng: np.random.Generator) -> Contours:
    return [_regular(40) * (1.0, rng.uniform(0.35, 0.65))]


# name -> (contours given the image's generator, largest rotation in degrees)
SHAPES: Dict[str, Tuple[Callable[[np.random.Generator], Contours], float]] = {
    "circle": (lambda rng: [_regular(40)], 0.0),
    "square": (lambda rng: [_regular(4, phase=np.pi / 4)], 15.0),
    "triangle": (lambda rng: [_regular(3, phase=-np.pi / 2)], 180.0),
    "star": (_star, 180.0),
    "cross": (_cross, 15.0),
    "ellipse": (_ellipse, 180.0),
    "hexagon": (lambda rng: [_regular(6)], 180.0),
    "ring": (lambda rng: [_regular(40), _regular(40, 0.55)], 0.0),
}


class SyntheticShapes(gluon.data.Dataset):
    """Random shapes on cluttered backgrounds, generated deterministically per index.

    Args:
        length: number of items.
        size: image ``(height, width)`` in pixels, square or not, each side >= ``MIN_SIDE``.
        split: ``"train"`` or ``"val"``; the splits draw from disjoint seeds, so the validation
            images are fixed and never seen in training.
        seed: base seed; item ``i`` depends only on ``(seed, split, i)``.
        classes: shape names, a subset of :data:`SHAPES`; class id = position in this tuple.
        cache_mb: keep rendered items in memory, up to this many MiB of images (``H * W * 3``
            bytes each: 5000 demo images of 192x192 take 527 MiB); later epochs then skip the
            rendering (see ``benchmarks/README.md`` for what that saves). 0: render every time.
            Items past the budget are rendered every time.

    Item ``i`` is ``(image, label)``: ``image`` an ``mx.nd.NDArray`` ``(H, W, 3)`` uint8 RGB (as
    gluoncv's datasets return), ``label`` a float32 numpy array ``(M, 6)``, ``1 <= M <= 6``, rows
    ``[xmin, ymin, xmax, ymax, class_id, 0]`` in continuous pixels (see the module docstring). The
    square on the longer side of each box covers ``[MIN_AREA, MAX_AREA]`` of the image area
    (+-2 px of antialiasing on the side), and fits inside the image.
    """

    def __init__(self, length: int = DEFAULT_LENGTH["train"], size: Tuple[int, int] = (192, 192),
                 split: str = "train", seed: int = 0,
                 classes: Sequence[str] = DEFAULT_CLASSES, cache_mb: float = 0.0):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
        unknown = [c for c in classes if c not in SHAPES]
        if unknown or not classes:
            raise ValueError(f"unknown shapes {unknown}; choose from {sorted(SHAPES)}")
        if min(size) < MIN_SIDE:
            raise ValueError(f"image sides must be at least {MIN_SIDE} pixels, got {size}")
        self._length = int(length)
        self.size = (int(size[0]), int(size[1]))
        self.split = split
        self.seed = int(seed)
        self.classes = tuple(classes)
        self.stats = LoadStats()  # nothing is ever clipped or skipped; kept for a uniform API
        self._cache = ImageCache(cache_mb)
        noise_rng = np.random.default_rng([self.seed, 2 ** 16])
        bank_shape = (self.size[0] + NOISE_MARGIN, self.size[1] + NOISE_MARGIN, 3)
        # uint8 noise around 128, so that adding it is one saturating cv2.addWeighted
        self._noise = np.clip(noise_rng.normal(128, 16, bank_shape), 0, 255).astype(np.uint8)

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, idx: int) -> Tuple[mx.nd.NDArray, np.ndarray]:
        if not 0 <= idx < self._length:
            raise IndexError(f"index {idx} out of range for {self._length} items")
        item = self._cache.get(idx)
        if item is None:
            item = self.render(idx)
            self._cache.put(idx, item)
        image, label = item
        return mx.nd.array(image, dtype="uint8"), label.copy()

    def annotation(self, idx: int) -> Tuple[np.ndarray, Tuple[int, int]]:
        """Item ``idx``'s label ``(M, 6)`` (pixels) and the image's ``(H, W)``; renders the
        item unless it is cached (its boxes are where the shapes landed)."""
        item = self._cache.get(idx)
        return (item[1] if item is not None else self.render(idx)[1]).copy(), self.size

    def render(self, idx: int) -> Tuple[np.ndarray, np.ndarray]:
        """Item ``idx`` as numpy: image ``(H, W, 3)`` uint8 RGB, label ``(M, 6)`` float32 pixels."""
        rng = np.random.default_rng([self.seed, SPLITS[self.split], idx])
        canvas = _background(rng, self.size)
        owner = np.full(self.size, -1, np.int16)  # index of the topmost shape at each pixel
        areas: List[int] = []
        visible: List[int] = []
        boxes, class_ids = [], []
        for _ in range(rng.integers(1, MAX_OBJECTS + 1)):
            cls = int(rng.integers(len(self.classes)))
            alpha = self._shape_mask(rng, self.classes[cls])
            placed = _place(rng, alpha, owner, areas, visible)
            if placed is None:
                continue
            x, y = placed
            h, w = alpha.shape
            _paint(rng, canvas[y:y + h, x:x + w], alpha)
            boxes.append((x, y, x + w, y + h))
            class_ids.append(cls)
        _draw_lines(rng, canvas, int(rng.integers(0, 3)))  # clutter in front of the shapes too
        return self._add_noise(rng, canvas), make_label(boxes, class_ids)

    def _shape_mask(self, rng: np.random.Generator, name: str) -> np.ndarray:
        """Antialiased mask (h, w) uint8 of one shape, cropped to its tight box."""
        make, max_rotation = SHAPES[name]
        area = np.exp(rng.uniform(np.log(MIN_AREA), np.log(MAX_AREA)))
        extent = min(np.sqrt(area * self.size[0] * self.size[1]), min(self.size) - SIDE_MARGIN)
        theta = np.deg2rad(rng.uniform(-max_rotation, max_rotation))
        rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
        contours = [c @ rotation.T for c in make(rng)]
        points = np.concatenate(contours)
        low = points.min(axis=0)
        scale = (extent - 1) / (points.max(axis=0) - low).max()  # antialiasing adds ~1 px
        pad = 2
        mask = np.zeros((int(np.ceil(extent)) + 2 * pad,) * 2, np.uint8)
        fixed = [np.round(((c - low) * scale + pad) * 16).astype(np.int32) for c in contours]
        cv2.fillPoly(mask, fixed, 255, cv2.LINE_AA, 4)
        x, y, w, h = cv2.boundingRect(mask)
        return mask[y:y + h, x:x + w]

    def _add_noise(self, rng: np.random.Generator, canvas: np.ndarray) -> np.ndarray:
        """``canvas`` plus a random window of the fixed noise bank at a random strength."""
        h, w = self.size
        oy, ox = rng.integers(NOISE_MARGIN, size=2)
        strength = rng.uniform(0.2, 1.2)
        window = self._noise[oy:oy + h, ox:ox + w]
        return cv2.addWeighted(canvas, 1.0, window, strength, -128.0 * strength, dtype=cv2.CV_8U)


def _background(rng: np.random.Generator, size: Tuple[int, int]) -> np.ndarray:
    """A cluttered background (H, W, 3) uint8: smooth gradient + blotches + random lines."""
    h, w = size
    gradient = cv2.resize(rng.integers(0, 256, (3, 3, 3), dtype=np.uint8), (w, h),
                          interpolation=cv2.INTER_LINEAR)
    cells = (max(2, h // int(rng.integers(8, 32))), max(2, w // int(rng.integers(8, 32))))
    blotches = cv2.resize(rng.integers(0, 256, cells + (3,), dtype=np.uint8), (w, h),
                          interpolation=cv2.INTER_CUBIC)
    image = cv2.addWeighted(gradient, 0.7, blotches, 0.3 * rng.uniform(0.2, 1.0), 0)
    _draw_lines(rng, image, int(rng.integers(2, 10)))
    return image


def _draw_lines(rng: np.random.Generator, image: np.ndarray, count: int) -> None:
    """Draw ``count`` random lines (random colour, 1-3 px) onto ``image`` (H, W, 3) in place."""
    h, w = image.shape[:2]
    params = rng.integers(0, 256, (count, 8)).tolist()
    for x0, y0, x1, y1, r, g, b, thickness in params:
        points = (x0 * w // 256, y0 * h // 256), (x1 * w // 256, y1 * h // 256)
        cv2.line(image, *points, (r, g, b), 1 + thickness % 3, cv2.LINE_AA)


def _place(rng: np.random.Generator, alpha: np.ndarray, owner: np.ndarray, areas: List[int],
           visible: List[int]):
    """Find a top-left ``(x, y)`` for the mask that leaves every earlier shape enough visible.

    Updates ``owner`` (topmost shape per pixel), ``areas`` and ``visible`` (pixel counts per
    shape) on success; returns ``None`` when no trial fits.
    """
    h, w = alpha.shape
    solid = alpha > 127
    area = int(solid.sum())
    for _ in range(PLACEMENT_TRIALS):
        x = int(rng.integers(owner.shape[1] - w + 1))
        y = int(rng.integers(owner.shape[0] - h + 1))
        window = owner[y:y + h, x:x + w]
        covered = window[solid]
        lost = np.bincount(covered[covered >= 0], minlength=len(areas))
        left = np.array(visible, np.int64) - lost
        if np.all(left >= MIN_VISIBLE * np.array(areas)):
            window[solid] = len(areas)
            visible[:] = left.tolist() + [area]
            areas.append(area)
            return x, y
    return None


def _paint(rng: np.random.Generator, region: np.ndarray, alpha: np.ndarray) -> None:
    """Blend into ``region`` (h, w, 3 uint8, in place) through ``alpha`` (h, w uint8) the one of
    three random colours that differs most from the region's mean colour under the shape."""
    local = np.array(cv2.mean(region, mask=alpha)[:3])
    candidates = rng.integers(0, 256, (3, 3))
    colour = candidates[np.abs(candidates - local).sum(axis=1).argmax()]
    weight = alpha.astype(np.float32) * np.float32(1 / 255)
    solid = np.empty_like(region)
    solid[:] = colour
    region[:] = cv2.blendLinear(solid, region, weight, 1 - weight)


__all__ = ["SyntheticShapes", "SHAPES", "DEFAULT_CLASSES", "DEFAULT_LENGTH", "SPLITS"]
