"""A seeded xoshiro256** generator for the simulator, in numba.

Its state is a plain uint64[4] array, so a run can stop and resume (per day, per buffer) and
produce the same stream; numba's global generator could not be carried between calls like that.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_MASK = (1 << 64) - 1


def rng_state(seed: int) -> np.ndarray:
    """uint64[4] state from an integer seed (splitmix64 expansion, as the xoshiro authors advise)."""
    x = seed & _MASK
    out = np.empty(4, np.uint64)
    for i in range(4):
        x = (x + 0x9E3779B97F4A7C15) & _MASK
        z = x
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
        out[i] = z ^ (z >> 31)
    return out


@njit(cache=True)
def _rotl(x, k):
    return (x << np.uint64(k)) | (x >> np.uint64(64 - k))


@njit(cache=True)
def next_u64(s):
    """Next raw 64-bit output; advances ``s`` in place."""
    result = _rotl(s[1] * np.uint64(5), 7) * np.uint64(9)
    t = s[1] << np.uint64(17)
    s[2] ^= s[0]
    s[3] ^= s[1]
    s[1] ^= s[2]
    s[0] ^= s[3]
    s[2] ^= t
    s[3] = _rotl(s[3], 45)
    return result


@njit(cache=True)
def uniform(s):
    """Uniform on (0, 1]: never 0, so ``log`` of it is always finite."""
    return float((next_u64(s) >> np.uint64(11)) + np.uint64(1)) * (1.0 / 9007199254740992.0)


@njit(cache=True)
def randint(s, n):
    """Uniform integer in [0, n)."""
    return int(next_u64(s) % np.uint64(n))


@njit(cache=True)
def normal(s):
    """Standard normal (Box-Muller; the second value is dropped to keep the state simple)."""
    return math.sqrt(-2.0 * math.log(uniform(s))) * math.cos(2.0 * math.pi * uniform(s))


@njit(cache=True)
def lognormal_int(s, median, sigma, lo):
    """Integer lognormal draw with the given median, at least ``lo``."""
    v = int(median * math.exp(sigma * normal(s)) + 0.5)
    return v if v > lo else lo


@njit(cache=True)
def pareto_int(s, alpha):
    """Integer Pareto draw >= 1 with tail exponent ``alpha`` (P(X > x) ~ x^-alpha)."""
    v = uniform(s) ** (-1.0 / alpha)
    return int(v) if v < 1e12 else 1_000_000_000_000
