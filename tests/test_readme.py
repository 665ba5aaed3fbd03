"""The README's Python examples run as written, in a folder holding the files they name.

Each ```python block runs in a fresh interpreter whose working directory has, with random
weights: ``runs/demo/checkpoint-best.params`` (a demo-preset checkpoint, as ``make demo`` writes),
GluonCV's ``vgg16_atrous.params`` and ``ssd_300_vgg16_atrous_voc-0e169fbb.params`` (as GluonCV's
model zoo names them), and two images ``photo.jpg`` and ``scan.png``.
"""
import pathlib
import re
import subprocess
import sys

import gluoncv
import mxnet as mx
import numpy as np
import pytest
from gluoncv.model_zoo.ssd.vgg_atrous import vgg16_atrous_300
from PIL import Image

from gluon_ssd import get_model
from gluon_ssd.checkpoint import save_checkpoint
from gluon_ssd.data.synthetic import DEFAULT_CLASSES
from gluon_ssd.visualize import sample_image

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("readme")
    save_checkpoint(str(root / "runs" / "demo" / "checkpoint-best.params"),
                    get_model("demo", DEFAULT_CLASSES), {"preset": "demo", "image_size": 192})
    base = vgg16_atrous_300(pretrained=False)
    base.initialize()
    base(mx.nd.zeros((1, 3, 300, 300)))
    base.save_parameters(str(root / "vgg16_atrous.params"))
    ssd = gluoncv.model_zoo.get_model("ssd_300_vgg16_atrous_voc", pretrained=False,
                                      pretrained_base=False)
    ssd.initialize()
    ssd(mx.nd.zeros((1, 3, 300, 300)))
    ssd.save_parameters(str(root / "ssd_300_vgg16_atrous_voc-0e169fbb.params"))
    Image.fromarray(sample_image()).save(root / "photo.jpg")
    Image.fromarray(np.full((90, 160), 200, np.uint8)).save(root / "scan.png")
    return root


def test_the_readme_has_python_examples():
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(folder, index):
    done = subprocess.run([sys.executable, "-c", BLOCKS[index]], cwd=folder, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, f"README example {index}:\n{BLOCKS[index]}\n{done.stderr[-3000:]}"
