"""Devices (issue 19): data parallelism over several contexts, proven on CPU contexts (MXNet
treats ``mx.cpu(0)`` and ``mx.cpu(1)`` as separate devices): the same weights as one context,
with and without BatchNorm (SyncBatchNorm: the whole batch's statistics on every device),
device-free checkpoints and exports, inference split over contexts, ``--gpus`` refused without
GPUs. The GPU-only test is skipped, with its reason, on a
machine where MXNet sees no GPU."""
import dataclasses

import mxnet as mx
import numpy as np
import pytest

from gluon_ssd import presets
from gluon_ssd.checkpoint import load_checkpoint, read_checkpoint
from gluon_ssd.cli import main
from gluon_ssd.data.datasets import get_dataset
from gluon_ssd.detect import detect, load_detector
from gluon_ssd.devices import as_contexts, gpu_contexts, parallel_apply
from gluon_ssd.evaluation.run import evaluate_model
from gluon_ssd.export import export_model
from gluon_ssd.train import LAST, Run, TrainConfig, train

ONE, TWO = [mx.cpu(0)], [mx.cpu(0), mx.cpu(1)]
TINY = dict(image_size=64, train_size=16, val_size=8, batch_size=8, epochs=1, progress=False,
            eval_every=1)
NO_GPU = "MXNet sees no GPU here (mx.context.num_gpus() == 0): GPU paths cannot run"


@pytest.fixture
def no_batch_norm(monkeypatch):
    """A preset ``demo_nobn``: the demo network without BatchNorm."""
    demo = presets.get_preset("demo")
    backbone = dataclasses.replace(demo.model.backbone, batch_norm=False)
    preset = dataclasses.replace(demo, name="demo_nobn",
                                 model=dataclasses.replace(demo.model, backbone=backbone))
    monkeypatch.setitem(presets.PRESETS, "demo_nobn", preset)
    return "demo_nobn"


def _weights(path):
    arrays, _ = read_checkpoint(str(path))
    return {k: v.asnumpy() for k, v in arrays.items() if k.startswith("model:")}


def test_contexts_are_checked():
    assert as_contexts(None) == [mx.cpu()] and as_contexts(mx.cpu(1)) == [mx.cpu(1)]
    with pytest.raises(ValueError, match="twice"):
        as_contexts([mx.cpu(0), mx.cpu(0)])
    with pytest.raises(ValueError, match="non-empty list"):
        as_contexts([])
    assert gpu_contexts(None) == [mx.cpu()]
    if mx.context.num_gpus() == 0:
        with pytest.raises(ValueError, match="--gpus: GPU 0 asked for, but MXNet sees no GPU"):
            gpu_contexts([0])


@pytest.mark.parametrize("batch_norm", [False, True], ids=["no BatchNorm", "BatchNorm"])
def test_two_contexts_train_the_same_weights_as_one(tmp_path, no_batch_norm, batch_norm):
    """Same global batch, seed and data: the summed gradients of the two halves (each loss
    divided by the whole batch's positives, each half normalised by the whole batch's
    BatchNorm statistics) equal the whole batch's, so are the weights after an epoch."""
    results = {}
    preset = "demo" if batch_norm else no_batch_norm
    for name, ctx in (("one", ONE), ("two", TWO)):
        cfg = TrainConfig(preset=preset, out=str(tmp_path / name), **TINY)
        results[name] = train(cfg, ctx=ctx)
    one, two = (_weights(tmp_path / n / LAST) for n in ("one", "two"))
    assert one.keys() == two.keys()
    # Adam's steps are about lr = 2e-3 in size whatever the gradient: float differences of
    # the summed gradients move a weight by far less than one step
    for key in one:
        np.testing.assert_allclose(two[key], one[key], rtol=1e-4, atol=2e-5, err_msg=key)
    first, second = (r.history[0] for r in results.values())
    assert second.loss == pytest.approx(first.loss, rel=1e-5)
    assert results["two"].best_map == pytest.approx(results["one"].best_map, abs=1e-6)


def test_batch_norm_statistics_after_a_step_equal_one_contexts(tmp_path):
    """The demo preset has BatchNorm: over two contexts (SyncBatchNorm) the running statistics
    after a step are the whole batch's, as on one context, the same on both devices."""
    stats = {}
    for name, ctx in (("one", ONE), ("two", TWO)):
        run = Run(TrainConfig(preset="demo", out=str(tmp_path / name), **TINY), ctx)
        batch = next(iter(run.train_loader.epoch(0)))
        run.step(batch.images, batch.labels)
        mx.nd.waitall()
        params = run.net._collect_params_with_prefix()
        stats[name] = {k: [d.asnumpy() for d in p.list_data()] for k, p in params.items()
                       if k.endswith(("running_mean", "running_var"))}
    assert stats["one"] and stats["one"].keys() == stats["two"].keys()
    for key, (single,) in stats["one"].items():
        for device_value in stats["two"][key]:  # the same on both devices
            np.testing.assert_allclose(device_value, single, rtol=1e-4, atol=1e-5, err_msg=key)


def test_a_two_context_checkpoint_is_device_free(tmp_path):
    """Written from two contexts, loaded on one (and on two): the same detections; evaluate and
    detect over two contexts give the same numbers; an export is device-free; resuming on
    another number of devices works."""
    out = tmp_path / "run"
    train(TrainConfig(preset="demo", out=str(out), **TINY), ctx=TWO)
    path = str(out / LAST)
    net, _ = load_checkpoint(path, ctx=TWO)
    assert net.collect_params()[next(iter(net.collect_params()))].list_ctx() == TWO
    image = get_dataset("synthetic", "val", size=(64, 64), length=1)[0][0].asnumpy()
    found = {n: detect(path, [image] * 3, threshold=0.05, ctx=c) for n, c in (("one", ONE),
                                                                                ("two", TWO))}
    for a, b in zip(found["one"], found["two"]):
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-3)
    metrics = {n: evaluate_model(path, ctx=c, progress=False, metrics=("voc07",))
               for n, c in (("one", ONE), ("two", TWO))}
    maps = [next(iter(m.evaluations.values())).voc["voc07"].map for m in metrics.values()]
    assert maps[0] == pytest.approx(maps[1], abs=1e-6)
    model = load_detector(path, ctx=TWO)
    batch = mx.nd.stack(*[model.preprocess(image)] * 3)
    ids, scores, boxes = parallel_apply(model.net, batch, TWO)
    assert ids.shape[0] == 3 and ids.context == mx.cpu(0)
    prefix = str(tmp_path / "export" / "m")
    export_model(model.net, prefix, (64, 64), preset="demo")
    with open(prefix + "-symbol.json") as f:  # one-device layers: SyncBatchNorm is training's
        assert "SyncBatchNorm" not in f.read()
    exported = detect(prefix, [image], threshold=0.05)[0]
    np.testing.assert_allclose(exported.scores, found["one"][0].scores, atol=1e-5)
    # resume on one context what two contexts started
    result = train(TrainConfig(preset="demo", out=str(out), resume=True,
                               **dict(TINY, epochs=2)), ctx=ONE)
    assert [r.epoch for r in result.history] == [1, 2]


@pytest.mark.parametrize("argv", [
    ["train", "--gpus", "0", "--quiet"],
    ["demo", "--gpus", "0", "--quiet"],
    ["detect", "demo", "photo.jpg", "-o", "out", "--gpus", "0"],
    ["evaluate", "demo", "--gpus", "0,1"],
    ["export", "demo", "-o", "exported/demo", "--gpus", "0"],
], ids=["train", "demo", "detect", "evaluate", "export"])
@pytest.mark.skipif(mx.context.num_gpus() > 0, reason="this machine has GPUs")
def test_gpus_without_a_gpu_is_one_line(argv, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "photo.jpg").write_bytes(b"")
    assert main(argv + (["--out", "run"] if argv[0] in ("train", "demo") else [])) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--gpus" in err and "no GPU" in err, err
    assert not (tmp_path / "run").exists() and not (tmp_path / "out").exists()


def test_gpus_flag_is_checked_when_parsed(capsys):
    for bad in ("a,b", "-1", "0,0"):
        assert main(["train", "--gpus", bad]) == 2
        assert "--gpus" in capsys.readouterr().err
    assert main(["quantize", "demo", "--calib-data", "synthetic", "-o", "q", "--gpus",
                 "0"]) == 2
    assert "CPUs only" in capsys.readouterr().err


@pytest.mark.skipif(mx.context.num_gpus() == 0, reason=NO_GPU)
def test_training_and_detection_on_a_gpu(tmp_path):
    out = tmp_path / "run"
    train(TrainConfig(preset="demo", out=str(out), gpus=(0,), **TINY))
    image = get_dataset("synthetic", "val", size=(64, 64), length=1)[0][0].asnumpy()
    on_gpu = detect(str(out / LAST), [image], threshold=0.05, ctx=mx.gpu(0))[0]
    on_cpu = detect(str(out / LAST), [image], threshold=0.05)[0]
    np.testing.assert_allclose(on_gpu.scores, on_cpu.scores, atol=1e-3)
