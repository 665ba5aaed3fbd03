"""VGG16 as SSD uses it: the multi-scale feature extractor.

conv1 .. conv5 (3x3 convolutions, max pools with ceil rounding so 300 -> 150 -> 75 -> 38), pool5 as
3x3 stride 1, fc6 as a 3x3 convolution with dilation 6 ("atrous"), fc7 as a 1x1 convolution, an
L2 normalisation with a learnable per-channel scale on conv4_3, then the extra layers.
Outputs one feature map per detection layer: conv4_3 (normalised), fc7, then each extra layer.
"""
from __future__ import annotations

import functools
from typing import List

import mxnet as mx
from mxnet import gluon
from mxnet.gluon import nn

from ..devices import batch_norm_layer
from ..presets import BackboneSpec


def scaled(channels: int, width: float) -> int:
    """Channels after the width multiplier (at least 8)."""
    return max(8, int(round(channels * width)))


def conv_block(in_channels: int, channels: int, kernel: int, stride: int = 1, padding: int = 0,
               dilation: int = 1, batch_norm: bool = False, num_devices: int = 1
               ) -> List[gluon.HybridBlock]:
    """Convolution (+ BatchNorm, shared over ``num_devices``) + ReLU, as a list of layers (all
    shapes known: no deferred init)."""
    layers = [nn.Conv2D(channels, kernel, stride, padding, dilation=dilation,
                        use_bias=not batch_norm, in_channels=in_channels,
                        weight_initializer=mx.init.Xavier(rnd_type="gaussian",
                                                          factor_type="out", magnitude=2))]
    if batch_norm:
        layers.append(batch_norm_layer(channels, num_devices))
    layers.append(nn.Activation("relu"))
    return layers


def sequential(layers) -> nn.HybridSequential:
    seq = nn.HybridSequential()
    seq.add(*layers)
    return seq


class L2Norm(gluon.HybridBlock):
    """Per-position L2 normalisation across channels times a learnable per-channel scale.

    ``(B, C, H, W) -> (B, C, H, W)``; the scale ``(1, C, 1, 1)`` starts at ``initial`` (20 in
    the paper, which brings conv4_3's small activations to the scale of the other layers).
    """

    def __init__(self, channels: int, initial: float = 20.0, eps: float = 1e-5, **kwargs):
        super().__init__(**kwargs)
        self.eps = eps
        self.scale = self.params.get("scale", shape=(1, channels, 1, 1),
                                     init=mx.init.Constant(initial))

    def hybrid_forward(self, F, x, scale):
        return F.broadcast_mul(F.L2Normalization(x, mode="channel", eps=self.eps), scale)


# VGG16's max pools, pool1 .. pool5: (kernel, stride, padding, round up). pool1-4 halve the map,
# rounding up (MXNet's "full" convention: 300 -> 150 -> 75 -> 38 -> 19); pool5 keeps its size
# (3x3, stride 1, padding 1), as SSD changed it for the atrous fc6.
POOLS = ((2, 2, 0, True), (2, 2, 0, True), (2, 2, 0, True), (2, 2, 0, True), (3, 1, 1, False))


class VGG16(gluon.HybridBlock):
    """SSD's VGG16 base plus extra layers.

    Input ``(B, 3, H, W)``, normalised RGB (see ``ModelSpec.mean/std``), multiplied first by the
    constant ``input_scale`` ``(1, 3, 1, 1)`` (ones for gluon-ssd's and ImageNet-VGG weights;
    ``std * 255`` for Caffe-converted weights such as GluonCV's ``vgg16_atrous``, which expect
    0..255 inputs minus the mean). Output: list of feature maps, conv4_3 (L2-normalised), fc7,
    then one per extra layer; for SSD300 at 300x300 they are 38, 19, 10, 5, 3 and 1 cells wide.
    ``out_channels`` lists their channels.
    """

    def __init__(self, spec: BackboneSpec, num_devices: int = 1, **kwargs):
        super().__init__(**kwargs)
        w = spec.width
        block = functools.partial(conv_block, batch_norm=spec.batch_norm, num_devices=num_devices)
        self.input_scale = self.params.get_constant("input_scale", mx.nd.ones((1, 3, 1, 1)))
        self.stages = nn.HybridSequential()
        c_in = 3
        for num_convs, channels in zip(spec.layers, spec.filters):
            layers = []
            for _ in range(num_convs):
                layers += block(c_in, scaled(channels, w), 3, padding=1)
                c_in = scaled(channels, w)
            self.stages.add(sequential(layers))
        conv4_3 = scaled(spec.filters[3], w)
        fc = scaled(spec.fc_channels, w)
        self.fc6 = sequential(block(c_in, fc, 3, padding=6, dilation=6))
        self.fc7 = sequential(block(fc, fc, 1))
        self.conv4_3_norm = L2Norm(conv4_3)
        self.extras = nn.HybridSequential()
        c_in, self.out_channels = fc, [conv4_3, fc]
        for first, second in spec.extras:
            mid, out = scaled(first[0], w), scaled(second[0], w)
            self.extras.add(sequential(block(c_in, mid, *first[1:])
                                       + block(mid, out, *second[1:])))
            c_in = out
            self.out_channels.append(out)

    def hybrid_forward(self, F, x, input_scale):
        x = F.broadcast_mul(x, input_scale)
        for k, stage in enumerate(self.stages[:3]):
            x = self._pool(F, stage(x), k)
        x = self.stages[3](x)
        features = [self.conv4_3_norm(x)]
        x = self._pool(F, self.stages[4](self._pool(F, x, 3)), 4)
        x = self.fc7(self.fc6(x))
        features.append(x)
        for extra in self.extras:
            x = extra(x)
            features.append(x)
        return features

    @staticmethod
    def _pool(F, x, index: int):
        """Max pool ``index`` of :data:`POOLS` (pool1 is 0)."""
        kernel, stride, padding, round_up = POOLS[index]
        return F.Pooling(x, pool_type="max", kernel=(kernel, kernel), stride=(stride, stride),
                         pad=(padding, padding), pooling_convention="full" if round_up else "valid")
