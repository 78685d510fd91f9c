"""The measured effective receptive field shows what the literature shows (Luo et al., NeurIPS
2016): it grows with depth, it is smaller than the theoretical field, and it is centred on a
symmetric network. It never leaves the theoretical field (a gradient outside it is impossible,
so this cross-checks the static fields), a linear network of uniform kernels gives its closed
form exactly, and uploaded weights are the ones measured: weights chosen so that the answer is
known beforehand give exactly that answer.

Example 3 at 33x33 and ResNet50 at 96x96, a few samples each (the job's kind is run in this
process, as the worker's TensorFlow child runs it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.analyses.effective_field import default_layers
from app.analysis import analyze
from app.analysis.effective_field import attach_effective_field
from app.analysis.schema import validate_report
from app.config import Settings
from app.jobs.kinds import ArchitectureSpec, JobContext, JobSpec, get_kind
from tests.fixtures.load import FIXTURES_DIR, load_config

EXAMPLE3_INPUT = [33, 33, 3]
RESNET_INPUT = [96, 96, 3]


class _Reporter:
    def __init__(self) -> None:
        self.fractions: list[float] = []

    def progress(self, fraction: float, detail: dict[str, Any] | None = None) -> None:
        self.fractions.append(fraction)

    def event(self, kind: str, payload: dict[str, Any]) -> None:
        pass

    def should_stop(self) -> bool:
        return False


def _run(config: dict[str, Any], input_shape: list[int], tmp_path: Path, *, fmt: str = "json",
         blob: Path | None = None, samples: int = 8) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the static report, the effective_field job's result) for the default layers."""
    report = analyze(config, input_shape=input_shape)
    layers = default_layers(report)
    job = JobSpec(id="job", kind="effective_field", attempt=1, name=None, parent_id="analysis",
                  parameters={"input_shape": input_shape, "layers": layers, "samples": samples,
                              "batch_size": 8, "seed": 0},
                  time_limit_s=600)
    architecture = ArchitectureSpec(id="arch", name=None, format=fmt, config=config,
                                    blob_path=str(blob) if blob else None, has_weights=blob is not None)
    reporter = _Reporter()
    context = JobContext(job=job, architecture=architecture, settings=Settings(), reporter=reporter,
                         work_dir=tmp_path)
    result = get_kind("effective_field").run(context)
    assert reporter.fractions[-1] == 1.0
    validate_report(attach_effective_field(report, {**result, "job_id": "job"}))
    return report, result


def _rows(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["layer"]: row for row in result["layers"]}


def _assert_inside_theoretical_field(result: dict[str, Any]) -> None:
    for row in result["layers"]:
        assert row["total_influence"] > 0, row["layer"]
        assert row["mass_inside_field"] == 1.0, row["layer"]


def test_example3_grows_with_depth_stays_inside_and_below_its_field_and_is_centred(tmp_path: Path) -> None:
    config = load_config(FIXTURES_DIR / "seed" / "example3.json")
    _, result = _run(config, EXAMPLE3_INPUT, tmp_path)
    assert result["weights"] == "initialisation" and result["input_size"] == [33, 33]
    rows = result["layers"]
    assert [row["layer"] for row in rows] == ["conv2d", "add", "conv2d_3", "conv2d_5"]
    _assert_inside_theoretical_field(result)
    # grows with depth
    radii = [row["radius95"] for row in rows]
    assert radii == sorted(radii) and radii[-1] > radii[0] + 2, radii
    assert rows[-1]["size95"][0] > rows[0]["size95"][0]
    # one 3x3 convolution: the whole field matters; six of them: a core of it does
    assert rows[0]["fraction"] == [1.0, 1.0]
    deepest = rows[-1]
    assert all(share < 0.85 for share in deepest["fraction"]), deepest
    assert deepest["area_fraction"] < 0.6
    fractions = [row["area_fraction"] for row in rows]
    assert fractions == sorted(fractions, reverse=True), fractions  # a shrinking share of a growing field
    # a symmetric network: the influence is centred on the unit's field
    for row in rows:
        assert not row["field_clipped"]
        assert all(abs(offset) < 0.5 for offset in row["centre_offset"]), row
        assert row["centre"] == pytest.approx(row["field_centre"], abs=0.5)


def test_example3_with_uploaded_weights_measures_those_weights(tmp_path: Path) -> None:
    from app import pipeline
    from tests.conftest import make_settings
    from tests.worker.models import centre_tap_only, seed_example3

    model = seed_example3(tuple(EXAMPLE3_INPUT))  # type: ignore[arg-type]
    centre_tap_only(model)
    blob = tmp_path / "example3-centre.keras"
    model.save(blob)
    uploaded_file = pipeline.prepare_file(blob, filename=blob.name, settings=make_settings(tmp_path))
    assert uploaded_file.has_weights and uploaded_file.format == "keras"
    config = uploaded_file.config  # what the upload stores: the gated config, weights in the blob
    _, uploaded = _run(config, EXAMPLE3_INPUT, tmp_path, fmt="keras", blob=blob)
    _, initial = _run(config, EXAMPLE3_INPUT, tmp_path)
    assert uploaded["weights"] == "uploaded" and initial["weights"] == "initialisation"
    _assert_inside_theoretical_field(uploaded)
    for row in uploaded["layers"]:
        assert row["size95"] == [1, 1] and row["area95"] == 1 and row["radius95"] == 0.0, row
        assert row["centre"] == row["field_centre"]
    assert initial["layers"][-1]["size95"][0] >= 7  # the same model at initialisation (names vary per process)


def test_resnet50_grows_with_depth_and_is_smaller_than_its_field(tmp_path: Path) -> None:
    config = load_config(FIXTURES_DIR / "applications" / "resnet50.json.gz")
    _, result = _run(config, RESNET_INPUT, tmp_path)
    rows = result["layers"]
    assert [row["layer"] for row in rows] == [
        "conv1_relu", "conv2_block3_out", "conv3_block4_out", "conv4_block6_out", "conv5_block3_out"
    ]
    _assert_inside_theoretical_field(result)
    radii = [row["radius95"] for row in rows]
    assert radii == sorted(radii) and radii[-1] > 4 * radii[0], radii
    by_layer = _rows(result)
    stage2 = by_layer["conv2_block3_out"]  # 35 px, inside the 96 px input
    assert not stage2["field_clipped"]
    assert all(share < 0.9 for share in stage2["fraction"]) and stage2["area_fraction"] < 0.7, stage2
    assert all(abs(offset) < 1.0 for offset in stage2["centre_offset"]), stage2
    deepest = by_layer["conv5_block3_out"]  # 483 px: clipped to the input, still not all of it
    assert deepest["field_clipped"] and deepest["area_fraction"] < 0.9


def test_resnet50_with_uploaded_weights_whose_residual_branches_are_off(tmp_path: Path) -> None:
    """The last BatchNorm of every residual branch with gamma 0 (the zero-init residual): only
    the shortcuts carry signal, so every unit sees what the stem sees, 7x7 convolution then
    3x3 pooling (11 px), however deep; at initialisation the same layer sees most of the input."""
    from app.worker.loader import load_model

    config = load_config(FIXTURES_DIR / "applications" / "resnet50.json.gz")
    model = load_model(config, None, "json")
    silenced = 0
    for layer in model.layers:
        if layer.name.endswith("_3_bn"):
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights([np.zeros_like(gamma), beta, mean, variance])
            silenced += 1
    assert silenced == 16
    blob = tmp_path / "resnet50-zero-residual.keras"
    model.save(blob)
    _, result = _run(config, RESNET_INPUT, tmp_path, fmt="keras", blob=blob, samples=4)
    assert result["weights"] == "uploaded"
    _assert_inside_theoretical_field(result)
    for row in result["layers"][1:]:
        assert max(row["size95"]) <= 11 and row["area95"] <= 121, row


def test_a_linear_network_of_uniform_kernels_matches_its_closed_form(tmp_path: Path) -> None:
    """Luo et al.'s first example: n linear 3x3 convolutions with uniform weights. Every path
    from a pixel to the centre unit has weight 1, so its influence is the number of paths, the
    n-fold convolution of [1, 1, 1] with itself along each axis: the measured heat map must be
    that outer product exactly, whatever the inputs."""
    import keras

    from app import pipeline
    from tests.conftest import make_settings

    depth = 5
    layers: list[Any] = [keras.Input(shape=(33, 33, 1))]
    layers += [keras.layers.Conv2D(1, 3, padding="same", use_bias=False, kernel_initializer="ones",
                                   name=f"uniform{i + 1}") for i in range(depth)]
    model = keras.Sequential(layers, name="uniform_linear")
    blob = tmp_path / "uniform.keras"
    model.save(blob)
    config = pipeline.prepare_file(blob, filename=blob.name, settings=make_settings(tmp_path)).config
    _, result = _run(config, [33, 33, 1], tmp_path, fmt="keras", blob=blob, samples=2)
    paths = np.array([1.0])
    for _ in range(depth):
        paths = np.convolve(paths, [1.0, 1.0, 1.0])  # 11 taps: 1, 5, 15, 30, 45, 51, ...
    expected = np.zeros((33, 33))
    expected[11:22, 11:22] = np.outer(paths, paths)
    deepest = _rows(result)[f"uniform{depth}"]
    assert deepest["field_box"] == [[11, 21], [11, 21]]
    assert deepest["total_influence"] == pytest.approx(expected.sum())  # 3**10 paths
    assert np.allclose(deepest["heatmap"]["values"], expected / expected.max(), atol=1e-4)
    share = np.cumsum(paths / paths.sum())
    core = int(np.searchsorted(share, 0.975)) - int(np.searchsorted(share, 0.025, side="right")) + 1
    assert deepest["size95"] == [core, core] and core < 11
