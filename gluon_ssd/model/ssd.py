"""The SSD network: features -> convolutional predictors -> raw outputs and anchors."""
from __future__ import annotations

import contextlib
import io
from typing import List, Sequence, Tuple

import mxnet as mx
from mxnet import gluon
from mxnet.gluon import nn

from ..anchors import AnchorGenerator
from ..devices import block_contexts, first_data
from ..presets import ModelSpec
from .backbone import VGG16


def predictor(in_channels: int, channels: int) -> nn.Conv2D:
    """A 3x3 convolutional predictor (the paper's "small kernel" applied at every cell).

    Weights start from N(0, 0.01) and biases from 0, as in the paper's Caffe model: an untrained
    SSD scores every class of every default box alike, so the thousands of background boxes begin
    with a large confidence loss, the imbalance that hard negative mining (``loss.SSDLoss``)
    answers.
    """
    return nn.Conv2D(channels, 3, padding=1, in_channels=in_channels,
                     weight_initializer=mx.init.Normal(0.01), bias_initializer=mx.init.Zero())


def flatten_predictions(F, predictions, last_dim: int):
    """Per-layer ``(B, A*D, h, w)`` maps -> ``(B, N, D)``, rows in anchor order.

    Transposing to ``(B, h, w, A*D)`` before flattening puts the values of cell (i, j) and anchor
    a at row ``(i * w + j) * A + a``: exactly MultiBoxPrior's row -> column -> anchor order.
    """
    flat = [F.flatten(F.transpose(p, (0, 2, 3, 1))) for p in predictions]
    return F.concat(*flat, dim=1).reshape((0, -1, last_dim))


class SSD(gluon.HybridBlock):
    """Single Shot MultiBox Detector.

    Forward ``x (B, 3, H, W)`` (normalised RGB, any H and W) ->

    * ``cls_preds (B, N, C + 1)``: class scores (logits), column 0 = background,
    * ``box_preds (B, N * 4)``: encoded offsets ``(dx, dy, dw, dh)`` of each anchor,
    * ``anchors (1, N, 4)``: default boxes, normalised corners ``xmin, ymin, xmax, ymax``,

    with N anchors in row -> column -> anchor order, layers concatenated. The forward has this one
    output type in training and inference alike; :class:`~gluon_ssd.model.head.DetectionHead`
    turns it into detections.

    Args:
        spec: backbone and anchors.
        classes: names of the C object classes (class id 0 is ``classes[0]``).
        num_devices: the devices a training batch is split over; with BatchNorm and more than
            one, their batch statistics are shared (``SyncBatchNorm``, :mod:`gluon_ssd.devices`).
            Inference on several devices needs no sharing: 1.
    """

    def __init__(self, spec: ModelSpec, classes: Sequence[str], num_devices: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.spec = spec
        self.classes = tuple(classes)
        if not self.classes:
            raise ValueError("classes must name at least one object class")
        self.features = VGG16(spec.backbone, num_devices)
        self.anchor_generator = AnchorGenerator(spec.anchors)
        self.box_predictors = nn.HybridSequential()
        for c, k in zip(self.features.out_channels, self.anchor_generator.num_anchors):
            self.box_predictors.add(predictor(c, 4 * k))
        self.class_predictors = self._class_predictors(len(self.classes))

    @property
    def num_classes(self) -> int:
        """C, the number of object classes (background not counted)."""
        return len(self.classes)

    def _class_predictors(self, num_classes: int) -> nn.HybridSequential:
        seq = nn.HybridSequential()
        for c, k in zip(self.features.out_channels, self.anchor_generator.num_anchors):
            seq.add(predictor(c, k * (num_classes + 1)))
        return seq

    def hybrid_forward(self, F, x):
        features = self.features(x)
        cls_preds = flatten_predictions(
            F, [p(f) for p, f in zip(self.class_predictors, features)], self.num_classes + 1)
        box_preds = flatten_predictions(
            F, [p(f) for p, f in zip(self.box_predictors, features)], 4).reshape((0, -1))
        anchors = self.anchor_generator(x, *features)
        return cls_preds, box_preds, anchors

    def reset_classes(self, classes: Sequence[str], reuse: bool = True) -> None:
        """Replace the class predictors for new ``classes`` (transfer learning).

        With ``reuse``, the weights of the background and of every class whose name is in both the
        old and the new list are copied; other classes start from a fresh initialisation. Call it
        on an initialised network; hybridize again afterwards.
        """
        old_index = {name: i + 1 for i, name in enumerate(self.classes)}
        with self.name_scope():
            new = self._class_predictors(len(classes))
        new.initialize(ctx=block_contexts(self))
        if reuse:
            rows = [0] + [old_index.get(name, -1) for name in classes]
            for old, fresh, k in zip(self.class_predictors, new, self.anchor_generator.num_anchors):
                _copy_class_rows(old, fresh, rows, k)
        self.classes = tuple(classes)
        self.class_predictors = new


def _copy_class_rows(old: nn.Conv2D, new: nn.Conv2D, rows: List[int], anchors: int) -> None:
    """Copy class ``rows[c]`` of the old predictor into class ``c`` of the new, for every anchor
    (channel ``a * (C + 1) + c``); classes with ``rows[c] < 0`` keep their initialisation."""
    keep = [c for c, r in enumerate(rows) if r >= 0]
    for name in ("weight", "bias"):
        src, dst = (first_data(getattr(layer, name)).asnumpy() for layer in (old, new))
        src = src.reshape((anchors, -1) + src.shape[1:])
        out = dst.reshape((anchors, -1) + dst.shape[1:])
        out[:, keep] = src[:, [rows[c] for c in keep]]
        getattr(new, name).set_data(out.reshape(dst.shape))


def min_input_side(spec: ModelSpec, largest: int = 4096) -> int:
    """The smallest side in pixels of a square input the network of ``spec`` takes: below it a
    feature map of the backbone would have no cell (SSD300's last 3x3 layers need 257). Found by
    MXNet's shape inference on the symbolic network, nothing is allocated; ``largest`` if no
    side up to it fits. The network treats height and width alike, so an ``(H, W)`` input fits
    when ``min(H, W)`` does."""
    outputs = mx.sym.Group(list(SSD(spec, ("object",))(mx.sym.var("data"))))

    def fits(side: int) -> bool:
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # MXNet prints failed inferences
                outputs.infer_shape(data=(1, 3, side, side))
            return True
        except mx.base.MXNetError:
            return False

    low, high = 1, largest
    while low < high:  # the sizes that fit are those from the smallest one up
        mid = (low + high) // 2
        low, high = (low, mid) if fits(mid) else (mid + 1, high)
    return low


def check_input_size(spec: ModelSpec, image_size: Tuple[int, int], name: str = "image_size") -> None:
    """``ValueError`` naming ``name`` if ``image_size`` ``(H, W)`` is under the smallest input
    of the network of ``spec`` (:func:`min_input_side`)."""
    side = min_input_side(spec)
    if min(image_size) < side:
        raise ValueError(f"{name} {image_size[0]}x{image_size[1]} is too small for this network: "
                         f"its feature maps need at least {side}x{side} pixels")
