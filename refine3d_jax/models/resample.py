"""2x resampling of volumes ``[N, D, H, W, C]`` by reshapes: nearest upsampling, and the
rearrangements between voxels and channels (depth-to-space and its inverse)."""

import jax
import jax.numpy as jnp


def upsample_nearest(x: jax.Array, factor: int = 2) -> jax.Array:
  """Nearest-neighbour upsampling of ``[N, D, H, W, C]`` by ``factor`` on each spatial axis."""
  n, d, h, w, c = x.shape
  x = jnp.broadcast_to(x[:, :, None, :, None, :, None, :], (n, d, factor, h, factor, w, factor, c))
  return x.reshape(n, d * factor, h * factor, w * factor, c)


def depth_to_space(x: jax.Array, factor: int = 2) -> jax.Array:
  """``[N, D, H, W, f^3 * C]`` -> ``[N, f*D, f*H, f*W, C]``: channel ``(i, j, k, c)`` goes
  to voxel offset ``(i, j, k)`` of its ``f^3`` block."""
  n, d, h, w, c = x.shape
  f, co = factor, c // factor**3
  x = x.reshape(n, d, h, w, f, f, f, co).transpose(0, 1, 4, 2, 5, 3, 6, 7)
  return x.reshape(n, d * f, h * f, w * f, co)


def space_to_depth(x: jax.Array) -> jax.Array:
  """``[N, D, H, W, C]`` (even sides) -> ``[N, D/2, H/2, W/2, 8, C]``: the 2x2x2 block of
  each coarse voxel on axis -2, offsets ``(i, j, k)`` in row-major order (the inverse of
  ``depth_to_space`` once the last two axes are merged)."""
  n, d, h, w, c = x.shape
  x = x.reshape(n, d // 2, 2, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 5, 2, 4, 6, 7)
  return x.reshape(n, d // 2, h // 2, w // 2, 8, c)
