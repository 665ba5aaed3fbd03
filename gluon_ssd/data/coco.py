"""COCO-format datasets (COCO itself, or a folder of a user's own in its layout), through
``gluoncv.data.COCODetection``; items as :mod:`gluon_ssd.data.datasets` describes them: COCO's
``[x, y, w, h]`` becomes ``[x, y, x + w, y + h]``, the ``iscrowd`` flag the ``ignore`` column."""
from __future__ import annotations

import contextlib
import io
import os
from typing import List, Tuple

import numpy as np
from gluoncv.data import COCODetection

from .annotations import inside, read_coco
from .files import FileDataset, existing_dir
from .labels import WIDTH, LoadStats

DEFAULT_COCO_ROOT = os.path.join("~", ".mxnet", "datasets", "coco")
COCO_SPLITS = {"train": "train2017", "val": "val2017"}


class COCODataset(FileDataset, COCODetection):
    """A COCO-format dataset, one split: labels ``(M, 6)`` with ``iscrowd``.

    Layout: ``root/annotations/instances_{split}.json`` and the images under ``root/{split}/``
    (``file_name`` of each image entry). Classes are the json's categories in id order (the 80
    COCO names for COCO itself); ``contiguous_id_to_json`` maps class ids back to category ids.
    Every image is kept, also those without objects (labels ``(0, 6)``), in image-id order, so
    ``coco`` (the pycocotools object) matches the dataset for evaluation.

    Args:
        root: the dataset folder.
        split: e.g. ``"train2017"``, ``"val2017"``.
        skip_bad: leave out images that cannot be decoded.
    """

    def __init__(self, root: str = DEFAULT_COCO_ROOT, split: str = "val2017",
                 skip_bad: bool = False):
        root = existing_dir(root)
        self._json = os.path.join(root, "annotations", f"instances_{split}.json")
        if not os.path.isfile(self._json):
            raise ValueError(f"COCO annotation file {self._json} does not exist")
        self._split_dir = split
        self._api = _load_coco(self._json)
        category_ids = sorted(self._api.getCatIds())
        self._classes = tuple(c["name"] for c in self._api.loadCats(category_ids))
        self.stats = LoadStats()
        super().__init__(root=root, splits=(f"instances_{split}",), skip_empty=False)
        self.index_map = {name: i for i, name in enumerate(self._classes)}
        self._finish_loading(self._json, f"COCO annotation file {self._json} lists no images",
                             skip_bad)

    def image_path(self, idx: int) -> str:
        """Path of item ``idx``'s image."""
        return self._items[idx]

    def _label(self, idx: int) -> np.ndarray:
        return self._labels[idx]

    def _size(self, idx: int) -> Tuple[int, int]:
        return self._sizes[idx]

    def _keep(self, indices: List[int]) -> None:
        self._items = [self._items[i] for i in indices]
        self._labels = [self._labels[i] for i in indices]
        self._sizes = [self._sizes[i] for i in indices]
        self._im_aspect_ratios = [self._im_aspect_ratios[i] for i in indices]

    def _parse_image_path(self, entry: dict) -> str:
        """The image's path; ``ValueError`` if its ``file_name`` leaves the dataset folder."""
        return inside(self._root, self._split_dir, entry["file_name"],
                      f"{self._json}: image {entry['id']}")

    def _load_jsons(self):
        """Image paths, labels ``(M, 6)`` and aspect ratios of every image, by image id."""
        self._coco = [self._api]
        category_ids = sorted(self._api.getCatIds())
        self.json_id_to_contiguous = {c: i for i, c in enumerate(category_ids)}
        self.contiguous_id_to_json = dict(enumerate(category_ids))
        entries = self._api.loadImgs(sorted(self._api.getImgIds()))
        items = [self._parse_image_path(e) for e in entries]
        labels = [self._image_label(e) for e in entries]
        self._sizes = [(int(e["height"]), int(e["width"])) for e in entries]
        return items, labels, [e["width"] / e["height"] for e in entries]

    def _image_label(self, entry: dict) -> np.ndarray:
        """Labels ``(M, 6)`` float32 ``[x, y, x + w, y + h, class_id, iscrowd]`` of one image."""
        rows = []
        for obj in self._api.loadAnns(self._api.getAnnIds(imgIds=[entry["id"]], iscrowd=None)):
            if obj.get("ignore", 0):
                continue
            if obj["category_id"] not in self.json_id_to_contiguous:
                raise ValueError(f"{self._json}: annotation {obj.get('id')} has category_id "
                                 f"{obj['category_id']}, not among the categories")
            x, y, w, h = obj["bbox"]
            rows.append([x, y, x + w, y + h, self.json_id_to_contiguous[obj["category_id"]],
                         obj.get("iscrowd", 0)])
        label = np.array(rows, np.float32).reshape(-1, WIDTH)
        return self.stats.sanitize(label, entry["width"], entry["height"])


def _load_coco(path: str):
    """A pycocotools ``COCO`` object for the json at ``path``, checked first
    (:func:`~gluon_ssd.data.annotations.read_coco`; pycocotools' progress prints silenced)."""
    from pycocotools.coco import COCO
    api = COCO()
    api.dataset = read_coco(path)
    with contextlib.redirect_stdout(io.StringIO()):
        api.createIndex()
    return api
