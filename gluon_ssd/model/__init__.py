"""The SSD network: VGG16 base, predictors, anchors, and detection on top."""
from .backbone import VGG16, L2Norm
from .head import DetectionNet, DetectionHead
from .ssd import SSD
from .weights import load_base

__all__ = ["VGG16", "L2Norm", "SSD", "DetectionHead", "DetectionNet", "load_base"]
