"""The label layout of every dataset item, named in one place, and the box sanitising shared by
the datasets.

An item's label is a float32 numpy array ``(M, WIDTH)`` = ``(M, 6)``, one row per object::

    xmin, ymin, xmax, ymax, class_id, ignore

- ``BOX`` (columns 0-3): corner format in continuous pixel coordinates of the original image,
  where pixel ``(row r, col c)`` covers ``[c, c + 1) x [r, r + 1)``; boxes lie in
  ``[0, W] x [0, H]``.
- ``CLASS`` (column 4): class id ``k`` names ``dataset.classes[k]`` (ids start at 0).
- ``IGNORE`` (column 5): VOC's ``difficult`` / COCO's ``iscrowd`` flag, 1 for boxes that
  evaluation counts neither as missed nor as false positives; 0 otherwise (always 0 for
  :class:`~gluon_ssd.data.synthetic.SyntheticShapes`).

Class ids index a class list, so two class lists must agree name for name and in order
(:func:`check_classes`: a model and a dataset, a training and a validation split).

``M`` may be 0 (shape ``(0, 6)``). Batches pad labels to ``(B, M, 6)``
with rows of ``PAD`` (-1): a row is an object iff its class id is ``>= 0`` (:func:`is_object`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..boxes import to_normalised

BOX = slice(0, 4)
CLASS = 4
IGNORE = 5
WIDTH = 6
COLUMNS = ("xmin", "ymin", "xmax", "ymax", "class_id", "ignore")
PAD = -1.0  # value of every column in the padding rows of a batch


@dataclass
class LoadStats:
    """What loading had to repair or leave out, for the training log.

    Attributes:
        boxes_clipped: boxes that reached outside the image and were clipped to it.
        boxes_dropped: boxes without area (inverted, degenerate or wholly outside the image).
        unreadable: paths of images that could not be decoded (or are truncated) and were skipped.
    """

    boxes_clipped: int = 0
    boxes_dropped: int = 0
    unreadable: List[str] = field(default_factory=list)

    def sanitize(self, label: np.ndarray, width: float, height: float) -> np.ndarray:
        """:func:`sanitize_boxes`, adding its counts here; returns the kept rows."""
        kept, clipped, dropped = sanitize_boxes(label, width, height)
        self.boxes_clipped += clipped
        self.boxes_dropped += dropped
        return kept

    def summary(self) -> str:
        """One line, e.g. ``"3 boxes clipped, 1 dropped, 0 unreadable images skipped"``."""
        return (f"{self.boxes_clipped} boxes clipped, {self.boxes_dropped} dropped, "
                f"{len(self.unreadable)} unreadable images skipped")


def make_label(boxes, class_ids, ignore=None) -> np.ndarray:
    """Assemble a label ``(M, WIDTH)`` float32.

    Args:
        boxes: ``(M, 4)`` corner boxes in pixels.
        class_ids: ``(M,)`` class ids.
        ignore: ``(M,)`` flags; default all 0.
    """
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    label = np.zeros((len(boxes), WIDTH), np.float32)
    label[:, BOX] = boxes
    label[:, CLASS] = np.asarray(class_ids, np.float32).reshape(-1)
    if ignore is not None:
        label[:, IGNORE] = np.asarray(ignore, np.float32).reshape(-1)
    return label


def is_object(labels: np.ndarray) -> np.ndarray:
    """Boolean mask of the real objects (not padding rows) of labels ``(..., WIDTH)``."""
    return np.asarray(labels)[..., CLASS] >= 0


def sanitize_boxes(label: np.ndarray, width: float, height: float) -> Tuple[np.ndarray, int, int]:
    """Clip boxes to the image and drop those without area.

    Args:
        label: ``(M, 4+)`` rows whose ``BOX`` columns are ``[xmin, ymin, xmax, ymax]`` in pixels;
            the other columns are kept.
        width, height: the image size in pixels.

    Returns:
        ``(kept (K, 4+), n_clipped, n_dropped)``; a dropped box is not counted as clipped.
    """
    label = np.asarray(label, np.float32)
    given = label[:, BOX]
    limits = np.array([width, height, width, height], np.float32)
    boxes = np.clip(given, 0, limits)
    valid = (boxes[:, 0] < boxes[:, 2]) & (boxes[:, 1] < boxes[:, 3])
    valid &= (given[:, 0] < given[:, 2]) & (given[:, 1] < given[:, 3])
    clipped = np.any(boxes != given, axis=1) & valid
    kept = label.copy()
    kept[:, BOX] = boxes
    return kept[valid], int(clipped.sum()), int((~valid).sum())


def check_classes(expected: Sequence[str], expected_what: str, found: Sequence[str],
                  found_what: str) -> None:
    """``ValueError`` unless ``found`` is the class list ``expected`` (the same names in the
    same order: class ids index them), naming both, e.g. ``"{expected_what} 2 classes ['cat',
    'dog'], but {found_what} 2 classes ['dog', 'cat'] (the same names in another order)"``.
    Training checks its validation split with it, ``evaluate`` a dataset against a model."""
    if tuple(found) != tuple(expected):
        order = " (the same names in another order)" if sorted(found) == sorted(expected) else ""
        raise ValueError(f"{expected_what} {len(expected)} classes {list(expected)}, but "
                         f"{found_what} {len(found)} classes {list(found)}{order}")


def dataset_boxes(dataset, name: str, progress: bool = False,
                  max_images: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Every object box of ``dataset`` as normalised corners ``(N, 4)`` (divided by its image's
    width and height: the network-input frame, as the model resizes without keeping the aspect)
    and its class id ``(N,)``, read from the annotations without decoding images (the dataset's
    ``annotation(idx)``; SyntheticShapes renders). ``progress``: a tqdm bar (on a terminal);
    ``max_images``: read only that many images, evenly spaced (an estimate, for large or rendered
    datasets).

    ``ValueError`` naming the dataset (``name``) if it has no box at all."""
    from tqdm import tqdm

    indices = range(len(dataset))
    if max_images is not None and len(dataset) > max_images:
        indices = np.unique(np.linspace(0, len(dataset) - 1, max_images).round().astype(int))
    boxes, class_ids = [], []
    # a bar on a terminal only: a log or a captured stream gets no bar lines
    for idx in tqdm(indices, desc="reading boxes", disable=None if progress else True,
                    leave=False):
        label, size = dataset.annotation(idx)
        label = label[is_object(label)]
        boxes.append(np.clip(to_normalised(label[:, BOX], size), 0.0, 1.0))
        class_ids.append(label[:, CLASS].astype(np.int64))
    if not sum(map(len, boxes)):
        raise ValueError(f"{name} has no object boxes in its {len(indices)} images: there is "
                         "nothing to detect (check its annotation files)")
    return np.concatenate(boxes), np.concatenate(class_ids)


__all__ = ["BOX", "CLASS", "IGNORE", "WIDTH", "COLUMNS", "PAD", "LoadStats", "make_label",
           "is_object", "sanitize_boxes", "check_classes", "dataset_boxes"]
