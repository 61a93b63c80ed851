"""Benchmarks: our engine and service against NumPy, HIPS autograd, PyTorch and JAX (issue 6)."""
