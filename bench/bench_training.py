"""Training benchmark, in one run:

1. Instrumented training throughput (``app.worker.training.run_training``: per-step loss,
   accuracy, step time and global gradient norm, per-layer probes every 10 steps) against
   plain ``model.fit`` on the same model, data, optimizer and number of steps.
   Goal: at least 90% of ``model.fit``'s steps per second. Both are timed after their
   compilation (``fit`` is warmed up first; the instrumented run's first call of each
   compiled step is reported as compile time), interleaved and repeated, median reported.
2. Delay from submit (``POST /v1/training-runs`` to a running ``convlens serve`` with one
   local worker, already warm) to the first training step starting, and to it finishing
   (the latter includes tracing and XLA compilation). Goal: under 0.5 s to start.

Run::

    python bench/bench_training.py            # Example 3 at 32x32x3, 200 steps, 3 repeats
    python bench/bench_training.py --quick    # 60 steps, 2 repeats
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SEED_EXAMPLE3 = ROOT / "tests" / "fixtures" / "seed" / "example3.json"


def throughput(steps: int, batch_size: int, repeats: int, input_shape: list[int]) -> dict[str, Any]:
    import keras

    from app.worker.data import describe_model_io
    from app.worker.loader import load_model
    from app.worker.training import (
        BatchSource,
        TrainingParams,
        compile_like_fit,
        make_optimizer,
        run_training,
    )

    config = json.loads(SEED_EXAMPLE3.read_text())
    keras.utils.set_random_seed(0)
    plain = load_model(config, None, "json", input_shape=input_shape)
    initial = plain.get_weights()
    io = describe_model_io(plain)
    params = TrainingParams(steps=steps, batch_size=batch_size, overfit_steps=0)
    dataset = BatchSource(params, io, max_npz_bytes=1 << 30).dataset()  # the same batches for both
    compile_like_fit(plain, io, make_optimizer("adam", 1e-3))
    plain.fit(dataset, steps_per_epoch=3, epochs=1, verbose=0)  # compile outside the timing
    rows = []
    for _ in range(repeats):
        plain.set_weights(initial)
        started = time.perf_counter()
        plain.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)
        fit_s = time.perf_counter() - started
        instrumented = load_model(config, None, "json", input_shape=input_shape)
        instrumented.set_weights(initial)
        result = run_training(instrumented, params, time_limit_s=3600)
        timed_steps = (
            result["steps_completed"] - 2
        )  # the first plain step and the first probe step compile
        inst_s = result["train_elapsed_s"] - result["compile_s"]
        rows.append(
            {
                "fit_steps_per_s": steps / fit_s,
                "instrumented_steps_per_s": timed_steps / inst_s,
                "compile_s": result["compile_s"],
            }
        )
        rows[-1]["ratio"] = rows[-1]["instrumented_steps_per_s"] / rows[-1]["fit_steps_per_s"]
    return {
        "model": f"seed Example 3 at {input_shape}",
        "steps": steps,
        "batch_size": batch_size,
        "fit_steps_per_s": statistics.median(r["fit_steps_per_s"] for r in rows),
        "instrumented_steps_per_s": statistics.median(r["instrumented_steps_per_s"] for r in rows),
        "ratio": statistics.median(r["ratio"] for r in rows),
        "ratios": [round(r["ratio"], 3) for r in rows],
        "instrumented_compile_s": statistics.median(r["compile_s"] for r in rows),
    }


def submit_delay(runs: int) -> dict[str, Any]:
    import httpx

    from bench import Service

    config = json.loads(SEED_EXAMPLE3.read_text())
    env = {"CONVLENS_LOCAL_WORKERS": "1", "CONVLENS_MAX_CONCURRENT_TRAINING_PER_TENANT": "10"}
    delays_start, delays_done = [], []
    with Service(env=env) as service:
        client = httpx.Client(base_url=service.url, timeout=60)
        analysis = client.post(
            "/v1/analyses", json={"architecture": config, "input_shape": [32, 32, 3]}
        ).json()
        body = {"analysis_id": analysis["id"], "steps": 5, "batch_size": 8, "overfit_steps": 0}

        def run_once() -> dict[str, Any]:
            submitted = time.time()
            run = client.post("/v1/training-runs", json=body).json()
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                state = client.get(f"/v1/training-runs/{run['id']}").json()
                if state["status"] in ("succeeded", "failed", "cancelled"):
                    break
                time.sleep(0.2)
            assert state["status"] == "succeeded", state
            with client.stream("GET", f"/v1/training-runs/{run['id']}/events") as stream:
                text = "".join(stream.iter_text())
            first = next(
                json.loads(block.split("data: ", 1)[1])
                for block in text.split("\n\n")
                if "event: step" in block
            )
            return {"submitted": submitted, "first": first}

        run_once()  # warm-up: the worker's next TensorFlow process is started after each job
        for _ in range(runs):
            time.sleep(15)  # let the spare TensorFlow process finish importing (a warm worker)
            outcome = run_once()
            first = outcome["first"]
            delays_done.append(first["wall_time"] - outcome["submitted"])
            delays_start.append(first["wall_time"] - first["step_time_s"] - outcome["submitted"])
    return {
        "to_first_step_start_s": statistics.median(delays_start),
        "to_first_step_done_s": statistics.median(delays_done),
        "samples_start_s": [round(d, 3) for d in delays_start],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    steps = args.steps or (60 if args.quick else 200)
    repeats = 2 if args.quick else 3
    result = throughput(steps, args.batch_size, repeats, [32, 32, 3])
    print(
        f"training throughput ({result['model']}, batch {result['batch_size']}, {steps} steps): "
        f"model.fit {result['fit_steps_per_s']:.2f} steps/s, instrumented "
        f"{result['instrumented_steps_per_s']:.2f} steps/s"
    )
    print(
        f"instrumented / model.fit throughput ratio: {result['ratio']:.1%} (repeats "
        f"{result['ratios']}; "
        f"goal >= 90%: {'met' if result['ratio'] >= 0.9 else 'NOT met'}); "
        f"instrumented compile {result['instrumented_compile_s']:.2f} s"
    )
    delay = submit_delay(1 if args.quick else 3)
    print(
        f"submit-to-first-step delay on a warm worker: {delay['to_first_step_start_s']:.3f} s "
        "to the first step "
        f"starting (samples {delay['samples_start_s']}; goal < 0.5 s: "
        f"{'met' if delay['to_first_step_start_s'] < 0.5 else 'NOT met'}), "
        f"{delay['to_first_step_done_s']:.2f} s to it finishing (includes tracing and XLA "
        "compilation)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
