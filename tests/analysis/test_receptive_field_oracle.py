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
from tests.analysis.builders import call, functional, input_layer
from tests.fixtures.load import FIXTURES_DIR, ModelFixture, application_fixtures, seed_fixtures
from tests.fixtures.support_oracle import axis_fields, supports

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


# -- through upsampling: the envelope against the exact numpy oracle -----------------------------
#
# Four decoders (a U-Net, a 2D autoencoder with output_padding, a 1D transposed-convolution
# autoencoder, a DeepLab-style head), anisotropic so that the axes differ. For every layer and
# axis the engine's field must equal what tests/fixtures/support_oracle.py reads off the exact
# per-unit supports: the envelope's size/stride/padding and, where units differ, the period and
# the range of unit sizes.

C2, T2 = "Conv2D", "Conv2DTranspose"


def _unet() -> dict[str, Any]:
    return functional([
        input_layer("x", (164, 132, 1)),
        call(C2, "enc1", {"filters": 4, "kernel_size": 3, "padding": "same"}, "x"),
        call("MaxPooling2D", "pool1", {"pool_size": 2}, "enc1"),
        call(C2, "enc2", {"filters": 4, "kernel_size": (3, 5), "padding": "valid"}, "pool1"),
        call("MaxPooling2D", "pool2", {"pool_size": 2}, "enc2"),
        call(C2, "bottom", {"filters": 4, "kernel_size": 3, "padding": "valid"}, "pool2"),
        call(T2, "up1", {"filters": 4, "kernel_size": (3, 2), "strides": 2}, "bottom"),
        call("Cropping2D", "skip2", {"cropping": [[1, 2], [2, 2]]}, "enc2"),
        call("Concatenate", "cat1", {"axis": -1}, "up1", "skip2", as_list=True),
        call(C2, "dec1", {"filters": 4, "kernel_size": 3, "padding": "same"}, "cat1"),
        call("UpSampling2D", "up2", {"size": 2}, "dec1"),
        call(C2, "up2_conv", {"filters": 4, "kernel_size": 2, "padding": "same"}, "up2"),
        call("Cropping2D", "skip1", {"cropping": [[5, 5], [8, 8]]}, "enc1"),
        call("Concatenate", "cat2", {"axis": -1}, "up2_conv", "skip1", as_list=True),
        call(C2, "dec2", {"filters": 4, "kernel_size": 3, "padding": "same"}, "cat2"),
        call(C2, "head", {"filters": 2, "kernel_size": 1}, "dec2"),
    ], ["x"], ["head"], name="unet")


def _autoencoder_output_padding() -> dict[str, Any]:
    return functional([
        input_layer("x", (151, 117, 1)),
        call(C2, "down1", {"filters": 4, "kernel_size": 3, "strides": 2, "padding": "same"}, "x"),
        call(C2, "down2", {"filters": 4, "kernel_size": (3, 5), "strides": (2, 3), "padding": "same"},
             "down1"),
        call(T2, "up1", {"filters": 4, "kernel_size": (3, 5), "strides": (2, 3), "padding": "same",
                         "output_padding": (0, 2)}, "down2"),
        call(T2, "up2", {"filters": 4, "kernel_size": 3, "strides": 2, "padding": "same",
                         "output_padding": 1}, "up1"),
        call(C2, "out", {"filters": 1, "kernel_size": 3, "padding": "same"}, "up2"),
    ], ["x"], ["out"], name="autoencoder")


def _autoencoder_1d() -> dict[str, Any]:
    return functional([
        input_layer("x", (301, 2)),
        call("Conv1D", "down1", {"filters": 4, "kernel_size": 5, "strides": 2, "padding": "same"}, "x"),
        call("Conv1D", "down2", {"filters": 4, "kernel_size": 3, "strides": 2}, "down1"),
        call("Conv1D", "down3", {"filters": 4, "kernel_size": 4, "strides": 3, "padding": "same"},
             "down2"),
        call("Conv1DTranspose", "up1", {"filters": 4, "kernel_size": 4, "strides": 3, "padding": "same",
                                        "output_padding": 1}, "down3"),
        call("Conv1DTranspose", "up2", {"filters": 4, "kernel_size": 3, "strides": 2}, "up1"),
        call("Conv1DTranspose", "up3", {"filters": 4, "kernel_size": 5, "strides": 2, "padding": "same"},
             "up2"),
        call("Conv1D", "out", {"filters": 2, "kernel_size": 3, "padding": "same"}, "up3"),
    ], ["x"], ["out"], name="autoencoder1d")


def _deeplab_head() -> dict[str, Any]:
    return functional([
        input_layer("x", (256, 224, 3)),
        call(C2, "stem", {"filters": 4, "kernel_size": 3, "strides": 2, "padding": "same"}, "x"),
        call(C2, "low", {"filters": 4, "kernel_size": 3, "padding": "same"}, "stem"),
        call(C2, "down2", {"filters": 4, "kernel_size": 3, "strides": 2, "padding": "same"}, "low"),
        call(C2, "down3", {"filters": 4, "kernel_size": (3, 5), "strides": 2, "padding": "same"}, "down2"),
        call(C2, "aspp1", {"filters": 4, "kernel_size": 1}, "down3"),
        call(C2, "aspp2", {"filters": 4, "kernel_size": 3, "dilation_rate": 2, "padding": "same"}, "down3"),
        call(C2, "aspp3", {"filters": 4, "kernel_size": 3, "dilation_rate": (3, 4), "padding": "same"},
             "down3"),
        call("Concatenate", "aspp", {"axis": -1}, "aspp1", "aspp2", "aspp3", as_list=True),
        call(C2, "project", {"filters": 4, "kernel_size": 1}, "aspp"),
        call("UpSampling2D", "up4", {"size": 4, "interpolation": "bilinear"}, "project"),
        call("Concatenate", "fuse", {"axis": -1}, "up4", "low", as_list=True),
        call(C2, "refine", {"filters": 4, "kernel_size": 3, "padding": "same"}, "fuse"),
        call("Resizing", "logits", {"height": 256, "width": 224, "interpolation": "bilinear"}, "refine"),
        call("Resizing", "logits_nearest", {"height": 384, "width": 280, "interpolation": "nearest"},
             "refine"),
    ], ["x"], ["logits", "logits_nearest"], name="deeplab")


def _volumetric() -> dict[str, Any]:
    return functional([
        input_layer("x", (46, 40, 34, 1)),
        call("Conv3D", "down", {"filters": 2, "kernel_size": 3, "strides": (2, 2, 1), "padding": "same"}, "x"),
        call("Conv3DTranspose", "up", {"filters": 2, "kernel_size": (3, 2, 3), "strides": (2, 2, 1),
                                       "padding": "same", "output_padding": (1, 1, 0)}, "down"),
        call("UpSampling3D", "up_more", {"size": (1, 2, 3)}, "up"),
        call("Conv3D", "out", {"filters": 1, "kernel_size": 2, "padding": "same"}, "up_more"),
    ], ["x"], ["out"], name="volumetric")


def _upsampling_1d() -> dict[str, Any]:
    return functional([
        input_layer("x", (240, 1)),
        call("Conv1D", "down", {"filters": 2, "kernel_size": 4, "strides": 3}, "x"),
        call("UpSampling1D", "up", {"size": 3}, "down"),
        call("Conv1D", "smooth", {"filters": 2, "kernel_size": 2, "padding": "same"}, "up"),
        call("ZeroPadding1D", "pad", {"padding": (2, 1)}, "smooth"),
        call("Conv1D", "out", {"filters": 1, "kernel_size": 3}, "pad"),
    ], ["x"], ["out"], name="upsampling1d")


def _resampling() -> dict[str, Any]:
    """The other kernels: bicubic upsampling, area and antialiased shrinking, Lanczos."""
    return functional([
        input_layer("x", (60, 54, 1)),
        call(C2, "conv", {"filters": 2, "kernel_size": 3, "padding": "same"}, "x"),
        call("UpSampling2D", "bicubic", {"size": (2, 3), "interpolation": "bicubic"}, "conv"),
        call("Resizing", "area", {"height": 80, "width": 108, "interpolation": "area"}, "bicubic"),
        call("Resizing", "shrink", {"height": 50, "width": 72, "interpolation": "bilinear",
                                    "antialias": True}, "area"),
        call("Resizing", "lanczos", {"height": 120, "width": 96, "interpolation": "lanczos3"}, "shrink"),
        call("UpSampling2D", "lanczos5", {"size": 2, "interpolation": "lanczos5"}, "shrink"),
    ], ["x"], ["lanczos", "lanczos5"], name="resampling")


DECODERS = {"unet": _unet, "autoencoder_output_padding": _autoencoder_output_padding,
            "autoencoder_1d": _autoencoder_1d, "deeplab_head": _deeplab_head,
            "volumetric": _volumetric, "upsampling_1d": _upsampling_1d, "resampling": _resampling}


@pytest.mark.parametrize("build", DECODERS.values(), ids=list(DECODERS))
def test_fields_through_upsampling_equal_the_exact_oracle(build: Any) -> None:
    config = build()
    report = analyze(config)
    layers = {layer["name"]: layer for layer in report["layers"]}
    mismatches = []
    checked_periodic = 0
    for name, per_axis in supports(config).items():
        engine = layers[name]["receptive_field"]["axes"]
        for axis, support in enumerate(per_axis):
            expected = axis_fields(support)
            checked_periodic += "period" in expected
            if engine[axis] != expected:
                mismatches.append(f"{name} axis {axis}: engine {engine[axis]}, oracle {expected}")
    assert mismatches == []
    assert checked_periodic > 0, "the model should have layers whose units differ"


def test_a_pattern_too_long_to_follow_is_bounded_by_its_envelope() -> None:
    """Resizing 300 -> 257 repeats after 257 units; upsampling that by 2 would make 514, more
    than MAX_PERIOD: the resized units are replaced by their envelope, and the fields after it,
    marked inexact, still contain every unit's true field."""
    from fractions import Fraction

    import numpy as np

    from app.analysis.rules.periodic import MAX_PERIOD

    config = functional([
        input_layer("x", (300, 300, 1)),
        call("Resizing", "resize", {"height": 257, "width": 150, "interpolation": "bilinear"}, "x"),
        call("UpSampling2D", "up", {"size": 2}, "resize"),
        call(C2, "conv", {"filters": 1, "kernel_size": 3, "padding": "same"}, "up"),
    ], ["x"], ["conv"], name="long_period")
    report = analyze(config)
    layers = {layer["name"]: layer for layer in report["layers"]}
    assert layers["resize"]["receptive_field"]["axes"][0]["period"] == 257 > MAX_PERIOD
    oracle = supports(config)
    for name in ("up", "conv"):
        axis = layers[name]["receptive_field"]["axes"][0]
        assert axis["exact"] is False
        stride, padding, size = (Fraction(axis[key]).limit_denominator(1000)
                                 for key in ("stride", "padding", "size"))
        support = oracle[name][0]
        for unit in range(support.shape[0] // 3, 2 * support.shape[0] // 3):
            seen = np.flatnonzero(support[unit])
            start = unit * stride - padding
            assert start <= seen[0] and seen[-1] + 1 <= start + size, (name, unit)
