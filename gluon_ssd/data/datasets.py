"""Detection datasets on disk: Pascal VOC and VOC-format folders here, COCO in
:mod:`gluon_ssd.data.coco`, through ``gluoncv.data``; :func:`get_dataset` (any dataset by name or
folder) and :func:`build_split` (a split as a :class:`DataConfig` describes it, for training and
evaluation alike).

Every dataset here (and :class:`~gluon_ssd.data.synthetic.SyntheticShapes`) has ``classes``
(class id ``k`` is ``classes[k]``), ``stats`` (a :class:`~gluon_ssd.data.labels.LoadStats`:
boxes clipped / dropped, images skipped) and items ``(image, label)``: ``image`` an
``mx.nd.NDArray`` ``(H, W, 3)`` uint8 RGB, ``label`` float32 ``(M, 6)`` in the layout of
:mod:`gluon_ssd.data.labels` (``M`` may be 0), pixels of the original image.

VOC's 1-based inclusive ``[x1, y1, x2, y2]`` becomes ``[x1 - 1, y1 - 1, x2, y2]`` (gluoncv
subtracts 1 from all four); COCO's ``[x, y, w, h]`` becomes ``[x, y, x + w, y + h]``.

Bad input: boxes reaching outside the image are clipped to it, boxes with no area (after
clipping, or ``xmin >= xmax`` / ``ymin >= ymax`` as given) are dropped; both are counted in
``stats``. A class name (VOC) or category id (COCO) outside the class list raises ``ValueError``
naming the annotation file; so does a malformed annotation file (invalid JSON or XML, a COCO
``bbox`` or image size missing or not numbers, a VOC coordinate that is not a number: see
:mod:`gluon_ssd.data.annotations`, which names the annotation or image id too) and a COCO
``file_name`` that leaves the dataset folder. An unreadable or truncated image raises
:class:`~gluon_ssd.data.io.BadImageError` naming the file when the item is loaded; with
``skip_bad=True`` every image is decoded once at construction and the bad ones are left out
(listed in ``stats.unreadable``).
"""
from __future__ import annotations

import glob
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from gluoncv.data import VOCDetection
from mxnet import gluon

from ..presets import Spec
from .annotations import xml_number, xml_root, xml_text
from .coco import COCO_SPLITS, DEFAULT_COCO_ROOT, COCODataset
from .files import FileDataset, existing_dir
from .io import BadImageError, image_size, list_images
from .labels import WIDTH, LoadStats
from .synthetic import DEFAULT_CLASSES, DEFAULT_LENGTH, SyntheticShapes

DEFAULT_VOC_ROOT = os.path.join("~", ".mxnet", "datasets", "voc")
VOC_CLASSES: Tuple[str, ...] = tuple(VOCDetection.CLASSES)
# The paper's VOC protocol: train on 07+12 trainval, test on 07 test.
VOC_SPLITS = {
    "train": ((2007, "trainval"), (2012, "trainval")),
    "val": ((2007, "test"),),
    "test": ((2007, "test"),),
}


class VOCDataset(FileDataset, VOCDetection):
    """Pascal VOC (``root/VOC2007``, ``root/VOC2012``), labels ``(M, 6)`` with ``difficult``.

    Args:
        root: the VOCdevkit folder holding ``VOC2007/`` and/or ``VOC2012/``.
        splits: ``(year, name)`` pairs, each read from
            ``root/VOC{year}/ImageSets/Main/{name}.txt``.
        classes: the class list (default: the 20 VOC classes); a name outside it is an error.
        skip_bad: leave out images that cannot be decoded (see the module docstring).
    """

    def __init__(self, root: str = DEFAULT_VOC_ROOT,
                 splits: Iterable[Tuple[object, str]] = VOC_SPLITS["train"],
                 classes: Optional[Sequence[str]] = None, skip_bad: bool = False):
        self._classes = tuple(classes or VOC_CLASSES)
        self.stats = LoadStats()
        super().__init__(root=existing_dir(root), splits=tuple(splits), preload_label=True)
        self._finish_loading(str(self), f"no images listed for {self} in {self._root}", skip_bad)

    def image_path(self, idx: int) -> str:
        """Path of item ``idx``'s image."""
        return self._image_path.format(*self._items[idx])

    def _label(self, idx: int) -> np.ndarray:
        return self._label_cache[idx]

    def _size(self, idx: int) -> Tuple[int, int]:
        width, height = self._im_shapes[idx]
        return int(height), int(width)

    def _keep(self, indices: List[int]) -> None:
        self._items = [self._items[i] for i in indices]
        self._label_cache = [self._label_cache[i] for i in indices]
        self._im_shapes = {new: self._im_shapes[old] for new, old in enumerate(indices)}

    def _load_items(self, splits) -> List[Tuple[str, str]]:
        """``(folder, image id)`` for every id listed in the splits' ImageSets files."""
        items = []
        for year, name in splits:
            folder = os.path.join(self._root, f"VOC{year}")
            items += [(folder, i) for i in _read_id_list(folder, name)]
        return items

    def _load_label(self, idx: int) -> np.ndarray:
        """Labels ``(M, 6)`` float32 of item ``idx``, sanitised (see the module docstring)."""
        path = self._anno_path.format(*self._items[idx])
        root = xml_root(path)
        width, height = self._image_size(idx, root, path)
        self._im_shapes[idx] = (width, height)
        rows = [self._object_row(obj, path) for obj in root.iter("object")]
        return self.stats.sanitize(np.array(rows, np.float32).reshape(-1, WIDTH), width, height)

    def _object_row(self, obj: ET.Element, path: str) -> List[float]:
        """``[xmin, ymin, xmax, ymax, class_id, difficult]`` of one ``<object>``."""
        name = xml_text(obj, "name", path)
        if name not in self.index_map:
            raise ValueError(f"annotation {path}: class {name!r} is not in the class list "
                             f"{list(self.classes)}")
        difficult = obj.find("difficult")
        given = difficult is not None and bool(difficult.text)
        flag = xml_number(obj, "difficult", path) if given else 0.0
        box = obj.find("bndbox")
        if box is None:
            raise ValueError(f"annotation {path}: object {name!r} has no <bndbox>")
        x1, y1, x2, y2 = (xml_number(box, t, path) for t in ("xmin", "ymin", "xmax", "ymax"))
        return [x1 - 1, y1 - 1, x2, y2, self.index_map[name], flag]

    def _image_size(self, idx: int, root: ET.Element, path: str) -> Tuple[float, float]:
        """``(width, height)`` from ``<size>``, or from the image header when absent or zero."""
        size = root.find("size")
        if size is not None:
            width, height = (xml_number(size, t, path) for t in ("width", "height"))
            if width > 0 and height > 0:
                return width, height
        try:
            height, width = image_size(self.image_path(idx))
        except BadImageError as err:
            raise BadImageError(err.path, f"{err.reason} (needed for its size, absent from "
                                          f"{path})") from err
        return float(width), float(height)


def _read_id_list(folder: str, name: str) -> List[str]:
    """Image ids in ``folder/ImageSets/Main/{name}.txt`` (first word of each non-blank line)."""
    path = os.path.join(folder, "ImageSets", "Main", f"{name}.txt")
    if not os.path.isfile(path):
        raise ValueError(f"split file {path} does not exist")
    with open(path) as f:
        return [line.split()[0] for line in f if line.strip()]


class VOCFolderDataset(VOCDataset):
    """A custom dataset in VOC format, with its own classes.

    Layout: ``root/Annotations/*.xml``, ``root/JPEGImages/<id>.{jpg,jpeg,png,bmp}`` and optionally
    ``root/ImageSets/Main/{split}.txt``. Without a split file, ``split="train"`` / ``"val"`` are
    a fixed split of the sorted ids (every ``round(1 / val_fraction)``-th id, from the first, is
    in val) and ``"all"`` is every annotated image.

    Args:
        root: the folder.
        split: a split name, as above.
        classes: class list; default: the sorted unique ``<name>`` s of all XMLs in the folder
            (the same for every split).
        val_fraction: share of images in the derived ``"val"`` split.
        skip_bad: leave out images that cannot be decoded.
    """

    def __init__(self, root: str, split: str = "train", classes: Optional[Sequence[str]] = None,
                 val_fraction: float = 0.1, skip_bad: bool = False):
        root = existing_dir(root)
        annotations = sorted(glob.glob(os.path.join(root, "Annotations", "*.xml")))
        if not annotations:
            raise ValueError(f"dataset folder {root} has no Annotations/*.xml")
        self._val_every = max(2, round(1 / val_fraction))
        self._image_files = _image_files(os.path.join(root, "JPEGImages"))
        if not self._image_files:
            raise ValueError(f"dataset folder {root} has no images in JPEGImages/")
        classes = classes or _class_names(annotations)
        if not classes:
            raise ValueError(f"the annotations in {root} name no objects")
        super().__init__(root, splits=((None, split),), classes=classes, skip_bad=skip_bad)

    def __str__(self) -> str:
        return f"{type(self).__name__}({self._root}, {self._splits[0][1]})"

    def image_path(self, idx: int) -> str:
        folder, image_id = self._items[idx]
        name = self._image_files.get(image_id, image_id + ".jpg")
        return os.path.join(folder, "JPEGImages", name)

    def _load_items(self, splits) -> List[Tuple[str, str]]:
        """``(root, image id)`` of the split: from ImageSets if present, else derived."""
        (_, split), = splits
        if os.path.isfile(os.path.join(self._root, "ImageSets", "Main", f"{split}.txt")):
            ids = _read_id_list(self._root, split)
        else:
            ids = self._derived_split(split)
        return [(self._root, i) for i in ids]

    def _derived_split(self, split: str) -> List[str]:
        xmls = glob.glob(os.path.join(self._root, "Annotations", "*.xml"))
        ids = sorted(os.path.splitext(os.path.basename(p))[0] for p in xmls)
        in_val = [i % self._val_every == 0 for i in range(len(ids))]
        chosen = {"all": [True] * len(ids), "val": in_val, "train": [not v for v in in_val]}
        if split not in chosen:
            raise ValueError(f"no split file ImageSets/Main/{split}.txt in {self._root}; "
                             f"without one the splits are {sorted(chosen)}")
        return [i for i, keep in zip(ids, chosen[split]) if keep]


def _image_files(folder: str) -> Dict[str, str]:
    """Map image id (file stem) -> file name for the images in ``folder`` (see
    :func:`~gluon_ssd.data.io.list_images`)."""
    names = [os.path.basename(p) for p in list_images(folder)[0]] if os.path.isdir(folder) else []
    return {os.path.splitext(n)[0]: n for n in names}


def _class_names(annotations: Sequence[str]) -> Tuple[str, ...]:
    """Sorted unique object names over the annotation files."""
    names = {xml_text(obj, "name", path) for path in annotations
             for obj in xml_root(path).iter("object")}
    return tuple(sorted(names))


def voc_splits(split: str) -> Tuple[Tuple[int, str], ...]:
    """VOC ``(year, name)`` pairs for ``split``.

    ``"train"`` = 2007 + 2012 trainval, ``"val"`` / ``"test"`` = 2007 test (the paper's
    protocol); otherwise ``"YEAR_NAME[+YEAR_NAME...]"``, e.g. ``"2007_trainval"``.
    """
    if split in VOC_SPLITS:
        return VOC_SPLITS[split]
    try:
        pairs = (part.split("_", 1) for part in split.split("+"))
        return tuple((int(year), name) for year, name in pairs)
    except ValueError as err:
        raise ValueError(f"VOC split {split!r} is neither one of {sorted(VOC_SPLITS)} nor "
                         "'YEAR_NAME[+YEAR_NAME...]'") from err


def get_dataset(name_or_path: str, split: str = "train", *, root: Optional[str] = None,
                size: Tuple[int, int] = (192, 192), length: Optional[int] = None, seed: int = 0,
                classes: Optional[Sequence[str]] = None,
                skip_bad: bool = False, cache_mb: float = 0.0) -> gluon.data.Dataset:
    """One split of a dataset, by name or folder; items as the module docstring says.

    Args:
        name_or_path: ``"synthetic"`` (:class:`SyntheticShapes`: ``size``, ``length``, ``seed``,
            ``classes`` apply, ``split`` is ``"train"`` or ``"val"``); ``"voc"``
            (:class:`VOCDataset` under ``root``, default ``~/.mxnet/datasets/voc``, ``split`` as
            in :func:`voc_splits`); ``"coco"`` (:class:`COCODataset` under ``root``, default
            ``~/.mxnet/datasets/coco``, ``"train"`` / ``"val"`` -> ``train2017`` / ``val2017``,
            other names literally); or a folder: VOC format (has ``Annotations/``,
            :class:`VOCFolderDataset`), a VOCdevkit (has ``VOC2007/`` or ``VOC2012/``) or COCO
            format (has ``annotations/``).
        split: which split (meaning per dataset as above).
        classes: class list override (synthetic: shape names; VOC folders: class names).
        skip_bad: leave out unreadable or truncated images, listed in ``stats.unreadable``.
        cache_mb: memory for the split's images once rendered (synthetic) or decoded (the
            others), so that later epochs skip that work; 0: none.

    Raises:
        ValueError: unknown name, missing or empty folder, missing split file.
    """
    key = name_or_path.lower()
    if key == "synthetic":
        return SyntheticShapes(length or DEFAULT_LENGTH.get(split, DEFAULT_LENGTH["val"]), size,
                               split, seed, classes or DEFAULT_CLASSES, cache_mb)
    if key == "voc":
        dataset = VOCDataset(root or DEFAULT_VOC_ROOT, voc_splits(split), classes, skip_bad)
    elif key == "coco":
        dataset = COCODataset(root or DEFAULT_COCO_ROOT, COCO_SPLITS.get(split, split), skip_bad)
    elif os.path.isdir(os.path.expanduser(name_or_path)):
        dataset = _folder_dataset(os.path.expanduser(name_or_path), split, classes, skip_bad)
    else:
        raise ValueError(f"{name_or_path!r} is neither a dataset name (synthetic, voc, coco) "
                         "nor an existing folder")
    dataset.keep_decoded(cache_mb)
    return dataset


def _folder_dataset(path: str, split: str, classes: Optional[Sequence[str]],
                    skip_bad: bool) -> gluon.data.Dataset:
    """The dataset in ``path``, its format recognised by its sub-folders."""
    def has(sub: str) -> bool:
        return os.path.isdir(os.path.join(path, sub))

    if has("Annotations"):
        return VOCFolderDataset(path, split, classes, skip_bad=skip_bad)
    if has("VOC2007") or has("VOC2012"):
        return VOCDataset(path, voc_splits(split), classes, skip_bad)
    if has("annotations"):
        return COCODataset(path, COCO_SPLITS.get(split, split), skip_bad)
    raise ValueError(f"no dataset found in folder {path}: expected Annotations/ (VOC format), "
                     "VOC2007/ or VOC2012/ (VOCdevkit) or annotations/ (COCO format)")


@dataclass(frozen=True)
class DataConfig(Spec):
    """Which data a run trains and validates on (the data fields of a training config).

    Attributes:
        data: ``synthetic``, ``voc``, ``coco`` or a dataset folder (see :func:`get_dataset`).
        data_root: root folder for ``voc`` / ``coco`` (default: under ``~/.mxnet/datasets``).
        train_size, val_size: number of synthetic images per split (default: the dataset's).
        seed: synthetic images' base seed.
        skip_bad: leave out unreadable images, counted in the dataset's ``stats``.
        cache_mb: memory per split for images once rendered or decoded (0: none).
    """

    data: str = "synthetic"
    data_root: Optional[str] = None
    train_size: Optional[int] = None
    val_size: Optional[int] = None
    seed: int = 0
    skip_bad: bool = False
    cache_mb: float = 0.0


def build_split(cfg: DataConfig, split: str, size: Tuple[int, int]) -> gluon.data.Dataset:
    """Split ``split`` of ``cfg.data`` as training and evaluation use it: synthetic images are
    ``size = (H, W)``, ``cfg.train_size`` of them for ``"train"``, ``cfg.val_size`` otherwise
    (``None``: the dataset's default). Items as :func:`get_dataset` returns them."""
    length = cfg.train_size if split == "train" else cfg.val_size
    return get_dataset(cfg.data, split, root=cfg.data_root, size=size, length=length, seed=cfg.seed,
                       skip_bad=cfg.skip_bad, cache_mb=cfg.cache_mb)


__all__ = ["VOCDataset", "VOCFolderDataset", "COCODataset", "voc_splits", "get_dataset",
           "VOC_CLASSES", "DataConfig", "build_split"]
