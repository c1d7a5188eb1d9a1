"""Helpers shared by tests."""

import jax
import numpy as np


def perturb(params, seed=1, scale=0.05):
  """Adds noise to every parameter, so zero-initialised layers (the fusion's output
  projections, the refiner's last conv) stop being trivial in tests. Numpy noise: one
  jax.random call per leaf shape would compile ~30 small programs."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda p: p + scale * rng.standard_normal(p.shape).astype(p.dtype), params)
