"""Default boxes ("anchors") through ``mxnet.contrib.MultiBoxPrior``.

Conventions (every function here):

* Boxes are corners ``xmin, ymin, xmax, ymax``, normalised to [0, 1] by the image width (x) and
  height (y), unless a name says ``px`` (pixels).
* Order: row -> column -> anchor. Anchor ``a`` of cell ``(i, j)`` on an ``H x W`` map is row
  ``(i * W + j) * A + a`` of MultiBoxPrior's ``(1, H*W*A, 4)`` output.
* ``A = len(sizes) + len(ratios) - 1`` anchors per cell. In MXNet 1.9.1, ``ratios[0]`` is applied
  to **every** size and ``ratios[1:]`` only to ``sizes[0]``::

      (sizes[0], ratios[0]), (sizes[1], ratios[0]), ..., (sizes[0], ratios[1]), (sizes[0], ratios[2]) ...

  (Older MXNet ignored ``ratios[0]``, which is what an often quoted forum answer describes.)
* Shape: a box of size ``s`` and ratio ``r`` is ``s * sqrt(r)`` wide and ``s / sqrt(r)`` tall in
  units of the image **height**; the op multiplies normalised widths by ``H / W`` of the map, so on
  a non-square image ``s`` is a fraction of the height and ``r`` is the aspect ratio in pixels.
  ``w * s * sqrt(r)`` as a width in pixels holds only for square inputs. Sizes above 1 are legal
  (boxes larger than the image, e.g. 1.05 on a last layer).
* Centres: cell ``(i, j)`` is centred at ``((j + offsets[1]) * steps[1], (i + offsets[0]) * steps[0])``.
  The default step ``-1`` means ``1 / map size``; SSD passes its own steps so that centres are
  ``(i + 0.5) * step_px / image_size`` as in the paper's code.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import List, Optional, Sequence, Tuple

import mxnet as mx
import numpy as np
from mxnet import gluon

from .presets import AnchorSpec


def check_prior_args(sizes: Sequence[float], ratios: Sequence[float],
                     steps: Optional[Sequence[float]] = None,
                     offsets: Optional[Sequence[float]] = None) -> None:
    """Raise ``ValueError`` naming the argument and value if MultiBoxPrior's arguments are invalid."""
    for name, values in (("sizes", sizes), ("ratios", ratios)):
        values = list(values)
        if not values:
            raise ValueError(f"{name} must not be empty")
        for v in values:
            if not isinstance(v, (int, float, np.floating, np.integer)) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"{name} must be positive numbers, got {v!r} in {values}")
    if steps is not None:
        if len(steps) != 2 or any(not (s == -1 or s > 0) for s in steps):
            raise ValueError(f"steps must be two positive numbers (y, x) or -1, got {tuple(steps)}")
    if offsets is not None:
        if len(offsets) != 2 or any(not 0 <= o <= 1 for o in offsets):
            raise ValueError(f"offsets must be two numbers in [0, 1] (y, x), got {tuple(offsets)}")


def num_anchors(sizes: Sequence[float], ratios: Sequence[float]) -> int:
    """Anchors per feature-map cell: ``len(sizes) + len(ratios) - 1``."""
    return len(sizes) + len(ratios) - 1


def multibox_prior(F, feature, sizes: Sequence[float], ratios: Sequence[float],
                   steps: Sequence[float] = (-1.0, -1.0),
                   offsets: Sequence[float] = (0.5, 0.5)):
    """Anchors of one feature map, ``(1, H*W*A, 4)`` normalised corners, row -> column -> anchor.

    Args:
        F: ``mx.nd`` or ``mx.sym`` (the ``F`` of a HybridBlock).
        feature: ``(B, C, H, W)``; only ``H`` and ``W`` are used.
        sizes, ratios: see the module docstring.
        steps: ``(step_y, step_x)`` between cell centres, normalised; -1 means ``1 / H`` (``1 / W``).
        offsets: ``(offset_y, offset_x)`` of the centre inside a cell, in cells.
    """
    check_prior_args(sizes, ratios, steps, offsets)
    return F.contrib.MultiBoxPrior(feature, sizes=tuple(float(s) for s in sizes),
                                   ratios=tuple(float(r) for r in ratios),
                                   steps=tuple(float(s) for s in steps),
                                   offsets=tuple(float(o) for o in offsets))


def feature_map_anchors(feature_map: Tuple[int, int], sizes: Sequence[float],
                        ratios: Sequence[float], steps: Sequence[float] = (-1.0, -1.0),
                        offsets: Sequence[float] = (0.5, 0.5)) -> np.ndarray:
    """All anchors of one ``(H, W)`` feature map as a numpy ``(H*W*A, 4)`` array."""
    h, w = feature_map
    if h < 1 or w < 1:
        raise ValueError(f"feature_map must be at least 1x1, got {h}x{w}")
    anchors = multibox_prior(mx.nd, mx.nd.zeros((1, 1, h, w)), sizes, ratios, steps, offsets)
    return anchors[0].asnumpy()


@dataclass(frozen=True)
class AnchorShape:
    """Shape of one anchor of a cell (the same for every cell of a map).

    ``width``/``height`` are normalised by the image width/height; ``*_px`` are pixels.
    """

    size: float
    ratio: float
    width: float
    height: float
    width_px: float
    height_px: float


def anchor_shapes(sizes: Sequence[float], ratios: Sequence[float],
                  image_size: Tuple[int, int] = (1, 1)) -> List[AnchorShape]:
    """The ``A`` anchor shapes of a cell, in MultiBoxPrior's order, for an ``(H, W)`` image.

    This is the op's formula written out (``height = s / sqrt(r)``,
    ``width = s * sqrt(r) * H / W``), for tables and teaching; the network uses the op itself.
    """
    check_prior_args(sizes, ratios)
    img_h, img_w = image_size
    pairs = [(s, ratios[0]) for s in sizes] + [(sizes[0], r) for r in ratios[1:]]
    shapes = []
    for s, r in pairs:
        h_px = s / math.sqrt(r) * img_h
        w_px = s * math.sqrt(r) * img_h
        shapes.append(AnchorShape(float(s), float(r), w_px / img_w, h_px / img_h, w_px, h_px))
    return shapes


def format_anchor_table(shapes: Sequence[AnchorShape], layer: Optional[Sequence[int]] = None) -> str:
    """A plain-text table of anchor shapes (one row each; an optional layer column)."""
    head = ["#", "size", "ratio", "width", "height", "width_px", "height_px"]
    if layer is not None:
        head.insert(1, "layer")
    rows = []
    for i, a in enumerate(shapes):
        row = [str(i), f"{a.size:.4g}", f"{a.ratio:.4g}", f"{a.width:.4f}", f"{a.height:.4f}",
               f"{a.width_px:.1f}", f"{a.height_px:.1f}"]
        if layer is not None:
            row.insert(1, str(layer[i]))
        rows.append(row)
    widths = [max(len(r[c]) for r in [head] + rows) for c in range(len(head))]
    return "\n".join("  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in [head] + rows)


# ---------------------------------------------------------------------------------------------
# The paper's parameters <-> MultiBoxPrior's.

def paper_scales(num_layers: int, s_min: float = 0.2, s_max: float = 0.9) -> List[float]:
    """The paper's scales ``s_k = s_min + (s_max - s_min) (k - 1) / (m - 1)``, k = 1 .. m."""
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    if not 0 < s_min <= s_max:
        raise ValueError(f"need 0 < s_min <= s_max, got s_min={s_min}, s_max={s_max}")
    if num_layers == 1:
        return [float(s_min)]
    return [s_min + (s_max - s_min) * k / (num_layers - 1) for k in range(num_layers)]


@dataclass(frozen=True)
class LayerPrior:
    """MultiBoxPrior's arguments for one feature map (normalised units).

    ``extra_sizes``: more sizes, each a MultiBoxPrior call of its own with all ``ratios`` (one call
    gives ``ratios[1:]`` to ``sizes[0]`` only); their anchors follow those of ``sizes`` in a cell.
    """

    sizes: Tuple[float, ...]
    ratios: Tuple[float, ...]
    step: float = -1.0
    offset: float = 0.5
    extra_sizes: Tuple[float, ...] = ()

    @property
    def num_anchors(self) -> int:
        return num_anchors(self.sizes, self.ratios) + len(self.extra_sizes) * len(self.ratios)

    def size_groups(self) -> List[Tuple[Tuple[float, ...], Tuple[float, ...]]]:
        """``(sizes, ratios)`` of each MultiBoxPrior call of a cell, in anchor order."""
        return [(self.sizes, self.ratios)] + [((e,), self.ratios) for e in self.extra_sizes]

    def shapes(self, image_size: Tuple[int, int] = (1, 1)) -> List["AnchorShape"]:
        """The cell's anchor shapes in anchor order (see :func:`anchor_shapes`)."""
        return [a for sizes, ratios in self.size_groups()
                for a in anchor_shapes(sizes, ratios, image_size)]


def paper_to_priors(scales: Sequence[float], aspect_ratios: Sequence[Sequence[float]],
                    steps: Optional[Sequence[float]] = None) -> List[LayerPrior]:
    """Paper parameters -> one :class:`LayerPrior` per layer.

    Args:
        scales: ``m + 1`` scales ``s_1 .. s_{m+1}`` (the last only sets layer m's extra box).
        aspect_ratios: per layer, the paper's ratio set including 1, e.g. ``(1, 2, 1/2)``.
        steps: per layer, normalised steps (default: MultiBoxPrior's ``1 / map size``).

    Layer k gets ``sizes = (s_k, sqrt(s_k * s_{k+1}))`` and ``ratios = (1, other ratios...)``.
    """
    m = len(aspect_ratios)
    if len(scales) != m + 1:
        raise ValueError(f"scales needs {m + 1} values for {m} layers (the last sets s'_m), "
                         f"got {len(scales)}")
    steps = [-1.0] * m if steps is None else list(steps)
    priors = []
    for k in range(m):
        ars = [float(a) for a in aspect_ratios[k]]
        if not any(math.isclose(a, 1.0) for a in ars):
            raise ValueError(f"aspect_ratios[{k}] must contain 1, got {ars}")
        others = tuple(a for a in ars if not math.isclose(a, 1.0))
        sizes = (float(scales[k]), math.sqrt(scales[k] * scales[k + 1]))
        check_prior_args(sizes, (1.0,) + others)
        priors.append(LayerPrior(sizes, (1.0,) + others, float(steps[k])))
    return priors


def priors_to_paper(priors: Sequence[LayerPrior]) -> Tuple[List[float], List[Tuple[float, ...]]]:
    """Inverse of :func:`paper_to_priors`: ``(scales (m + 1), aspect_ratios per layer)``.

    Raises ``ValueError`` for a layer the paper cannot express (not two sizes, or ratios[0] != 1,
    or an extra size that is not the geometric mean of this and the next layer's scale).
    """
    scales, ratios = [], []
    for k, p in enumerate(priors):
        if len(p.sizes) != 2 or p.extra_sizes or not math.isclose(p.ratios[0], 1.0):
            raise ValueError(f"layer {k} (sizes={p.sizes}, ratios={p.ratios}, extra sizes "
                             f"{p.extra_sizes}) is not the paper's form: it needs two sizes, "
                             "no extra ones and ratios[0] == 1")
        scales.append(p.sizes[0])
        ratios.append(tuple(p.ratios))
        if k > 0:
            expected = math.sqrt(scales[k - 1] * p.sizes[0])
            if not math.isclose(priors[k - 1].sizes[1], expected, rel_tol=1e-4):
                raise ValueError(f"layer {k - 1}'s extra size {priors[k - 1].sizes[1]} is not "
                                 f"sqrt(s_{k} * s_{k + 1}) = {expected}")
    scales.append(priors[-1].sizes[1] ** 2 / priors[-1].sizes[0])
    return scales, ratios


def spec_priors(spec: AnchorSpec) -> List[LayerPrior]:
    """The preset's layers as MultiBoxPrior arguments, normalised by ``spec.image_size``."""
    scales = [s / spec.image_size for s in spec.sizes]
    steps = [s / spec.image_size for s in spec.steps]
    priors = paper_to_priors(scales, spec.ratios, steps)
    extras = spec.extra_sizes or ((),) * len(priors)
    return [LayerPrior(p.sizes, p.ratios, p.step, spec.offset,
                       tuple(e / spec.image_size for e in extra))
            for p, extra in zip(priors, extras)]


# ---------------------------------------------------------------------------------------------
# Anchors inside the network.

class AnchorGenerator(gluon.HybridBlock):
    """All default boxes of an SSD, for any input size, inside a hybridized graph.

    An anchor is a *centre* on the feature map's grid plus a *shape* in pixels, each made by
    MultiBoxPrior:

    * centres: MultiBoxPrior on the feature map itself (default steps: cell ``(i, j)`` of an
      ``h x w`` map is centred at ``((j + 0.5) / w, (i + 0.5) / h)``), stretched by the layer's
      constant ``grid_scale = step * map_size / image_size`` of the preset (1.0133 for SSD300's
      38x38 map with step 8), so that at the preset's size the centres are exactly
      ``(i + 0.5) * step / image_size`` as in the paper's code;
    * shapes: MultiBoxPrior on a single cell with the sizes in pixels (``s * sqrt(r)`` wide,
      ``s / sqrt(r)`` tall), divided by the input's width and height.

    On any other input, square or not, the grid spreads over the image the same way and the
    boxes keep their pixel sizes (a 30 px box stays 30 px), as the convolutions see them.

    Forward: ``image (B, 3, H, W)`` and ``*features`` (one ``(B, C, h_k, w_k)`` per layer)
    -> anchors ``(1, N, 4)`` normalised corners, row -> column -> anchor, layers concatenated.
    """

    def __init__(self, spec: AnchorSpec, **kwargs):
        super().__init__(**kwargs)
        self.spec = spec
        self._layers = []
        for k, prior in enumerate(spec_priors(spec)):
            grid_scale = spec.steps[k] * spec.feature_maps[k] / spec.image_size
            groups = [(tuple(s * spec.image_size for s in sizes), ratios)
                      for sizes, ratios in prior.size_groups()]
            self._layers.append((grid_scale, groups))

    @property
    def num_anchors(self) -> List[int]:
        """Anchors per cell of each layer."""
        return [sum(num_anchors(sizes, ratios) for sizes, ratios in groups)
                for _, groups in self._layers]

    def hybrid_forward(self, F, image, *features):
        if len(features) != len(self._layers):
            raise ValueError(f"expected {len(self._layers)} feature maps, got {len(features)}")
        hw = F.cast(F.slice_axis(F.shape_array(image), axis=0, begin=2, end=4), "float32")
        whwh = F.tile(F.reverse(hw, axis=0), reps=(2,)).reshape((1, 1, 1, 4))
        offsets = (self.spec.offset,) * 2
        per_layer = []
        for feature, (grid_scale, groups) in zip(features, self._layers):
            cells = multibox_prior(F, feature, (1.0,), (1.0,), offsets=offsets)  # (1, h*w, 4)
            corners = cells.reshape((1, -1, 2, 2))
            centres = F.tile(F.mean(corners, axis=2), reps=(1, 1, 2)) * grid_scale
            shapes_px = F.concat(*[multibox_prior(F, F.zeros((1, 1, 1, 1)), sizes_px, ratios,
                                                  steps=(1.0, 1.0), offsets=(0.0, 0.0))
                                   for sizes_px, ratios in groups], dim=1)  # (1, A, 4)
            anchors = F.broadcast_add(centres.reshape((1, -1, 1, 4)),
                                      F.broadcast_div(shapes_px.reshape((1, 1, -1, 4)), whwh))
            per_layer.append(anchors.reshape((1, -1, 4)))
        return F.concat(*per_layer, dim=1)


def preset_anchors(spec: AnchorSpec) -> np.ndarray:
    """All anchors of a preset at ``spec.image_size``: numpy ``(N, 4)``, e.g. N = 8732 for SSD300."""
    image = mx.nd.zeros((1, 1, spec.image_size, spec.image_size))
    features = [mx.nd.zeros((1, 1, f, f)) for f in spec.feature_maps]
    generator = AnchorGenerator(spec)
    return generator(image, *features)[0].asnumpy()


def preset_layer_of_anchor(spec: AnchorSpec) -> np.ndarray:
    """For each of the preset's N anchors, the index of its layer: ``(N,)`` int."""
    counts = [f * f * p.num_anchors for f, p in zip(spec.feature_maps, spec_priors(spec))]
    return np.repeat(np.arange(len(counts)), counts)


# ---------------------------------------------------------------------------------------------
# Tables and JSON documents of anchor sets (``gluon-ssd anchors``, the notebooks).

def shapes_on_image(sizes: Sequence[float], ratios: Sequence[float], feature_map: Tuple[int, int],
                    image_size: Tuple[int, int]) -> List[AnchorShape]:
    """The anchor shapes MultiBoxPrior makes on ``feature_map`` ``(H, W)``, with pixel sizes on
    ``image_size`` ``(H, W)``.

    The op scales widths by the *map's* H / W; the pixel columns follow from the normalised
    width/height on the actual image (``anchor_shapes(.., image_size)`` when the aspects match).
    """
    h, w = image_size
    return [replace(a, width_px=a.width * w, height_px=a.height * h)
            for a in anchor_shapes(sizes, ratios, feature_map)]


def preset_table(spec: AnchorSpec) -> str:
    """Anchor shapes of every layer (pixels at ``spec.image_size``), then anchors per layer."""
    side = spec.image_size
    shapes, layer, lines, total = [], [], [], 0
    for k, prior in enumerate(spec_priors(spec)):
        layer_shapes = prior.shapes((side, side))
        shapes += layer_shapes
        layer += [k] * len(layer_shapes)
        f = spec.feature_maps[k]
        total += f * f * len(layer_shapes)
        lines.append(f"layer {k}: {f}x{f} cells x {len(layer_shapes)} anchors "
                     f"= {f * f * len(layer_shapes)}")
    return "\n".join([format_anchor_table(shapes, layer)] + lines + [f"total: {total} anchors"])


def layer_meta(feature_map: Tuple[int, int], sizes: Sequence[float], ratios: Sequence[float],
               steps: Sequence[float], offsets: Sequence[float],
               extra_sizes: Sequence[float] = ()) -> dict:
    """JSON description of one feature map's MultiBoxPrior arguments and anchor counts."""
    per_cell = LayerPrior(tuple(sizes), tuple(ratios), extra_sizes=tuple(extra_sizes)).num_anchors
    meta = {"feature_map": list(feature_map), "sizes": list(sizes), "ratios": list(ratios),
            "steps": list(steps), "offsets": list(offsets), "anchors_per_cell": per_cell,
            "num_anchors": feature_map[0] * feature_map[1] * per_cell}
    return dict(meta, extra_sizes=list(extra_sizes)) if extra_sizes else meta


def anchor_document(anchors: np.ndarray, image_size: Tuple[int, int], layers: Sequence[dict],
                    preset: Optional[str] = None) -> dict:
    """A JSON document of anchors ``(N, 4)`` (normalised corners, MultiBoxPrior's order, rounded
    to 6 decimals), the image size ``(H, W)`` they were drawn on and their layers
    (:func:`layer_meta`)."""
    return {"preset": preset, "image_size": list(image_size), "num_anchors": len(anchors),
            "layers": list(layers), "anchors": np.round(anchors.astype(np.float64), 6).tolist()}


def preset_document(spec: AnchorSpec, preset: Optional[str] = None) -> dict:
    """:func:`anchor_document` of all anchors of a preset at ``spec.image_size``."""
    side = spec.image_size
    layers = [layer_meta((f, f), p.sizes, p.ratios, (p.step, p.step), (p.offset, p.offset),
                         p.extra_sizes)
              for f, p in zip(spec.feature_maps, spec_priors(spec))]
    return anchor_document(preset_anchors(spec), (side, side), layers, preset)
