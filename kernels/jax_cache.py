"""The JAX persistent compilation cache of this checkout, which every tapeflow process reads.

JAX compiles a jitted kernel once per process for each new input shape (the kernels pad their
inputs to power-of-two buckets so shapes repeat); its persistent cache keeps the executables on
disk, keyed on the program, the shapes, jax/jaxlib and the backend, so a process finds what an
earlier one compiled. ``make setup`` (``python -m tapeflow.warm``) compiles the kernels the
commands, the flows, the detectors and the models use into :data:`DIR`, beside numba's kernel
cache (``kernels/__pycache__``, ignored by git); :func:`use_warmed` (run when ``kernels`` is
imported) points JAX at it. A kernel whose source changed has a new key: it compiles on first use
and is kept, and the size limit evicts the least recently used entries. A caller's own
``JAX_COMPILATION_CACHE_DIR`` (the test session's, for one) is left as it is.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DIR = Path(__file__).resolve().parent / "__pycache__" / "jax"
XLA_CACHES = "none"
MAX_SIZE = 1 << 30  # bytes; setting a limit also makes JAX lock the folder around reads and writes


def settings(path: Path | str, *, min_compile_s: float | None = None) -> dict[str, str]:
    """The environment that points JAX (in this process before it imports jax, and in children) at
    ``path``; ``min_compile_s``: keep compiles at least that long (JAX's default keeps those over 1 s)."""
    env = {"JAX_COMPILATION_CACHE_DIR": str(path), "JAX_COMPILATION_CACHE_MAX_SIZE": str(MAX_SIZE),
           # JAX's default turns on XLA's GPU autotune cache inside the cache folder, which puts the
           # folder's path into every key: a copy of the folder (the test session's) then missed all
           # of them. The CPU backend has no use for it.
           "JAX_PERSISTENT_CACHE_ENABLE_XLA_CACHES": XLA_CACHES}
    if min_compile_s is not None:
        env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = str(min_compile_s)
    return env


def apply(env: dict[str, str]) -> None:
    """Put ``env`` (:func:`settings`) in ``os.environ`` and, when jax is already imported, in its config."""
    os.environ.update(env)
    if "jax" not in sys.modules:
        return  # jax reads the variables when it is imported
    import jax

    jax.config.update("jax_compilation_cache_dir", env["JAX_COMPILATION_CACHE_DIR"])
    jax.config.update("jax_compilation_cache_max_size", int(env["JAX_COMPILATION_CACHE_MAX_SIZE"]))
    jax.config.update("jax_persistent_cache_enable_xla_caches", env["JAX_PERSISTENT_CACHE_ENABLE_XLA_CACHES"])
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" in env:
        jax.config.update("jax_persistent_cache_min_compile_time_secs",
                          float(env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))


def use_warmed() -> bool:
    """Point JAX at :data:`DIR` when ``make setup`` built it and the caller set no cache of its own."""
    if "JAX_COMPILATION_CACHE_DIR" in os.environ or not DIR.is_dir():
        return False
    apply(settings(DIR))
    return True
