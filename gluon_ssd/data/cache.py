"""Images kept in memory once decoded or rendered, up to a budget of bytes: a dataset of a few
hundred images is read many times in a run, and later epochs then skip the decoding."""
from __future__ import annotations

from typing import Any, Dict, Hashable, Optional, Tuple

import numpy as np


class ImageCache:
    """Items (an image array first) by key, kept while their images fit in ``cache_mb`` MiB;
    items past the budget are not kept. 0: keep nothing."""

    def __init__(self, cache_mb: float = 0.0):
        if not cache_mb >= 0:
            raise ValueError(f"cache_mb must be >= 0, got {cache_mb}")
        self._items: Dict[Hashable, Tuple[np.ndarray, Any]] = {}
        self._left = int(cache_mb * 2 ** 20)  # bytes of images the cache may still take

    def get(self, key: Hashable) -> Optional[Tuple[np.ndarray, Any]]:
        """The item kept under ``key``, or ``None``."""
        return self._items.get(key)

    def put(self, key: Hashable, item: Tuple[np.ndarray, Any]) -> None:
        """Keep ``item`` (image, anything) if its image fits in what is left of the budget."""
        if key not in self._items and item[0].nbytes <= self._left:
            self._items[key] = item
            self._left -= item[0].nbytes
