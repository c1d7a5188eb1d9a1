"""Losses: mean voxel binary cross-entropy of the coarse and refined volumes."""

import jax
import jax.numpy as jnp

from refine3d_jax.models.resample import space_to_depth


def voxel_bce(logits: jax.Array, target: jax.Array) -> jax.Array:
  """Mean BCE over every voxel of every object: logits [B, S, S, S] float, target
  [B, S, S, S] bool/float -> scalar (computed from logits, stable for any value).

  softplus(z) - z t: one softplus per voxel, where optax's sigmoid_binary_cross_entropy
  (two log-sigmoids) takes two; equal to it within 1e-6, gradient at z = 0 included
  (losses_test), and 3.6 -> 2.0 ms for loss and gradient of 16 x 32^3 voxels (2-core AMD
  EPYC). On CPUs, volumes of even sides are summed in 2x2x2 blocks (`in_blocks`): the
  same mean."""
  z, t = logits.astype(jnp.float32), target.astype(jnp.float32)
  if z.shape == t.shape and jax.default_backend() == 'cpu':
    z, t = in_blocks(z), in_blocks(t)
  return (jax.nn.softplus(z) - z * t).mean()


def in_blocks(volume: jax.Array) -> jax.Array:
  """``[B, D, H, W]`` (D, H, W even) as ``[B, D/2, H/2, W/2, 8]``, each voxel's 2x2x2 block
  on the last axis (`resample.space_to_depth`); other shapes unchanged. A mean's terms only
  change order, to the order in which a depth-to-space output (the quick decoder's
  'shuffle' head, the refiner's coarse-grid last convolution on CPUs) computed its logits:
  XLA:CPU then reads them in place, where it had fused the gather-like rearrangement into
  the softplus. Measured (2-core AMD EPYC Zen 5, quick stage 3, 3 traced steps, processes
  alternated H, X, H, X): those fusions 20.2 and 24.0 ms per device and step, 1.3 and 1.2
  after; the paper preset's steps within the spread between runs (BENCHMARKS.md,
  2026-12-02 "Zen 5"). Not measured on GPUs (not used there) or the other CPU kinds."""
  if volume.ndim != 4 or any(s % 2 for s in volume.shape[1:]):
    return volume
  return space_to_depth(volume[..., None])[..., 0]


def reconstruction_loss(
  outputs: dict[str, jax.Array], target: jax.Array
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """coarse BCE + refined BCE, and both terms, from the model's output dict."""
  coarse = voxel_bce(outputs['coarse_logits'], target)
  refined = voxel_bce(outputs['refined_logits'], target)
  return coarse + refined, {'coarse': coarse, 'refined': refined}
