"""2x max-pooling by reshapes, for the encoder (2D) and the refiner (3D)."""

import functools

import jax
import jax.numpy as jnp


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _window_max(windows: jax.Array, size: int) -> jax.Array:
  """max over the last axis (of length `size`) of `windows`."""
  del size
  return jnp.max(windows, axis=-1)


def _window_max_fwd(windows, size):
  del size
  index = jnp.argmax(windows, axis=-1)
  return jnp.max(windows, axis=-1), index


def _window_max_bwd(size, index, g):
  # all of the gradient to the first maximum, as select-and-scatter does; from the saved
  # index, never from comparing recomputed values (unoptimised XLA recomputes them with
  # other rounding, and a max's usual derivative then divided by zero matches)
  return (g[..., None] * jax.nn.one_hot(index, size, dtype=g.dtype),)


_window_max.defvjp(_window_max_fwd, _window_max_bwd)


def max_pool2(x: jax.Array) -> jax.Array:
  """Max-pooling by 2 with stride 2 over every spatial axis of ``[N, *spatial, C]``,
  ``padding='SAME'`` (an odd side gets one padded row at its end), equal in value and
  gradient to ``nn.max_pool(x, (2,) * d, strides=(2,) * d, padding='SAME')`` but without
  XLA's select-and-scatter, which is slow on CPUs.
  """
  spatial = x.shape[1:-1]
  d = len(spatial)
  if any(s % 2 for s in spatial):
    pads = [(0, 0)] + [(0, s % 2) for s in spatial] + [(0, 0)]
    x = jnp.pad(x, pads, constant_values=jnp.finfo(x.dtype).min)
  shape = [x.shape[0]]
  for s in x.shape[1:-1]:
    shape += [s // 2, 2]
  x = x.reshape(*shape, x.shape[-1])
  # [N, s1, 2, s2, 2, ..., C] -> [N, s1, s2, ..., C, 2, 2, ...] -> windows of 2**d
  order = [0, *range(1, 2 * d, 2), 2 * d + 1, *range(2, 2 * d + 1, 2)]
  windows = jnp.transpose(x, order).reshape(*[shape[i] for i in order[: d + 1]], x.shape[-1], 2**d)
  return _window_max(windows, 2**d)


def max_over_phases(x: jax.Array) -> jax.Array:
  """``[..., 8, C]`` -> ``[..., C]``: the max over the 2x2x2 block of a volume in
  ``resample.space_to_depth``'s layout, equal in value and gradient to ``max_pool2`` of the
  volume (the same window order, the gradient to the first maximum)."""
  return _window_max(jnp.moveaxis(x, -2, -1), x.shape[-2])
