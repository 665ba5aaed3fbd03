"""The SSD loss: softmax cross-entropy with hard negative mining, plus smooth L1 on boxes.

``L = (L_conf + alpha * L_loc) / N_pos`` (the paper's eq. 1), ``N_pos`` the matched anchors of the
batch (at least 1, so a batch without objects divides by one, never by zero).

Hard negative mining is done here, in the loss, not by MultiBoxTarget: the op can only rank
negatives by a class-score input at target time, while here they are ranked by the loss they
actually incur, in the same graph that is differentiated; and targets can then be computed once
per batch without predictions. Per image, the ``negative_ratio * P`` background anchors with the
highest confidence loss are kept (P = its positives), at least ``min_negatives`` so that images
without objects still teach background. Anchors whose target is ``-1`` (ignore) are never
negatives: they take part in no loss term.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import mxnet as mx


@dataclass
class LossParts:
    """The loss and its parts, each a scalar NDArray (already divided by ``num_positives``)."""

    total: mx.nd.NDArray
    confidence: mx.nd.NDArray
    localization: mx.nd.NDArray
    num_positives: float
    num_negatives: float


def confidence_loss(cls_preds: mx.nd.NDArray, cls_target: mx.nd.NDArray) -> mx.nd.NDArray:
    """Softmax cross-entropy of each anchor against its target class: ``(B, N)``.

    ``cls_preds (B, N, C+1)`` logits; ``cls_target (B, N)`` with 0 background, ``class + 1``
    positive and -1 ignore (scored as background here; the loss masks ignored anchors out).
    """
    log_prob = mx.nd.log_softmax(cls_preds, axis=-1)
    return -mx.nd.pick(log_prob, mx.nd.maximum(cls_target, 0), axis=-1)


def hard_negative_mask(conf_loss: mx.nd.NDArray, cls_target: mx.nd.NDArray,
                       negative_ratio: float, min_negatives: int) -> mx.nd.NDArray:
    """Which anchors are kept negatives: ``(B, N)`` 0/1.

    Args:
        conf_loss: ``(B, N)`` cross-entropy of each anchor against its target (background for
            negatives).
        cls_target: ``(B, N)`` 0 background, > 0 positive, -1 ignore.
    """
    negative = cls_target == 0
    num_pos = (cls_target > 0).sum(axis=1, keepdims=True)
    quota = mx.nd.maximum(num_pos * negative_ratio, min_negatives)
    ranked = mx.nd.where(negative, conf_loss, mx.nd.ones_like(conf_loss) * -1e30)
    order = ranked.argsort(axis=1, is_ascend=False)
    rank = order.argsort(axis=1)  # rank of each anchor's loss among the image's negatives
    return negative * mx.nd.broadcast_lesser(rank, quota)


class SSDLoss:
    """Compute :class:`LossParts` from SSD outputs and MultiBoxTarget targets.

    Args:
        negative_ratio: negatives kept per positive (3 in the paper).
        min_negatives: negatives kept in an image with few or no positives.
        alpha: weight of the localization loss.
        mining: False keeps every background anchor (the ablation without hard negative mining).

    Call with ``cls_preds (B, N, C+1)`` logits, ``box_preds (B, N*4)``, and the targets
    ``cls_target (B, N)``, ``loc_target (B, N*4)``, ``loc_mask (B, N*4)``; ``num_positives``
    divides instead of these images' own positives: on one device's part of a batch split over
    several, the whole batch's, so that the parts' losses add up to the whole batch's.
    """

    def __init__(self, negative_ratio: float = 3.0, min_negatives: int = 16, alpha: float = 1.0,
                 mining: bool = True):
        self.negative_ratio = negative_ratio
        self.min_negatives = min_negatives
        self.alpha = alpha
        self.mining = mining

    def __call__(self, cls_preds, box_preds, cls_target, loc_target, loc_mask,
                 num_positives: Optional[float] = None) -> LossParts:
        conf_loss = confidence_loss(cls_preds, cls_target)  # (B, N)
        positive = cls_target > 0
        if self.mining:
            negative = hard_negative_mask(conf_loss.detach(), cls_target, self.negative_ratio,
                                          self.min_negatives)
        else:
            negative = cls_target == 0
        num_pos = positive.sum()
        norm = mx.nd.maximum(num_pos, 1) if num_positives is None else max(num_positives, 1.0)
        confidence = (conf_loss * (positive + negative)).sum() / norm
        localization = (mx.nd.smooth_l1(box_preds - loc_target, scalar=1.0) * loc_mask).sum() / norm
        return LossParts(confidence + self.alpha * localization, confidence, localization,
                         float(num_pos.asscalar()), float(negative.sum().asscalar()))


def sum_parts(parts) -> LossParts:
    """The :class:`LossParts` of a batch from those of its parts on several devices (each
    divided by the whole batch's positives, so they add up), on the first part's device."""
    device = parts[0].total.context

    def total(name: str) -> mx.nd.NDArray:
        return mx.nd.add_n(*[getattr(p, name).as_in_context(device) for p in parts])

    return LossParts(total("total"), total("confidence"), total("localization"),
                     sum(p.num_positives for p in parts), sum(p.num_negatives for p in parts))
