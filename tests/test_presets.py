"""Presets are plain data: every preset survives JSON and comes back equal through from_dict."""
import dataclasses
import json

import pytest

from gluon_ssd.presets import DetectSpec, ModelSpec, Preset, get_preset, list_presets


@pytest.mark.parametrize("name", list_presets())
def test_every_preset_round_trips_through_json(name):
    preset = get_preset(name)
    again = Preset.from_dict(json.loads(json.dumps(dataclasses.asdict(preset))))
    assert again == preset and hash(again) == hash(preset)


def test_from_dict_keeps_defaults_for_absent_fields():
    assert DetectSpec.from_dict({"nms_threshold": 0.3}) == DetectSpec(nms_threshold=0.3)


@pytest.mark.parametrize("cls, d, message", [
    (DetectSpec, {"nms": 0.3}, r"f.json: unknown DetectSpec field\(s\) \['nms'\]"),
    (DetectSpec, [1, 2], r"f.json: DetectSpec must be a JSON object"),
    (ModelSpec, {"anchors": {}}, r"f.json: bad AnchorSpec \{\}"),
])
def test_from_dict_names_the_source_and_the_problem(cls, d, message):
    with pytest.raises(ValueError, match=message):
        cls.from_dict(d, "f.json")


def test_the_model_spec_owns_the_box_coder():
    spec = dataclasses.replace(get_preset("demo").model, variances=(0.2, 0.2, 0.4, 0.4))
    assert spec.coder.variances == (0.2, 0.2, 0.4, 0.4)
    assert "variances" not in {f.name for f in dataclasses.fields(DetectSpec)}
