"""The worker side of convlens: the only package that imports TensorFlow/Keras.

Nothing here imports TensorFlow at import time; each module imports it inside
the functions that need it, so that the API process (and any process that forks
afterwards) never loads it.

Example (in a worker process)::

    from app.worker.runtime import init_tensorflow
    from app.worker.loader import load_model
    from app.worker.gradients import measure

    init_tensorflow()
    model = load_model(config, None, "json")
    measured = measure(model, batches=4, batch_size=8, seed=0)
"""
