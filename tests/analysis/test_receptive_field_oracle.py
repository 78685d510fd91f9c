"""Receptive fields from the engine against the empirical oracle (no TensorFlow needed).

The oracle (``tests/fixtures/oracle.py``) back-propagated one output unit through a linearised
copy of each model and read the support of the input gradient; the fixtures store its size,
effective stride and effective padding per layer, with the input size used. The engine must
give the same numbers at that input size, on both the Keras 3 and the Keras 2 config.
"""

from __future__ import annotations

from typing import Any

import pytest

from app.analysis import analyze
from tests.fixtures.load import FIXTURES_DIR, ModelFixture, application_fixtures, seed_fixtures

REQUIRED = {"example1", "example2", "example3", "vgg16", "resnet50", "mobilenetv2", "inceptionv3"}

WITH_FIELDS = [fixture for fixture in seed_fixtures() + application_fixtures()
               if "receptive_fields" in fixture.expected()]


def test_required_models_have_oracle_fields() -> None:
    measured = {fixture.id.rsplit("-", 1)[0] for fixture in WITH_FIELDS}
    assert REQUIRED - measured == set()


def test_oracle_vgg16_block5_pool_is_the_published_field() -> None:
    """Keras VGG16 matches TF-Slim vgg_16 (Araujo et al.'s table): 212 / 32 / 90."""
    stored = ModelFixture("vgg16", FIXTURES_DIR / "applications" / "vgg16.json.gz",
                          FIXTURES_DIR / "applications" / "vgg16.expected.json").expected()
    field = stored["receptive_fields"]["layers"]["block5_pool"]
    assert field["axes"] == [{"size": 212, "stride": 32, "padding": 90}] * 2


def _engine_fields(fixture: ModelFixture) -> tuple[dict[str, Any], dict[str, Any]]:
    expected = fixture.expected()
    fields = expected["receptive_fields"]
    channels = expected["input_shapes"][0][-1]
    report = analyze(fixture.config(), input_shape=[*fields["input_size"], channels])
    return fields, {layer["name"]: layer for layer in report["layers"]}


@pytest.mark.parametrize("fixture", WITH_FIELDS, ids=lambda f: f.id)
def test_receptive_fields_equal_the_oracle(fixture: ModelFixture) -> None:
    fields, layers = _engine_fields(fixture)
    assert len(fields["layers"]) > 0
    mismatches = []
    for name, measured in fields["layers"].items():
        field = layers[name]["receptive_field"]
        if field is None or field.get("global"):
            mismatches.append(f"{name}: engine {field!r}, oracle {measured['axes']}")
            continue
        got = [{"size": axis["size"], "stride": axis["stride"], "padding": axis["padding"]}
               for axis in field["axes"]]
        if got != measured["axes"]:
            mismatches.append(f"{name}: engine {got}, oracle {measured['axes']}")
    count = len(fields["layers"])
    assert mismatches == [], f"{len(mismatches)} of {count} differ: {mismatches[:8]}"


@pytest.mark.parametrize("fixture", [f for f in WITH_FIELDS if f.id.endswith("keras3")],
                         ids=lambda f: f.id)
def test_report_field_is_the_last_spatial_layer(fixture: ModelFixture) -> None:
    """report.receptive_field gives the deepest measured feature map's field and its coverage."""
    fields = fixture.expected()["receptive_fields"]
    expected = fixture.expected()
    channels = expected["input_shapes"][0][-1]
    report = analyze(fixture.config(), input_shape=[*fields["input_size"], channels])
    summary = report["receptive_field"]
    measured = fields["layers"][summary["layer"]]
    assert [{k: a[k] for k in ("size", "stride", "padding")} for a in summary["axes"]] == \
        measured["axes"]
    # The layer must be the last feature map in model order with a local field (the oracle
    # measured every such map; maps computed from pooled features are global).
    in_model_order = [layer["name"] for layer in expected["layers"]
                      if layer["name"] in fields["layers"]]
    assert summary["layer"] == in_model_order[-1]
    assert summary["input_size"] == fields["input_size"]
    sizes = [axis["size"] for axis in measured["axes"]]
    assert summary["coverage"] == [pytest.approx(size / total, abs=1e-3)
                                   for size, total in zip(sizes, fields["input_size"], strict=True)]
    assert summary["sees_whole_input"] == all(
        size >= total for size, total in zip(sizes, fields["input_size"], strict=True))
