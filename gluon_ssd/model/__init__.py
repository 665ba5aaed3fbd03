"""The SSD network: VGG16 base, predictors, anchors, and detection on top."""
from .backbone import VGG16, L2Norm
from .detector import DetectionNet, Detector
from .ssd import SSD, get_model
from .weights import load_base

__all__ = ["VGG16", "L2Norm", "SSD", "Detector", "DetectionNet", "get_model", "load_base"]
