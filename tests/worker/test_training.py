"""Short training runs: the seed's Example 3 learns the synthetic task and overfits one batch;
cancel and the time limit stop cleanly; uploaded .npz datasets are validated."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.errors import PayloadTooLarge, ValidationFailed
from app.worker.loader import load_model
from app.worker.training import TrainingParams, run_training
from tests.fixtures.load import FIXTURES_DIR, load_config


def example3_small():  # type: ignore[no-untyped-def]
    """Example 3 from the stored seed fixture at 32x32x3 instead of 128x128x3: same layers and
    parameters, 16x less compute, so that a 60-step run takes seconds on two CPU cores."""
    return load_model(
        load_config(FIXTURES_DIR / "seed" / "example3.json"), None, "json", input_shape=[32, 32, 3]
    )


def tiny_model(classes: int = 3):  # type: ignore[no-untyped-def]
    import keras

    return keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(classes, activation="softmax"),
        ]
    )


def test_example3_learns_the_synthetic_task_and_overfits_one_batch() -> None:
    events: list[dict] = []
    result = run_training(
        example3_small(),
        {"steps": 60, "batch_size": 16, "seed": 0},
        on_step=events.append,
        should_stop=lambda: False,
        time_limit_s=600,
    )
    verdict = result["verdict"]
    assert result["status"] == "completed" and result["steps_completed"] == 60
    assert verdict["loss_decreased"] is True
    assert verdict["loss_final"] < 0.5 * verdict["loss_initial"]
    assert verdict["overfit_one_batch_passed"] is True
    assert result["overfit_one_batch"]["factor"] >= 10
    assert verdict["gradient_health_overall"] == "healthy"
    # progress: one event per step, in order, with an ETA; probes every 10 steps and on the last
    assert [e["step"] for e in events] == list(range(1, 61))
    assert events[-1]["eta_s"] == 0
    assert [e["step"] for e in events if "probe" in e] == [1, 11, 21, 31, 41, 51, 60]
    probe = events[-1]["probe"]
    assert {row["name"] for row in probe["layers"]} >= {"conv2d", "dense"}
    assert all(
        row["update_to_weight"] > 0 for row in probe["layers"] if row["grad_norm"] is not None
    )
    assert len(result["history"]["loss"]) == 60 and len(result["history"]["step_time_s"]) == 60
    assert result["history"]["accuracy"][-1] > 0.5


def test_cancel_stops_at_the_next_step_and_skips_the_overfit_check() -> None:
    seen: list[int] = []
    result = run_training(
        tiny_model(),
        {"steps": 500, "batch_size": 8},
        on_step=lambda e: seen.append(e["step"]),
        should_stop=lambda: len(seen) >= 5,
        time_limit_s=600,
    )
    assert result["status"] == "cancelled"
    assert result["steps_completed"] == 5 and seen == [1, 2, 3, 4, 5]
    assert result["overfit_one_batch"]["passed"] is None
    assert result["verdict"]["stopped"] == "cancelled"


def test_time_limit_stops_the_run_cleanly() -> None:
    # Far more steps than 3 s can hold on any machine, so the limit is what stops the run.
    params = TrainingParams.from_dict({"steps": 1_000_000, "batch_size": 8}, max_steps=1_000_000)
    events: list[dict] = []
    result = run_training(tiny_model(), params, on_step=events.append, time_limit_s=3.0)
    assert result["status"] == "time_limit"
    assert 0 < result["steps_completed"] == len(events) < 1_000_000
    last = events[-1]
    # the run stops at the first step boundary past the limit, however slow the machine: the
    # step before the last ended within the limit (elapsed_s is read where the limit is checked;
    # the last step's own time leaves out the bookkeeping between steps) and the last after it
    assert len(events) >= 2 and events[-2]["elapsed_s"] <= 3.0 <= last["elapsed_s"] + 0.5
    assert result["overfit_one_batch"]["reason"] == "not run: the run was time limit"
    zero = run_training(tiny_model(), {"steps": 10}, time_limit_s=0.0)
    assert zero["status"] == "time_limit" and zero["steps_completed"] == 0


def _npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def test_uploaded_npz_with_integer_labels_trains(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=96)
    patterns = rng.standard_normal((3, 6, 6, 2)).astype("float32")
    x = patterns[labels] + 0.3 * rng.standard_normal((96, 6, 6, 2)).astype("float32")
    path = _npz(tmp_path / "d.npz", x=x, y=labels)
    result = run_training(
        tiny_model(),
        {
            "steps": 80,
            "batch_size": 16,
            "dataset": "npz",
            "npz_path": str(path),
            "learning_rate": 0.01,
        },
        time_limit_s=600,
    )
    assert result["dataset"] == {"kind": "npz", "samples": 96}
    assert result["verdict"]["loss_decreased"] is True
    assert result["verdict"]["overfit_one_batch_passed"] is True


@pytest.mark.parametrize(
    "arrays,message",
    [
        ({"x": np.zeros((4, 6, 6, 2), "float32")}, "must contain arrays 'x' and 'y'"),
        (
            {"x": np.zeros((4, 6, 6, 1), "float32"), "y": np.zeros(4, "int64")},
            "Received: (4, 6, 6, 1)",
        ),
        (
            {"x": np.zeros((4, 6, 6, 2), "float32"), "y": np.full(4, 7)},
            "Class labels in 'y' must lie in [0, 3)",
        ),
        ({"x": np.zeros((4, 6, 6, 2), "float32"), "y": np.zeros(5, "int64")}, "as many samples"),
        ({"x": np.array(["a"] * 4), "y": np.zeros(4, "int64")}, "must hold numbers"),
        ({"x": np.full((4, 6, 6, 2), np.nan, "float32"), "y": np.zeros(4, "int64")}, "finite"),
    ],
)
def test_bad_npz_datasets_are_refused_with_what_was_received(
    tmp_path: Path, arrays: dict, message: str
) -> None:
    path = _npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValidationFailed) as info:
        run_training(
            tiny_model(), {"steps": 2, "dataset": "npz", "npz_path": str(path)}, time_limit_s=60
        )
    assert message in info.value.detail


def test_npz_with_pickled_objects_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pickle.npz"
    np.savez(path, x=np.array([{"a": 1}] * 4, dtype=object), y=np.zeros(4))
    with pytest.raises(ValidationFailed) as info:
        run_training(
            tiny_model(), {"steps": 2, "dataset": "npz", "npz_path": str(path)}, time_limit_s=60
        )
    assert "pickle" in info.value.detail.lower()


def test_npz_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    path = _npz(tmp_path / "big.npz", x=np.zeros((64, 6, 6, 2), "float32"), y=np.zeros(64, "int64"))
    with pytest.raises(PayloadTooLarge):
        run_training(
            tiny_model(),
            {"steps": 2, "dataset": "npz", "npz_path": str(path)},
            time_limit_s=60,
            max_npz_bytes=1024,
        )


@pytest.mark.parametrize(
    "raw,message",
    [
        ({"optimizer": "adagrad"}, "optimizer must be one of"),
        ({"steps": 0}, "steps must be an integer"),
        ({"steps": 5000}, "steps must be an integer in [1, 2000]"),
        ({"batch_size": 1000}, "batch_size"),
        ({"learning_rate": -1}, "learning_rate"),
        ({"dataset": "imagenet"}, "dataset must be"),
        ({"dataset": "npz"}, "needs an uploaded file"),
        ({"epochs": 3}, "Unknown training parameters"),
    ],
)
def test_training_parameters_are_validated(raw: dict, message: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        TrainingParams.from_dict(raw)
    assert message in info.value.detail


def test_sgd_defaults_to_a_larger_learning_rate() -> None:
    assert TrainingParams.from_dict({"optimizer": "SGD"}).learning_rate == 0.01
    assert TrainingParams.from_dict({}).learning_rate == 0.001


def _seeded_tiny_model():  # type: ignore[no-untyped-def]
    import keras

    keras.utils.set_random_seed(3)  # the same initial weights every time, as a retry rebuilds them
    return tiny_model()


@pytest.mark.parametrize("dataset", ["synthetic", "npz"])
def test_a_run_resumed_from_its_checkpoint_matches_an_uninterrupted_run(tmp_path: Path, dataset: str) -> None:
    """Stopped after 8 steps with a checkpoint at step 5, then resumed: the same 12 losses as a
    run that was never interrupted (same weights, optimizer state and batches)."""
    from app.worker.training import TrainingCheckpoint

    params: dict = {"steps": 12, "batch_size": 8, "overfit_check": False, "seed": 1}
    if dataset == "npz":
        rng = np.random.default_rng(0)
        labels = rng.integers(0, 3, size=40)  # 5 batches of 8: the order wraps around mid-run
        x = rng.standard_normal((3, 6, 6, 2)).astype("float32")[labels] + rng.standard_normal((40, 6, 6, 2))
        params.update(dataset="npz", npz_path=str(_npz(tmp_path / "d.npz", x=x.astype("float32"), y=labels)))
    straight = run_training(_seeded_tiny_model(), params, time_limit_s=600)
    checkpoint = TrainingCheckpoint(tmp_path / "work", every_steps=5)
    seen: list[dict] = []
    first = run_training(
        _seeded_tiny_model(), params, on_step=seen.append, should_stop=lambda: len(seen) >= 8,
        time_limit_s=600, checkpoint=checkpoint,
    )
    assert first["status"] == "cancelled" and first["steps_completed"] == 8
    assert [e["step"] for e in seen if e.get("checkpoint")] == [5]
    phases: list[tuple[str, dict]] = []
    resumed_steps: list[int] = []
    second = run_training(
        _seeded_tiny_model(), params, on_step=lambda e: resumed_steps.append(e["step"]),
        on_phase=lambda name, info: phases.append((name, info)), time_limit_s=600, checkpoint=checkpoint,
    )
    assert phases == [("training", {"resumed_from_step": 5, "steps": 12})]
    assert resumed_steps == list(range(6, 13))
    assert second["status"] == "completed" and second["resumed_from_step"] == 5
    assert second["steps_completed"] == 12 and len(second["history"]["step_time_s"]) == 12
    assert second["history"]["loss"] == pytest.approx(straight["history"]["loss"], rel=1e-4)
    assert second["history"]["loss"][:8] == pytest.approx(first["history"]["loss"], rel=1e-4)
    assert [p["step"] for p in second["probes"]] == [p["step"] for p in straight["probes"]] == [1, 11, 12]


def test_the_overfit_check_is_a_phase_with_its_duration_and_can_be_skipped() -> None:
    phases: list[str] = []
    result = run_training(
        tiny_model(), {"steps": 5, "batch_size": 8, "overfit_steps": 20},
        on_phase=lambda name, info: phases.append(name), time_limit_s=600,
    )
    assert phases == ["training", "overfit_check"]
    overfit = result["overfit_one_batch"]
    assert overfit["steps"] == 20 and overfit["duration_s"] > 0 and result["overfit_check_s"] == overfit["duration_s"]
    phases.clear()
    skipped = run_training(
        tiny_model(), {"steps": 5, "batch_size": 8, "overfit_check": False},
        on_phase=lambda name, info: phases.append(name), time_limit_s=600,
    )
    assert phases == ["training"]
    assert skipped["overfit_one_batch"] == {"passed": None, "steps": 0, "reason": "not requested"}
    assert skipped["verdict"]["overfit_one_batch_passed"] is None
    with pytest.raises(ValidationFailed, match="overfit_check must be true or false"):
        TrainingParams.from_dict({"overfit_check": "sometimes"})
