"""HTTP layer: translates requests to service calls and back. Never imports TensorFlow."""
