"""Symbol export: the files load with plain ``gluon.SymbolBlock.imports`` and detect the same."""
import json
import os
import shutil

import mxnet as mx
import numpy as np
import pytest
from mxnet import gluon

from gluon_ssd import DetectionNet, get_model, get_preset
from gluon_ssd.detect import load_detector
from gluon_ssd.export import export_model, export_paths, import_model
from gluon_ssd.presets import DetectSpec

CLASSES = ("cat", "dog", "bird")


@pytest.fixture(scope="module", params=["demo", "ssd300_vgg16"])
def exported(request, tmp_path_factory):
    """A random detector of a preset exported at its square training size: ``(net, prefix, paths)``.

    No score threshold, so that the untrained network detects something to compare.
    """
    preset = request.param
    net = DetectionNet(get_model(preset, CLASSES), DetectSpec(score_threshold=0.0))
    size = get_preset(preset).model.anchors.image_size
    prefix = str(tmp_path_factory.mktemp("export") / preset)
    return net, prefix, export_model(net, prefix, (size, size))


def test_writes_symbol_params_and_metadata(exported):
    _, prefix, paths = exported
    assert paths == {"symbol": f"{prefix}-symbol.json", "params": f"{prefix}-0000.params",
                     "meta": f"{prefix}-meta.json"}
    assert all(os.path.getsize(p) > 0 for p in paths.values())


def test_plain_symbol_block_detects_like_the_live_block_on_a_non_square_input(exported):
    net, _, paths = exported
    imported = gluon.SymbolBlock.imports(paths["symbol"], ["data"], paths["params"])
    height, width = net.ssd.spec.anchors.image_size, net.ssd.spec.anchors.image_size * 4 // 3
    x = mx.nd.array(np.random.RandomState(0).normal(size=(2, 3, height, width)).astype(np.float32))
    live = [o.asnumpy() for o in net(x)]
    loaded = [o.asnumpy() for o in imported(x)]
    assert [a.shape for a in loaded] == [(2, 100, 1), (2, 100, 1), (2, 100, 4)]
    assert (live[0] >= 0).any()
    for a, b in zip(loaded, live):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_metadata_has_classes_and_preprocessing(exported):
    net, prefix, _ = exported
    block, meta = import_model(prefix)
    assert isinstance(block, gluon.SymbolBlock)
    assert meta["classes"] == list(CLASSES)
    assert meta["input"]["mean"] == pytest.approx(net.ssd.spec.mean)
    assert meta["input"]["std"] == pytest.approx(net.ssd.spec.std)
    with open(f"{prefix}-meta.json") as f:
        assert json.load(f) == meta


@pytest.fixture(scope="module")
def demo_export(tmp_path_factory):
    """A demo-preset export at 64x64, to copy and break."""
    net = DetectionNet(get_model("demo", CLASSES), DetectSpec())
    prefix = str(tmp_path_factory.mktemp("demo_export") / "demo")
    export_model(net, prefix, (64, 64), preset="demo")
    return prefix


def _broken_copy(prefix, folder, kind, content):
    """The export at ``prefix`` copied to ``folder/model``, its ``kind`` file replaced."""
    folder.mkdir(exist_ok=True)
    copy = str(folder / "model")
    for name, path in export_paths(prefix).items():
        shutil.copy(path, export_paths(copy)[name])
    if content is not None:
        with open(export_paths(copy)[kind], "wb") as f:
            with open(export_paths(prefix)[kind], "rb") as original:
                f.write(content(original.read()))
    return copy


@pytest.mark.parametrize("kind, content, message", [
    ("params", lambda data: data[:len(data) // 2],
     r"model-0000.params: not an MXNet parameter file \(Check failed: .*Invalid NDArray file"),
    ("params", lambda data: b"garbage" * 40, r"model-0000.params: not an MXNet parameter file"),
    ("meta", lambda data: b"{}", r"model-meta.json: its metadata has no list of class names"),
    ("meta", lambda data: json.dumps({"classes": ["a"]}).encode(),
     r"model-meta.json: its metadata has no input description \('input'\)"),
    ("meta", lambda data: data.replace(b'"image_size"', b'"size"'),
     r"model-meta.json: 'input' has no image_size \[H, W\]"),
    ("meta", lambda data: data[:len(data) // 2],
     r"model-meta.json: its metadata is not JSON \(.*line \d+ column \d+"),
    ("symbol", lambda data: data[:len(data) // 2],
     r"model-symbol.json: not an MXNet symbol file \(not JSON: .*line \d+ column \d+"),
    ("symbol", lambda data: b'{"nodes": 3}', r"model-symbol.json: not an MXNet symbol file \(\w"),
])
def test_a_corrupt_or_incomplete_export_is_named(demo_export, tmp_path, kind, content, message):
    copy = _broken_copy(demo_export, tmp_path, kind, content)
    for load in (import_model, load_detector):
        with pytest.raises(ValueError, match=message) as err:
            load(copy)
        assert "Traceback" not in str(err.value) and "\n" not in str(err.value)
    assert load_detector(_broken_copy(demo_export, tmp_path / "ok", kind, None)).classes == CLASSES
