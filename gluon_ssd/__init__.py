"""gluon-ssd: the SSD object detector (Liu et al., ECCV 2016) in MXNet Gluon.

Stages, one module each: ``anchors`` (default boxes), ``model`` (network, detection),
``targets`` (matching), ``loss`` (hard negative mining), ``data``, ``train``, ``evaluate``,
``detect``, ``export``, ``convert`` (GluonCV's trained SSDs), ``visualize``, ``cli``.
"""
from .model import SSD, DetectionNet, Detector, get_model
from .presets import get_preset, list_presets

__version__ = "0.1.0"
__all__ = ["SSD", "Detector", "DetectionNet", "get_model", "get_preset", "list_presets"]
