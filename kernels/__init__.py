"""Pure array kernels (JAX, numba, NumPy references); no I/O library is imported here."""

from kernels.jax_cache import use_warmed

use_warmed()  # the JAX kernels' compiled code from `make setup` (kernels/jax_cache.py)
