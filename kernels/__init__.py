"""Pure array kernels (JAX, numba, NumPy references); no I/O library is imported here."""
