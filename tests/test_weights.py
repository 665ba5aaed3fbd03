"""Loading weights: GluonCV's VGG16 files into the SSD base, checkpoints, and refusals.

GluonCV's networks are built with random weights and saved to temporary files (no downloads);
the expectations come from the GluonCV networks themselves (their layers in order, their feature
maps) and from the paper's fc6/fc7 subsampling written as numpy slicing.
"""
import os

import gluoncv
import mxnet as mx
import numpy as np
import pytest
from gluoncv.model_zoo.ssd.vgg_atrous import vgg16_atrous_300, vgg16_atrous_512
from mxnet.gluon import nn

from gluon_ssd import get_model
from gluon_ssd.model.weights import assign, load_arrays

VOC = tuple(f"voc{i}" for i in range(20))


def random_images(shape, seed=0):
    return mx.nd.array(np.random.RandomState(seed).normal(size=shape).astype(np.float32))


def saved(block, directory, name):
    """Save ``block``'s parameters to ``directory/name`` and return the path."""
    path = os.path.join(directory, name)
    block.save_parameters(path)
    return path


def convolutions(blocks):
    """The ``Conv2D`` layers among ``blocks`` (nested sequentials flattened), in order."""
    found = []
    for block in blocks:
        if isinstance(block, nn.Conv2D):
            found.append(block)
        elif isinstance(block, nn.HybridSequential):
            found.extend(convolutions(block))
    return found


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return str(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def vgg16(files):
    """GluonCV's ImageNet ``vgg16`` classifier with random weights, and its file."""
    net = gluoncv.model_zoo.get_model("vgg16")
    net.initialize()
    net(mx.nd.zeros((1, 3, 224, 224)))
    return net, saved(net, files, "vgg16.params")


@pytest.fixture(scope="module")
def atrous(files):
    """GluonCV's ``vgg16_atrous_300`` extractor with random weights, its file, an input and its
    six feature maps."""
    net = vgg16_atrous_300(pretrained=False)
    net.initialize()
    x = random_images((1, 3, 300, 300))
    features = [f.asnumpy() for f in net(x)]  # the forward also fixes the deferred shapes
    return net, saved(net, files, "vgg16_atrous.params"), x, features


@pytest.fixture(scope="module")
def checkpoints(files):
    """``{preset: (forwarded SSD with 20 classes, its checkpoint)}`` for SSD300 and SSD512."""
    found = {}
    for preset, size in (("ssd300_vgg16", 300), ("ssd512_vgg16", 320)):
        net = get_model(preset, VOC)
        net(random_images((1, 3, size, size)))
        found[preset] = (net, saved(net, files, f"{preset}.params"))
    return found


# ---------------------------------------------------------------------------------------------
# GluonCV's VGG16 files.

def test_vgg16_classifier_becomes_the_atrous_base(vgg16):
    source, path = vgg16
    net = get_model("ssd300_vgg16", VOC, pretrained_base=path)

    theirs = convolutions(source.features)
    ours = convolutions(net.features.stages)
    assert len(theirs) == len(ours) == 13
    for a, b in zip(theirs, ours):
        np.testing.assert_array_equal(b.weight.data().asnumpy(), a.weight.data().asnumpy())
        np.testing.assert_array_equal(b.bias.data().asnumpy(), a.bias.data().asnumpy())

    fc6, fc7 = [b for b in source.features if isinstance(b, nn.Dense)]
    w6 = fc6.weight.data().asnumpy().reshape(4096, 512, 7, 7)
    w7 = fc7.weight.data().asnumpy()
    ours_fc6, ours_fc7 = net.features.fc6[0], net.features.fc7[0]
    np.testing.assert_array_equal(ours_fc6.weight.data().asnumpy(), w6[::4, :, ::3, ::3])
    np.testing.assert_array_equal(ours_fc6.bias.data().asnumpy(), fc6.bias.data().asnumpy()[::4])
    np.testing.assert_array_equal(ours_fc7.weight.data().asnumpy()[:, :, 0, 0], w7[::4, ::4])
    np.testing.assert_array_equal(ours_fc7.bias.data().asnumpy(), fc7.bias.data().asnumpy()[::4])
    np.testing.assert_array_equal(net.features.input_scale.data().asnumpy(), 1.0)

    cls_preds, _, _ = net(random_images((1, 3, 300, 300)))  # the rest initialises as usual
    assert cls_preds.shape == (1, 8732, 21)


def test_vgg16_atrous_gives_gluoncv_feature_maps(atrous):
    _, path, x, expected = atrous
    net = get_model("ssd300_vgg16", VOC, pretrained_base=path)
    for ours, theirs in zip(net.features(x), expected):
        assert ours.shape == theirs.shape
        np.testing.assert_allclose(ours.asnumpy(), theirs, rtol=1e-5,
                                   atol=1e-5 * np.abs(theirs).max())


def test_gluon_ssd_checkpoint_as_base_takes_only_the_features(checkpoints):
    source, path = checkpoints["ssd300_vgg16"]
    net = get_model("ssd300_vgg16", ["cat", "dog"], pretrained_base=path)
    theirs = source.features._collect_params_with_prefix()  # structural names: stages.0.0.weight
    for name, param in net.features._collect_params_with_prefix().items():
        np.testing.assert_array_equal(param.data().asnumpy(), theirs[name].data().asnumpy())
    cls_preds, _, _ = net(random_images((1, 3, 300, 300)))
    assert cls_preds.shape == (1, 8732, 3)


def test_checkpoint_round_trip_through_assign(checkpoints):
    source, path = checkpoints["ssd300_vgg16"]
    net = get_model("ssd300_vgg16", VOC)
    assign(net, load_arrays(path), path)
    x = random_images((1, 3, 300, 300), seed=1)
    for ours, theirs in zip(net(x), source(x)):
        np.testing.assert_array_equal(ours.asnumpy(), theirs.asnumpy())


# ---------------------------------------------------------------------------------------------
# Refusals.

def test_vgg11_is_refused(files):
    net = gluoncv.model_zoo.get_model("vgg11")
    net.initialize()
    net(mx.nd.zeros((1, 3, 32, 32)))  # a small input keeps fc6 small; the convolutions are vgg11's
    path = saved(net, files, "vgg11.params")
    with pytest.raises(ValueError, match="13 convolutions.*found 8 convolutions"):
        get_model("ssd300_vgg16", VOC, pretrained_base=path)


def test_vgg16_atrous_512_into_ssd300_names_the_extra_layer(files):
    net = vgg16_atrous_512(pretrained=False)
    net.initialize()
    net(mx.nd.zeros((1, 3, 320, 320)))
    path = saved(net, files, "vgg16_atrous_512.params")
    with pytest.raises(ValueError, match=r"'features\.extras\.4\.0\.weight' is not in this model"):
        get_model("ssd300_vgg16", VOC, pretrained_base=path)


def test_ssd512_checkpoint_into_ssd300_names_the_first_foreign_parameter(checkpoints):
    target, _ = checkpoints["ssd300_vgg16"]
    _, path = checkpoints["ssd512_vgg16"]
    with pytest.raises(ValueError, match=r"'features\.extras\.4\.0\.weight' is not in this model"):
        assign(target, load_arrays(path), path)


def test_ssd300_checkpoint_into_ssd512_names_the_first_mismatch_and_both_shapes(checkpoints):
    target, _ = checkpoints["ssd512_vgg16"]
    _, path = checkpoints["ssd300_vgg16"]
    # Layer 4 has 4 anchors per cell in SSD300 and 6 in SSD512: 16 or 24 box channels.
    with pytest.raises(ValueError, match=r"'box_predictors\.4\.weight' has shape \(16, 256, 3, 3\) "
                                         r"in the file but \(24, 256, 3, 3\) in this model"):
        assign(target, load_arrays(path), path)


def test_garbage_file_is_refused(files):
    path = os.path.join(files, "garbage.params")
    with open(path, "wb") as f:
        f.write(b"these are not weights\n" * 100)
    with pytest.raises(ValueError, match="not an MXNet parameter file"):
        get_model("ssd300_vgg16", VOC, pretrained_base=path)


def test_unnamed_arrays_are_refused(files):
    path = os.path.join(files, "list.params")
    mx.nd.save(path, [mx.nd.zeros((3,))])
    with pytest.raises(ValueError, match="unnamed"):
        load_arrays(path)


def test_pretrained_base_needs_full_width_without_batch_norm(atrous):
    _, path, _, _ = atrous
    with pytest.raises(ValueError, match="width 1 and no BatchNorm"):
        get_model("demo", ["cat"], pretrained_base=path)


def test_input_channel_mismatch_is_refused_before_any_forward():
    """A fresh network (no forward yet) still checks every dimension, input channels included."""
    net = get_model("ssd300_vgg16", VOC)
    message = (r"'features\.fc6\.0\.weight' has shape \(1024, 256, 3, 3\) in the file "
               r"but \(1024, 512, 3, 3\)")
    with pytest.raises(ValueError, match=message):
        assign(net, {"features.fc6.0.weight": mx.nd.zeros((1024, 256, 3, 3))}, "file",
               allow_missing=True)


def test_vgg16_bn_classifier_is_refused(vgg16, files):
    _, path = vgg16
    arrays = load_arrays(path)
    # GluonCV's vgg16_bn puts a BatchNorm after every convolution: conv 0, BatchNorm 1, ...
    for name in ("gamma", "beta", "running_mean", "running_var"):
        arrays[f"features.1.{name}"] = mx.nd.ones((64,))
    path = os.path.join(files, "vgg16_with_batch_norm.params")
    mx.nd.save(path, arrays)
    with pytest.raises(ValueError, match="BatchNorm"):
        get_model("ssd300_vgg16", VOC, pretrained_base=path)
