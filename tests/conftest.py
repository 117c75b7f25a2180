"""Shared fixtures: CPU only, quiet TensorFlow, tiny configurations."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
