"""gluon-ssd: the SSD object detector (Liu et al., ECCV 2016) in MXNet Gluon."""
from .presets import get_preset, list_presets

__version__ = "0.1.0"
