"""Predicted gradient flow (app.analysis.gradient_flow) on configs built with Keras.

The verdicts come from the architecture alone; the TensorFlow-marked test checks the
prediction against gradients measured in Keras at initialization.
"""

from __future__ import annotations

import gc
import math
from typing import Any

import pytest

from app.analysis import AnalysisResult, analyze
from app.analysis.gradient_flow import (
    EXPLODING_RATIO,
    NORMALIZED_EXPLODING_RATIO,
    VANISHING_RATIO,
    activation_gains,
    classify_ratio,
    initializer_variance,
)
from tests.analysis.builders import call, functional, input_layer
from tests.fixtures.load import FIXTURES_DIR, load_config, small_fixtures

GRADIENT = small_fixtures("gradient")


def _predicted(config: dict[str, Any]) -> dict[str, Any]:
    return analyze(config)["gradient_flow"]["predicted"]


def _layers(prediction: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in prediction["layers"]}


def test_a_report_predicts_once_and_keeps_no_graph_alive(monkeypatch: pytest.MonkeyPatch) -> None:
    """The findings read the report's prediction (one computation per report), and nothing
    outlives the call: a module-level cache once kept the last analysed graph alive."""
    from app.analysis import gradient_flow
    from app.analysis import report as report_module

    walked: list[int] = []  # ids only: holding the result would keep it alive
    predictions: list[Any] = []
    real_walk, real_predict = report_module.analyze_graph, gradient_flow.predict

    def recording_walk(graph: Any, **kwargs: Any) -> Any:
        result = real_walk(graph, **kwargs)
        walked.append(id(result))
        return result

    def counting_predict(result: Any) -> Any:
        predictions.append(None)
        return real_predict(result)

    monkeypatch.setattr(report_module, "analyze_graph", recording_walk)
    monkeypatch.setattr(gradient_flow, "predict", counting_predict)
    report = analyze(GRADIENT["residual_bn20_relu"].config())
    assert report["gradient_flow"]["predicted"]["verdict"] is not None
    assert {f["code"] for f in report["findings"]} >= {"stages"}
    assert len(predictions) == 1 and len(walked) == 1
    gc.collect()
    alive = [id(o) for o in gc.get_objects() if isinstance(o, AnalysisResult)]
    assert walked[0] not in alive


def test_thresholds_are_exported_and_stated() -> None:
    assert VANISHING_RATIO < 1 < EXPLODING_RATIO <= NORMALIZED_EXPLODING_RATIO
    prediction = _predicted(GRADIENT["plain20_relu_he"].config())
    assert prediction["thresholds"] == {"vanishing_below": VANISHING_RATIO,
                                        "exploding_above": EXPLODING_RATIO,
                                        "exploding_above_with_normalization":
                                            NORMALIZED_EXPLODING_RATIO}
    assert "first weighted layer" in prediction["ratio_definition"]
    assert classify_ratio(0.5) == "healthy"
    assert classify_ratio(VANISHING_RATIO * 0.9) == "vanishing"
    assert classify_ratio(EXPLODING_RATIO * 1.1) == "exploding"
    assert classify_ratio(None) is None


def test_plain_sigmoid_cnn_of_20_layers_is_vanishing() -> None:
    prediction = _predicted(GRADIENT["plain20_sigmoid"].config())
    assert prediction["verdict"] == "vanishing"
    assert prediction["ratio"] < VANISHING_RATIO
    assert prediction["first_layer"] == "conv1" and prediction["last_layer"] == "classifier"
    assert prediction["weighted_layers"] == 20
    conv1 = _layers(prediction)["conv1"]
    # A plain chain: one path, 19 weighted layers after conv1, no skip, 19 sigmoids on it.
    assert conv1["depth_to_output"] == {"shortest": 19, "longest": 19}
    assert conv1["skip_connections"] == 0
    assert conv1["saturating_activations"] == {"fewest": 19, "most": 19}
    assert conv1["normalizations"] == {"fewest": 0, "most": 0}
    # The scale shrinks monotonically towards the input.
    scales = [entry["log10_relative_gradient_scale"] for entry in prediction["layers"]]
    assert scales == sorted(scales)


@pytest.mark.parametrize("name", ["residual_bn20_sigmoid", "residual_bn20_relu",
                                  "residual_bn20_relu_postact"])
def test_same_depth_with_residuals_and_batchnorm_is_healthy(name: str) -> None:
    prediction = _predicted(GRADIENT[name].config())
    assert prediction["verdict"] == "healthy"
    assert VANISHING_RATIO <= prediction["ratio"] <= EXPLODING_RATIO
    assert prediction["weighted_layers"] == 20
    layers = _layers(prediction)
    # The identity shortcuts give conv1 a 1-layer path (the classifier) besides the 19-layer one.
    assert layers["conv1"]["depth_to_output"] == {"shortest": 1, "longest": 19}
    # Each convolution inside a block is bypassed by exactly that block's Add.
    assert layers["conv2"]["skip_connections"] == 1 and layers["conv2"]["skip_layers"] == ["add1"]
    assert layers["conv19"]["skip_layers"] == ["add9"]
    assert layers["conv2"]["normalizations"]["fewest"] >= 1


def test_sigmoid_after_the_add_blocks_the_identity_path_less_than_a_plain_stack() -> None:
    """Post-activation sigmoid blocks: every shortcut passes a sigmoid, yet BatchNormalization
    re-amplifies the branches; still far from the plain stack's 1e-12."""
    plain = _predicted(GRADIENT["plain20_sigmoid"].config())
    post = _predicted(GRADIENT["residual_bn20_sigmoid_postact"].config())
    assert post["log10_ratio"] > plain["log10_ratio"] + 6


def test_large_initialization_without_normalization_is_exploding() -> None:
    prediction = _predicted(GRADIENT["plain20_linear_large_init"].config())
    assert prediction["verdict"] == "exploding"
    assert prediction["ratio"] > EXPLODING_RATIO
    conv1 = _layers(prediction)["conv1"]
    assert conv1["initializer"] == "randomnormal" and conv1["weight_variance"] == [1.0]


def test_he_initialized_relu_stack_is_healthy() -> None:
    prediction = _predicted(GRADIENT["plain20_relu_he"].config())
    assert prediction["verdict"] == "healthy"
    conv5 = _layers(prediction)["conv5"]
    assert conv5["initializer"] == "henormal"
    assert conv5["weight_variance"] == [pytest.approx(2 / (9 * 16), rel=1e-5)]
    assert conv5["activation_gain"] == pytest.approx(0.5)


def test_seed_example3_is_healthy() -> None:
    prediction = _predicted(load_config(FIXTURES_DIR / "seed" / "example3.json"))
    assert prediction["verdict"] == "healthy"
    layers = _layers(prediction)
    assert layers["conv2d_1"]["skip_layers"] == ["add"]
    assert layers["conv2d_3"]["skip_layers"] == ["add_1"]
    assert layers["conv2d"]["skip_connections"] == 0
    assert layers["conv2d"]["depth_to_output"] == {"shortest": 2, "longest": 6}


@pytest.mark.parametrize(("activation", "gain"), [
    ("relu", 0.5), ("linear", 1.0), ("leaky_relu", 0.5 * (1 + 0.2 ** 2)),
])
def test_piecewise_linear_gains_are_exact(activation: str, gain: float) -> None:
    assert 10 ** activation_gains(activation, 0.0)[2] == pytest.approx(gain, rel=1e-9)


def test_smooth_gains_against_their_limits() -> None:
    # Near zero a sigmoid's slope is 1/4 (variance gain 1/16) and tanh's is 1.
    assert 10 ** activation_gains("sigmoid", -8.0)[2] == pytest.approx(1 / 16, rel=1e-4)
    assert 10 ** activation_gains("tanh", -8.0)[2] == pytest.approx(1.0, rel=1e-4)
    # Far into saturation both slopes vanish.
    assert 10 ** activation_gains("sigmoid", 6.0)[2] < 1e-3
    assert 10 ** activation_gains("tanh", 6.0)[2] < 1e-2
    # E[sigmoid(z)] = 1/2 for any symmetric z.
    assert 10 ** (activation_gains("sigmoid", 0.0)[0] / 2) == pytest.approx(0.5, rel=1e-6)


@pytest.mark.parametrize(("initializer", "expected"), [
    ("glorot_uniform", 2 / (288 + 576)),
    ({"class_name": "GlorotNormal", "config": {"seed": None}}, 2 / (288 + 576)),
    ({"module": "keras.initializers", "class_name": "HeNormal", "config": {}}, 2 / 288),
    ("lecun_normal", 1 / 288),
    ({"class_name": "VarianceScaling", "config": {"scale": 2.0, "mode": "fan_out"}}, 2 / 576),
    ({"class_name": "RandomNormal", "config": {"mean": 0.0, "stddev": 0.02}}, 0.02 ** 2),
    ({"class_name": "RandomUniform", "config": {"minval": -0.1, "maxval": 0.1}}, 0.2 ** 2 / 12),
    ("zeros", 0.0),
])
def test_initializer_variances(initializer: Any, expected: float) -> None:
    variance, _, known = initializer_variance(initializer, 288, 576)
    assert known
    assert variance == pytest.approx(expected, rel=1e-9)


def test_model_without_weighted_layers_says_why() -> None:
    config = {"class_name": "Sequential", "config": {"name": "pool_only", "layers": [
        {"class_name": "InputLayer", "config": {"batch_shape": [None, 8, 8, 3], "name": "in"}},
        {"class_name": "MaxPooling2D", "config": {"name": "pool", "pool_size": [2, 2]}},
    ]}}
    prediction = _predicted(config)
    assert prediction["verdict"] is None
    assert "no weighted layer" in prediction["reason"]


def test_ten_thousand_layer_chain_is_fast() -> None:
    """The prediction is linear in depth (one forward and one backward pass over the graph)."""
    import time

    from app.analysis import analyze_graph, build_graph
    from app.analysis.gradient_flow import predict

    layers = [{"class_name": "InputLayer", "config": {"batch_shape": [None, 16], "name": "in"}}]
    layers += [{"class_name": "Dense", "config": {"name": f"d{i}", "units": 16,
                                                 "activation": "tanh"}} for i in range(10_000)]
    result = analyze_graph(build_graph({"class_name": "Sequential",
                                        "config": {"name": "deep", "layers": layers}}))
    started = time.process_time()  # CPU time: the test machine is shared
    prediction = predict(result)
    elapsed = time.process_time() - started
    assert prediction["verdict"] == "vanishing"
    assert math.isfinite(prediction["log10_ratio"])
    assert elapsed < 2.0, f"{elapsed:.2f}s"


# --------------------------------------------------------------------------------------------
# Against gradients measured in Keras (needs TensorFlow)
# --------------------------------------------------------------------------------------------

MEASURED_CASES = ["plain20_sigmoid", "plain20_relu_he", "plain20_linear_large_init",
                  "residual_bn20_relu", "residual_bn20_relu_postact", "residual_bn20_sigmoid",
                  "residual_bn20_sigmoid_postact"]


@pytest.mark.tensorflow
@pytest.mark.parametrize("name", MEASURED_CASES)
def test_prediction_matches_keras_weight_gradients(name: str) -> None:
    """RMS kernel gradient of the first convolution over the last one, measured with Keras at
    initialization (batch 32, training mode), against the predicted ratio: within two decades
    and the same verdict."""
    import json

    keras = pytest.importorskip("keras")
    tf = pytest.importorskip("tensorflow")

    config = GRADIENT[name].config()
    keras.utils.set_random_seed(0)
    model = keras.models.model_from_json(json.dumps(config))
    inputs = tf.random.normal((32, *model.inputs[0].shape[1:]))
    labels = tf.random.uniform((32,), 0, 10, dtype=tf.int32)
    kernels = [layer for layer in model.layers if layer.__class__.__name__ == "Conv2D"]
    with tf.GradientTape() as tape:
        probabilities = model(inputs, training=True)
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, probabilities))
    grads = tape.gradient(loss, [kernels[0].kernel, kernels[-1].kernel])
    rms = [float(tf.sqrt(tf.reduce_mean(g ** 2))) for g in grads]
    measured = math.log10(rms[0] / rms[1])
    layers = _layers(_predicted(config))
    predicted = (layers[kernels[0].name]["log10_relative_weight_gradient_scale"]
                 - layers[kernels[-1].name]["log10_relative_weight_gradient_scale"])
    assert abs(predicted - measured) < 2.0, (predicted, measured)
    assert classify_ratio(10 ** predicted) == classify_ratio(10 ** measured)


def test_convnext_layer_scale_and_nested_stem() -> None:
    """ConvNeXt starts every residual branch scaled by LayerScale(1e-6): the branch kernels get
    ~1e-6 of the gradient while the identity path keeps the stem (a nested model) healthy."""
    from tests.fixtures.load import ModelFixture

    folder = FIXTURES_DIR / "applications"
    fixture = ModelFixture("convnexttiny", folder / "convnexttiny.json.gz",
                           folder / "convnexttiny.expected.json")
    prediction = _predicted(fixture.config())
    assert prediction["verdict"] == "healthy"
    assert prediction["first_layer"] == "convnext_tiny_stem"
    assert prediction["notes"] == []
    layers = _layers(prediction)
    branch = layers["convnext_tiny_stage_3_block_0_pointwise_conv_1"]
    # 1e-6 from the scale, less than a decade more from global pooling over 7x7 positions.
    assert -7.5 < branch["log10_relative_gradient_scale"] < -5.0


def test_a_residual_relu_chain_whose_signal_grows_past_float_range_is_predicted() -> None:
    """Without normalization ``x + relu(conv(x))`` grows by a constant factor per block: after
    2,000 blocks its second moment is hundreds of decades, beyond floats; the prediction stays
    in logs there (its ReLU mixtures are for moderate scales only) and still answers."""
    from app.analysis import analyze_graph, build_graph
    from app.analysis.gradient_flow import predict
    from bench.bench_scaling import chain_config

    prediction = predict(analyze_graph(build_graph(chain_config(2_000, residual=True))))
    assert prediction["verdict"] is not None
    assert prediction["layers"][0]["pre_activation_variance"] is not None
    assert prediction["layers"][-1]["pre_activation_variance"] is None  # beyond float range


def test_relu_masks_are_followed_per_component_through_residual_sums() -> None:
    """A ReLU on the way back passes P(open) of an even gradient, but a gradient that arrives
    on the units that stay open (the identity path of relu(x + branch) again and again) almost
    whole: per component of its input, the share that opens times the gradient its units get."""
    from app.analysis.gradient_flow import _profile, _relu_backward

    routes = ((0.3, 0.0, 0), (0.2, 0.5, 1), (0.5, 1.0, 2))  # weight, P(open), output component
    gain, shares = _relu_backward(routes, None)
    assert gain == pytest.approx(0.6)  # P(open): an even gradient
    assert sum(w * s for (w, _, _), s in zip(routes, shares, strict=True)) == pytest.approx(1.0)
    # All of the gradient on the far-open units (output component 2): passed whole.
    gain, _ = _relu_backward(routes, (0.0, 0.0, 1.0 / 0.5))
    assert gain == pytest.approx(1.0)
    # An even gradient arriving beside an uneven one of the same size: half of each.
    assert _profile([(0.0, (0.0, 2.0))], math.log10(2.0)) == pytest.approx((0.5, 1.5))



def test_an_integral_float_kernel_is_read_as_the_engine_reads_it_whatever_came_before() -> None:
    """The engine reads ``kernel_size: [3.0, 3.0]`` as 3x3 (as its shapes and parameters show);
    the prediction reads it the same way, and a cached border of one spelling never answers for
    the other: a report does not depend on what the process analysed before."""
    from app.analysis.gradient_flow import _border_of

    def model(kernel: list[Any]) -> dict[str, Any]:
        conv = {"filters": 4, "kernel_size": kernel, "padding": "same", "activation": "relu"}
        return functional([input_layer("x", (6, 6, 4)), call("Conv2D", "c1", conv, "x"),
                           call("Conv2D", "c2", conv, "c1")], ["x"], ["c2"])

    _border_of.cache_clear()
    alone = _predicted(model([3, 3]))
    _border_of.cache_clear()
    as_float = _predicted(model([3.0, 3.0]))
    after_float = _predicted(model([3, 3]))
    assert [entry["fan_in"] for entry in alone["layers"]] == [36, 36]
    assert after_float == alone
    assert as_float == alone


_HUGE_AND_TINY = [
    ("RandomNormal", {"mean": 0.0, "stddev": 1e200, "seed": None}, "exploding"),
    ("RandomNormal", {"mean": 1e300, "stddev": 1.0, "seed": None}, "exploding"),
    ("TruncatedNormal", {"mean": 0.0, "stddev": 1e-300, "seed": None}, "vanishing"),
    ("RandomUniform", {"minval": -1e154, "maxval": 1e154, "seed": None}, "exploding"),
    ("RandomUniform", {"minval": -1.7e308, "maxval": 1.7e308, "seed": None}, "exploding"),
    ("Constant", {"value": 1e300}, "exploding"),
    ("VarianceScaling", {"scale": 1e300, "mode": "fan_avg", "distribution": "uniform", "seed": None},
     "exploding"),
    ("Orthogonal", {"gain": 1e-200, "seed": None}, "vanishing"),
]


@pytest.mark.parametrize("activation", ["relu", "exponential", "selu", "tanh"])
@pytest.mark.parametrize(("initializer", "config", "verdict"), _HUGE_AND_TINY,
                         ids=[f"{c}-{i}" for i, (c, _, _) in enumerate(_HUGE_AND_TINY)])
def test_initializer_scales_beyond_float_range_are_predicted_not_failed(
        initializer: str, config: dict[str, Any], verdict: str, activation: str,
        caplog: pytest.LogCaptureFixture) -> None:
    """A weight variance beyond float range (a stddev of 1e200 squared, a uniform range of
    2e154 squared) or an ``exponential`` activation over a huge pre-activation once raised
    OverflowError in the prediction: the report lost its gradient flow and its findings and
    logged two tracebacks. The logs saturate at the largest float instead: the verdict is the
    one such an initialization earns, and the findings are there."""
    model = load_config(FIXTURES_DIR / "seed" / "example3.json")
    for layer in model["config"]["layers"]:
        if layer["class_name"] in ("Conv2D", "Dense"):
            layer["config"]["kernel_initializer"] = {
                "module": "keras.initializers", "class_name": initializer, "config": config,
                "registered_name": None}
            if layer["class_name"] == "Conv2D":
                layer["config"]["activation"] = activation
    with caplog.at_level("ERROR", logger="app.analysis.report"):
        report = analyze(model)
    assert caplog.records == []
    prediction = report["gradient_flow"]["predicted"]
    assert prediction["status"] in ("complete", "partial") and prediction["verdict"] == verdict
    assert math.isfinite(prediction["log10_ratio"])
    assert "gradient" in " ".join(prediction["reasons"])
    assert report["coverage"]["metrics"].get("findings", {}).get("status") != "partial"
    assert any(finding for finding in report["findings"])


def test_comparing_a_prediction_near_the_float_range_with_a_measurement_gives_null_factors() -> None:
    """A predicted scale of 1e299 against a float32 measurement of 1e-30 is a factor beyond
    floats: null, as the per-layer scales beyond 1e300 are, where 10.0 ** 329 raised."""
    from app.analysis.gradient_flow import compare

    far = compare({"per_layer": {"a": 1e299, "b": 1e299, "c": 1.0}, "ratio": 1e299},
                  {"per_layer": {"a": 1e-30, "b": 1e-30, "c": 1.0}, "ratio": 1e-30})
    assert far["layers"] == 3 and far["median_factor"] is None and far["max_factor"] is None
    assert far["ratio_factor"] is None and far["within_factor"] == round(1 / 3, 4)
    near = compare({"per_layer": {"a": 100.0}, "ratio": 100.0}, {"per_layer": {"a": 1.0}, "ratio": 1.0})
    assert near["median_factor"] == near["ratio_factor"] == 100.0


@pytest.mark.timeout(60)
def test_a_kernel_far_wider_than_its_input_costs_what_the_input_costs() -> None:
    """The border shares of a convolution once looped over every tap of its kernel: a 'same'
    Conv2D with a 10^12-wide kernel (a hostile config; refused afterwards for its parameters)
    kept a request's thread forever. Only the taps that reach the input are visited now, and
    the shares are those of the loop over every tap."""
    from app.analysis.gradient_flow import _border_axis

    def every_tap(size: int, out: int, kernel: int, stride: int, dilation: int, left: int
                  ) -> tuple[float, float]:
        total = square = 0
        for tap in range(kernel):
            low = left - tap * dilation
            count = max(0, min(out, -(-(size + low) // stride)) - max(0, -(-low // stride)))
            total, square = total + count, square + count * count
        return total / (out * kernel), square / (out * out * kernel)

    for geometry in [(8, 8, 100_001, 1, 1, 50_000), (30, 15, 20_001, 2, 3, 29_999), (5, 5, 3, 1, 1, 1),
                     (64, 32, 7, 2, 1, 3), (10, 4, 50, 3, 2, 60)]:
        assert _border_axis.__wrapped__(*geometry) == every_tap(*geometry), geometry
    share, kept = _border_axis(8, 8, 10**12, 1, 1, (10**12 - 1) // 2)
    # taps left-7 .. left+7 each reach 8 - |offset| outputs: 64 in all, 344 squared
    overlaps = [8 - abs(offset) for offset in range(-7, 8)]
    assert share == sum(overlaps) / (8 * 10**12) and kept == sum(c * c for c in overlaps) / (64 * 10**12)


@pytest.mark.parametrize(("key", "value"), [("kernel_size", 1e300), ("kernel_size", 1e20),
                                            ("kernel_size", 2**60), ("filters", 1.7e308)])
def test_a_kernel_past_float_range_is_reported_without_a_failure(
        key: str, value: float, caplog: pytest.LogCaptureFixture) -> None:
    """An integral float kernel of 1e300 taps per axis (or 1.7e308 filters) made integer fans
    past float range: the prediction's variance and the findings' wording raised OverflowError
    (logged, the request refused afterwards for its parameters). Such a kernel is not
    modelled, and the counts are worded from their digits."""
    model = load_config(FIXTURES_DIR / "seed" / "example3.json")
    convs = [layer for layer in model["config"]["layers"] if layer["class_name"] == "Conv2D"]
    conv = convs[0] if key == "kernel_size" else convs[-1]  # the last one feeds the pooling
    conv["config"]["padding"] = "same"
    conv["config"][key] = [value, value] if key == "kernel_size" else value
    with caplog.at_level("ERROR", logger="app.analysis.report"):
        report = analyze(model)
    assert caplog.records == []
    assert report["summary"]["total_params"] > 10**30
    assert report["coverage"]["metrics"].get("findings", {}).get("status") != "partial"
    assert report["gradient_flow"]["predicted"]["verdict"] is not None


def test_a_convolution_none_of_whose_taps_reach_the_input_is_predicted(
        caplog: pytest.LogCaptureFixture) -> None:
    """An even kernel of dilation 10^5, 'same' on 8 positions: its taps straddle the input
    (offsets -50,000 and +50,000 from every output) and none reads a real position, so its
    border share is 0, whose log10 raised ValueError (the report lost its gradient flow and
    findings). Nothing passes such a layer: its logs sit at the floor."""
    model = functional([
        input_layer("x", (8, 8, 3)),
        call("Conv2D", "conv", {"filters": 4, "kernel_size": [16, 16], "dilation_rate": [10**5, 10**5],
                                "padding": "same"}, "x"),
        call("GlobalAveragePooling2D", "pool", {}, "conv"),
        call("Dense", "head", {"units": 2}, "pool"),
    ], ["x"], ["head"])
    with caplog.at_level("ERROR", logger="app.analysis.report"):
        report = analyze(model)
    assert caplog.records == []
    assert report["gradient_flow"]["predicted"]["verdict"] is not None
    assert report["coverage"]["metrics"].get("findings", {}).get("status") != "partial"
