"""Install gluon-ssd; every version pin comes from constraints.txt."""
import os
import re

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def _pins():
    """Map a lower-cased package name to its `name==version` line in constraints.txt."""
    pins = {}
    with open(os.path.join(HERE, "constraints.txt")) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                name = re.split(r"[=<>!~ ]", line, 1)[0]
                pins[name.lower().replace("_", "-")] = line
    return pins


PINS = _pins()


def pinned(*names):
    return [PINS[n.lower()] for n in names]


setup(
    name="gluon-ssd",
    version="0.1.0",
    description="SSD: Single Shot MultiBox Detector in MXNet Gluon, a reference implementation",
    long_description=open(os.path.join(HERE, "README.md")).read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["gluon_ssd", "gluon_ssd.*"]),
    python_requires=">=3.8,<3.12",
    install_requires=pinned(
        "mxnet", "numpy", "gluoncv", "opencv-python", "matplotlib", "pillow",
        "scipy", "pandas", "pycocotools", "tqdm",
    ),
    extras_require={
        # ONNX export (gluon-ssd export --format onnx) and its engines
        "onnx": pinned("onnx", "onnxruntime", "openvino"),
        "dev": pinned("pytest", "nbclient", "nbformat", "ipykernel", "ipywidgets", "nbmake",
                      "onnx", "onnxruntime", "openvino"),
    },
    entry_points={"console_scripts": ["gluon-ssd=gluon_ssd.cli:main"]},
)
