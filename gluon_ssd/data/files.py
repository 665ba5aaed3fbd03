"""What the on-disk datasets (:mod:`gluon_ssd.data.datasets`, :mod:`gluon_ssd.data.coco`) share:
items that are image files plus labels read once from the annotations (see
:mod:`gluon_ssd.data.datasets` for the item layout and the handling of bad input)."""
from __future__ import annotations

import logging
import os
from typing import Tuple

import mxnet as mx
import numpy as np

from .cache import ImageCache
from .io import find_unreadable, read_image
from .labels import LoadStats

LOG = logging.getLogger(__name__)


def existing_dir(path: str) -> str:
    """``path`` expanded; ``ValueError`` naming it if it is not a folder."""
    full = os.path.expanduser(path)
    if not os.path.isdir(full):
        raise ValueError(f"dataset folder {full} does not exist")
    return full


class FileDataset:
    """Shared by the on-disk datasets: items are image files plus preloaded labels.

    Subclasses provide ``image_path(idx)``, ``_label(idx)``, ``_size(idx)`` (the image's
    ``(H, W)`` from its annotation) and ``_keep(indices)`` (restrict the dataset to those items),
    and set ``stats``. :meth:`keep_decoded` keeps decoded images in memory.
    """

    stats: LoadStats
    _decoded = ImageCache()

    def keep_decoded(self, cache_mb: float) -> None:
        """From now on keep decoded images in memory, up to ``cache_mb`` MiB (``H * W * 3`` bytes
        each), so that later epochs skip reading and decoding them."""
        self._decoded = ImageCache(cache_mb)

    def __getitem__(self, idx: int) -> Tuple[mx.nd.NDArray, np.ndarray]:
        path = self.image_path(idx)
        item = self._decoded.get(path)
        if item is None:  # truncated files are bad images too
            item = (read_image(path, on_truncated="raise"), None)
            self._decoded.put(path, item)
        # NDArray, as gluoncv's datasets return images
        return mx.nd.array(item[0], dtype="uint8"), self._label(idx).copy()

    def annotation(self, idx: int) -> Tuple[np.ndarray, Tuple[int, int]]:
        """Item ``idx``'s label ``(M, 6)`` (pixels) and its image's ``(H, W)``, without decoding
        the image (the sizes come from the annotations)."""
        return self._label(idx).copy(), self._size(idx)

    def _drop_unreadable(self) -> None:
        """Decode every image once and leave out those that fail (``skip_bad``)."""
        paths = [self.image_path(i) for i in range(len(self))]
        bad = set(find_unreadable(paths))
        self.stats.unreadable.extend(paths[i] for i in sorted(bad))
        self._keep([i for i in range(len(paths)) if i not in bad])

    @property
    def classes(self) -> Tuple[str, ...]:
        """Class names; class id ``k`` is ``classes[k]``."""
        return self._classes

    def _finish_loading(self, source: str, empty_message: str, skip_bad: bool) -> None:
        """After the labels are read: refuse an empty dataset, log the box repairs once, and
        with ``skip_bad`` leave out the images that cannot be decoded."""
        if not self._items:
            raise ValueError(empty_message)
        if skip_bad:
            self._drop_unreadable()
        if self.stats.boxes_clipped or self.stats.boxes_dropped or self.stats.unreadable:
            LOG.warning("%s: %s", source, self.stats.summary())
