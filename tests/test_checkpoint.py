"""Checkpoint files: permissions, leftovers of killed saves, and metadata that is not a model's."""
import json
import os
import stat

import mxnet as mx
import numpy as np
import pytest

from gluon_ssd import get_model
from gluon_ssd.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint


@pytest.fixture(scope="module")
def net():
    return get_model("demo", ["a", "b"])


def rewrite_meta(src, dst, meta_bytes: bytes):
    arrays = mx.nd.load(str(src))
    arrays["meta"] = mx.nd.array(np.frombuffer(meta_bytes, np.uint8), dtype="uint8")
    mx.nd.save(str(dst), arrays)


def test_a_checkpoint_has_the_permissions_of_any_other_output(net, tmp_path):
    old = os.umask(0o022)
    try:
        save_checkpoint(str(tmp_path / "c.params"), net, {"preset": "demo"})
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "c.params").st_mode) == 0o644


def test_the_next_save_removes_leftovers_of_a_killed_save(net, tmp_path):
    leftover = tmp_path / ".tmp-abc123.params"
    leftover.write_bytes(b"half a checkpoint")
    keep = tmp_path / "notes.params"
    keep.write_bytes(b"not ours")
    save_checkpoint(str(tmp_path / "c.params"), net, {"preset": "demo"})
    assert not leftover.exists() and keep.exists()
    assert sorted(os.listdir(tmp_path)) == ["c.params", "notes.params"]


@pytest.mark.parametrize("meta, message", [
    (b"\xff\xfe not json", "its metadata is not JSON"),
    (b"[1, 2]", "its metadata is not a JSON object"),
    (b"{}", "no list of class names"),
    (json.dumps({"classes": ["a", "b"]}).encode(), "no model description"),
])
def test_metadata_that_is_not_a_models_is_named(net, tmp_path, meta, message):
    good, bad = tmp_path / "good.params", tmp_path / "bad.params"
    save_checkpoint(str(good), net, {"preset": "demo"})
    rewrite_meta(good, bad, meta)
    with pytest.raises(ValueError, match=rf"{bad}: .*{message}"):
        read_checkpoint(str(bad))


def test_an_unknown_spec_field_is_named_with_the_file(net, tmp_path):
    good, bad = tmp_path / "good.params", tmp_path / "bad.params"
    save_checkpoint(str(good), net, {"preset": "demo"})
    _, meta = read_checkpoint(str(good))
    meta["model_spec"]["anchors"]["colour"] = "red"
    rewrite_meta(good, bad, json.dumps(meta).encode())
    with pytest.raises(ValueError, match=rf"{bad}: unknown AnchorSpec field\(s\) \['colour'\]"):
        load_checkpoint(str(bad))


def test_a_checkpoint_records_and_restores_the_box_coders_variances(tmp_path):
    from dataclasses import replace

    from gluon_ssd.model import SSD
    from gluon_ssd.presets import get_preset

    spec = replace(get_preset("demo").model, variances=(0.2, 0.2, 0.5, 0.5))
    net = SSD(spec, ["a"])
    net.initialize()
    save_checkpoint(str(tmp_path / "c.params"), net, {"preset": "demo"})
    loaded, _ = load_checkpoint(str(tmp_path / "c.params"))
    assert loaded.spec == spec and loaded.spec.coder.variances == (0.2, 0.2, 0.5, 0.5)
