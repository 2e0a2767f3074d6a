"""One sampler per domain: how verification draws a point from each symbol's domain
(shared/spec-format.md, ``domain``). Every section draws through this table."""

from __future__ import annotations

import numpy as np


def _spd(rng, shape):
    b = rng.standard_normal(shape)
    return b @ b.T / shape[0] + np.eye(shape[0])


def _orthogonal(rng, shape):
    q, r = np.linalg.qr(rng.standard_normal(shape))
    return q * np.sign(np.diag(r))


def _onehot(rng, shape):
    return np.eye(shape[0])[rng.integers(shape[0])]


# How to draw a point from each domain (shared/spec-format.md, `domain`).
SAMPLERS = {
    "real": lambda rng, shape: rng.standard_normal(shape),
    "positive": lambda rng, shape: rng.uniform(0.5, 2.0, shape),
    "nonnegative": lambda rng, shape: rng.uniform(0.0, 2.0, shape),
    "unit_interval": lambda rng, shape: rng.uniform(0.05, 0.95, shape),
    "simplex": lambda rng, shape: rng.dirichlet(np.ones(shape[0])),
    "onehot": _onehot,
    "spd": _spd,
    "orthogonal": _orthogonal,
}


def sample_points(spec, points: int, seed: int, sizes: dict | None = None) -> dict:
    """{name: array of shape (points, *shape)} drawn from each symbol's domain."""
    rng = np.random.default_rng(seed)
    sizes = sizes or spec.dim_values
    out = {}
    for decl in spec.symbols:
        shape = tuple(int(d.subs(sizes)) for d in decl.shape)
        sampler = SAMPLERS[decl.domain]
        out[decl.name] = np.stack(
            [np.asarray(sampler(rng, shape), dtype=float) for _ in range(points)]
        )
    return out
