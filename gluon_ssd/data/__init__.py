"""The data stage: datasets (items ``(image (H, W, 3) uint8, label (M, 5+) pixels)``), the
training / evaluation transforms and a reproducible batch loader. See ``datasets.py`` for the
label layout and box convention, ``transforms.py`` for the augmentation and determinism."""
from .datasets import (
    BadImageError, COCODataset, LoadStats, VOCDataset, VOCFolderDataset, get_dataset, read_image,
)
from .synthetic import SyntheticShapes
from .transforms import DetectionLoader, EvalTransform, TrainTransform, batchify

__all__ = [
    "BadImageError", "COCODataset", "LoadStats", "VOCDataset", "VOCFolderDataset", "get_dataset",
    "read_image", "SyntheticShapes", "DetectionLoader", "EvalTransform", "TrainTransform",
    "batchify",
]
