"""Evaluation metrics: per-sample voxel IoU (the benchmark's definition) and means that skip
the examples padding the last eval batch. Pure jnp functions: they run inside `jax.jit` and
take numpy or jax arrays alike."""

from typing import Sequence

import jax
import jax.numpy as jnp

# IoU thresholds reported by default; papers quote the best of several (Pix2Vox: 0.2/0.3/0.4/
# 0.5), Refine3DNet's paper uses 0.25.
DEFAULT_THRESHOLDS = (0.2, 0.25, 0.3, 0.4, 0.5)


def iou(probs: jax.Array, target: jax.Array,
        thresholds: Sequence[float] = (0.3,)) -> jax.Array:
  """Per-sample IoU of thresholded occupancy, at each threshold (the benchmark's definition,
  as in 3D-R2N2 and Pix2Vox):

    I = sum((p >= t) * gt),   U = sum(((p >= t) + gt) >= 1),   IoU = I / U.

  An empty union (nothing predicted, empty object) gives IoU 1.0: predicting an empty
  object as empty is perfect. The sums are integer counts, so the result is exact up to
  the final float32 division.

  Args:
    probs: `[B, ...]` occupancy probabilities (e.g. `[B, 32, 32, 32]`).
    target: `[B, ...]` ground-truth occupancy, bool (or 0/1).
    thresholds: the `T` thresholds t; a voxel is predicted occupied when p >= t.

  Returns:
    float32 `[B, T]`.
  """
  if probs.shape != target.shape:
    raise ValueError(f'probs {probs.shape} and target {target.shape} must have one shape')
  t = jnp.asarray(thresholds, jnp.float32)
  p = jnp.reshape(probs, (probs.shape[0], 1, -1))                  # [B, 1, N]
  gt = jnp.reshape(jnp.asarray(target).astype(bool), (target.shape[0], 1, -1))
  pred = p >= t[None, :, None]                                     # [B, T, N]
  inter = jnp.sum(pred & gt, axis=-1, dtype=jnp.int32)
  union = jnp.sum(pred | gt, axis=-1, dtype=jnp.int32)
  return jnp.where(union == 0, 1.0,
                   inter.astype(jnp.float32) / jnp.maximum(union, 1).astype(jnp.float32))


def weighted_mean(values: jax.Array, valid: jax.Array) -> jax.Array:
  """Mean over the batch of `values` `[B, ...]`, counting only examples with `valid` `[B]`
  True (eval padding has valid False). Returns `values.shape[1:]`, float32; 0.0 when no
  example is valid; padded examples' values are ignored even when NaN. To average over
  several batches, sum `values * valid` and `valid` across batches instead."""
  values = jnp.asarray(values, jnp.float32)
  w = jnp.asarray(valid).astype(jnp.float32)
  if w.shape != values.shape[:1]:
    raise ValueError(f'valid must be [batch] = {values.shape[:1]}; got {w.shape}')
  w = w.reshape(w.shape + (1,) * (values.ndim - 1))
  # where, not a product: padded examples may hold NaN or inf (0 * nan is nan).
  total = jnp.sum(jnp.where(w > 0, values, 0.0) * w, axis=0)
  return total / jnp.maximum(jnp.sum(w, axis=0), 1.0)
