"""The activations of HF's ACT2FN that a vision config may name, in NumPy.

`ACTIVATIONS` is the one table: `VisionConfig` accepts exactly its keys (`SUPPORTED_ACTS`).
Released towers use "silu" in the MLP; the patch merger always uses the exact GELU.
"""

import math

import numpy as np


def silu(x):  # [...] -> [...]
    with np.errstate(over="ignore"):  # exp(-x) = inf for very negative x gives the right limit -0
        return x / (1 + np.exp(-x))


def gelu(x):  # [...] -> [...]
    """Exact GELU, x * Phi(x): HF's nn.GELU() / ACT2FN["gelu"]."""
    return 0.5 * x * (1 + erf(x / math.sqrt(2)))


def gelu_tanh(x):  # [...] -> [...]
    """The tanh approximation: ACT2FN["gelu_new"] and ["gelu_pytorch_tanh"]."""
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def quick_gelu(x):  # [...] -> [...]
    return silu(1.702 * x) / 1.702


ACTIVATIONS = {"silu": silu, "swish": silu, "gelu": gelu, "gelu_new": gelu_tanh,
               "gelu_pytorch_tanh": gelu_tanh, "quick_gelu": quick_gelu}


def erf(x):  # [...] -> [...]
    """Error function, accurate to a few ulp (NumPy has none; math.erf is scalar only)."""
    x = np.asarray(x)
    if x.dtype.kind != "f":
        x = x.astype(np.float64)
    dt = x.dtype
    z = np.abs(x)
    out = np.empty_like(z)
    small = z < 2.0
    # |x| < 2: erf(z) = 2z/sqrt(pi) e^{-z^2} sum_n (2z^2)^n / (1*3*...*(2n+1)); all terms are
    # positive, so no cancellation. Stop once every term is below a quarter ulp of 1 (sum >= 1).
    zs = z[small]
    two_z2 = 2 * zs * zs
    term, total = np.ones_like(zs), np.ones_like(zs)
    n = 0
    while term.size and term.max() > np.finfo(dt).eps / 4:
        n += 1
        term *= two_z2
        term *= dt.type(1.0 / (2 * n + 1))
        total += term
    out[small] = (2 / math.sqrt(math.pi)) * zs * np.exp(-zs * zs) * total
    # |x| >= 2: erfc(z) = e^{-z^2}/sqrt(pi) / (z + (1/2)/(z + 1/(z + (3/2)/(z + ...)))),
    # a continued fraction evaluated from the tail; 40 levels reach float64 precision at z = 2.
    zl = z[~small]
    frac = zl.copy()
    for k in range(40 if dt == np.float64 else 16, 0, -1):
        frac = zl + (k / 2) / frac
    out[~small] = 1 - np.exp(-zl * zl) / math.sqrt(math.pi) / frac
    return np.copysign(out, x)
