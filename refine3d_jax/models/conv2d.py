"""2D convolution (stride 1, SAME padding) with a choice of lowering, for the encoder.

``impl='matmul'`` computes the convolution as one matrix product: the ``k*k`` shifted
copies of the padded input are stacked on the channel axis (im2col), so
``[N, H, W, C] * [k, k, C, O]`` becomes ``[N*H*W, k*k*C] @ [k*k*C, O]``. ``impl='native'``
is ``lax.conv_general_dilated``. ``impl='mixed'`` is native forward and input gradient
with a matrix product's kernel gradient (a custom VJP, ``tap_kernel_grad``): on XLA:CPU
the native forward is the fastest (2.7-4.1x the matmul's for the quick encoder's 16-32 px
layers, 'mixed' against 'matmul') but the native kernel gradient the slowest, and the
encoder runs forward only in every multi-view pass of stages 2 and 3 and at evaluation
(``conv3d``'s fold uses it for wide layers on large grids too: ``conv3d.fold_impl2d``).
That kernel gradient stacks the input's windows over some taps and the output gradient's
over the others, fewer values than im2col's patches (the paper encoder's kernel gradients
on one core of a 2-core AMD EPYC Zen 5, batch 2, ms im2col / taps: 127 px 96 -> 96 79 /
56-58, 64 px 128 -> 128 30 / 19-22; BENCHMARKS.md).
``impl='auto'``, on CPUs, takes a matrix product's kernel gradient (im2col's for
'matmul', ``tap_kernel_grad`` for 'mixed') for layers of at least ``MATMUL_MIN_FEATURES``
output channels, where it was measured faster on the 2-core AMD EPYC (narrower layers
were not): 'mixed' from ``MIXED_MIN_SIDE`` pixels up, 'matmul' below (no faster forward
there to gain); native elsewhere (GPUs and the Intel CPU kind: not measured). Figures and
commands (``python -m refine3d_jax.layer_bench conv2d ...``) are in BENCHMARKS.md.
Parameters (``kernel [k, k, C, O]``, ``bias [O]``) have the names, shapes and initialisers
of ``flax.linen.Conv``, so the lowering never changes a checkpoint.
"""

import itertools
import math
from typing import Callable, ClassVar, Sequence

import jax
import jax.numpy as jnp
from jax import lax
import flax.linen as nn

IMPLS = ('auto', 'matmul', 'native', 'mixed')
MATMUL_MIN_FEATURES = 32
MIXED_MIN_SIDE = 16


def resolve_impl(impl: str, features: int, side: int = 0, backend: str | None = None) -> str:
  """The lowering of a layer with ``features`` output channels on inputs of ``side``
  pixels (the smaller of height and width): ``impl`` unless 'auto'."""
  if impl not in IMPLS:
    raise ValueError(f'conv2d impl must be one of {IMPLS}, got {impl!r}')
  if impl != 'auto':
    return impl
  cpu = (backend or jax.default_backend()) == 'cpu'
  if not cpu or features < MATMUL_MIN_FEATURES:
    return 'native'
  return 'mixed' if side >= MIXED_MIN_SIDE else 'matmul'


def same_padding(k: int) -> tuple[int, int]:
  """(before, after) padding of one axis for a SAME, stride-1 kernel of size ``k``."""
  lo = (k - 1) // 2  # flax/TF 'SAME': the extra pad of an even kernel goes last
  return lo, k - 1 - lo


def conv2d(x: jax.Array, kernel: jax.Array, impl: str = 'auto') -> jax.Array:
  """SAME, stride-1 convolution of ``x [N, H, W, C]`` by ``kernel [k, k, C, O]``."""
  kh, kw, _, o = kernel.shape
  if (kh, kw) == (1, 1):
    return jnp.einsum('nhwc,co->nhwo', x, kernel[0, 0])
  lower = {'native': _native, 'matmul': _matmul, 'mixed': _mixed}
  return lower[resolve_impl(impl, o, min(x.shape[1:3]))](x, kernel)


def _native(x: jax.Array, kernel: jax.Array) -> jax.Array:
  kh, kw = kernel.shape[:2]
  return lax.conv_general_dilated(
    x,
    kernel,
    (1, 1),
    [same_padding(kh), same_padding(kw)],
    dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
  )


def _matmul(x: jax.Array, kernel: jax.Array) -> jax.Array:
  kh, kw, c, o = kernel.shape
  n, h, w, _ = x.shape
  xp = jnp.pad(x, ((0, 0), same_padding(kh), same_padding(kw), (0, 0)))
  patches = _im2col(xp, kh, kw, h, w)
  y = jnp.dot(patches.reshape(n * h * w, kh * kw * c), kernel.reshape(kh * kw * c, o))
  return y.reshape(n, h, w, o)


def _im2col(xp: jax.Array, kh: int, kw: int, h: int, w: int) -> jax.Array:
  """The ``kh * kw`` shifted ``h x w`` windows of the padded ``xp [N, H', W', C]``, stacked
  on the channel axis: ``[N, h, w, kh * kw * C]``."""
  return jnp.concatenate([xp[:, i : i + h, j : j + w] for i in range(kh) for j in range(kw)], -1)


@jax.custom_vjp
def _mixed(x: jax.Array, kernel: jax.Array) -> jax.Array:
  return _native(x, kernel)


def _mixed_fwd(x, kernel):
  return _native(x, kernel), (x, kernel)


def _mixed_bwd(residuals, dy):
  x, kernel = residuals
  dx = jax.vjp(lambda x: _native(x, kernel), x)[1](dy)[0]
  return dx, tap_kernel_grad(x, dy, kernel.shape)


IM2COL_GROUP_BYTES = 64 << 20


def im2col_groups(n: int, image_bytes: int, devices: int) -> int:
  """Into how many groups ``tap_kernel_grad`` splits ``n`` images: the fewest that keep
  each device's stacked windows per group within IM2COL_GROUP_BYTES (or one image),
  dividing the images a device holds, so that each device builds its share of every group
  from its own images (1, one pass, where ``n`` does not divide among ``devices``)."""
  if n % devices:
    return 1
  local = n // devices
  for groups in range(1, local + 1):
    if local % groups == 0 and local // groups * image_bytes <= IM2COL_GROUP_BYTES:
      return groups
  return local


def _tap_stacks(
  spatial: Sequence[int], kernel: Sequence[int], c: int, o: int, split: int
) -> tuple[int, int, int]:
  """(rows, input's stacked channels, output gradient's stacked channels) of
  ``tap_kernel_grad`` per image with the taps of the last ``split`` axes on the input's
  side: the axes whose taps dy takes span s + k - 1 rows."""
  lead = len(spatial) - split
  rows = math.prod(s + k - 1 for s, k in zip(spatial[:lead], kernel[:lead]))
  rows *= math.prod(spatial[lead:])
  return rows, math.prod(kernel[lead:]) * c, math.prod(kernel[:lead]) * o


def tap_split(spatial: Sequence[int], kernel: Sequence[int], c: int, o: int) -> int:
  """How many of the last spatial axes ``tap_kernel_grad`` takes the taps of on the input's
  side (the rest on the output gradient's): the split that stacks the fewest values."""

  def stacked(m: int) -> int:
    rows, a, b = _tap_stacks(spatial, kernel, c, o, m)
    return rows * (a + b)

  return min(range(len(spatial) + 1), key=lambda m: (stacked(m), -m))


def tap_kernel_grad(
  x: jax.Array, dy: jax.Array, kernel_shape: Sequence[int], split: int | None = None
) -> jax.Array:
  """Kernel gradient of a SAME, stride-1 convolution over any number d of spatial axes,
  ``x [N, *S, C] -> dy [N, *S, O]``, kernel ``[*K, C, O]``, as matrix products: the padded
  input's windows over the taps of its last ``split`` axes are stacked on its channels,
  the output gradient's windows over the taps of the other axes on its channels, and one
  product over every voxel gives all the taps at once:
  ``dK[t1, t2, c, o] = sum_p xp[p + (t1, t2), c] dy[p, o]`` (``xp``: ``x`` SAME-padded)
  with ``t1`` shifting ``dy`` back instead of ``xp`` forward. ``split = d`` is im2col
  (``patches^T @ dy``); the default (``tap_split``) stacks the fewest values: for a 3x3
  layer of C = O channels 3C + 3O per pixel instead of im2col's 9C + O, and a squarer
  product (over (S + k - 1) / S more rows on the axes whose taps dy takes, rows XLA's cost
  analysis counts). Images go in groups (``im2col_groups``, one product each, unrolled so
  that XLA's cost analysis counts them all): group j holds images j, j + groups, ..., so
  with the batch split over devices in contiguous blocks each device holds an equal share
  of every group. The sum is accumulated in float32."""
  d = x.ndim - 2
  ks, (c, o) = tuple(kernel_shape[:d]), kernel_shape[d:]
  n, spatial = x.shape[0], x.shape[1:-1]
  m = tap_split(spatial, ks, c, o) if split is None else split
  if not 0 <= m <= d:
    raise ValueError(f'tap_kernel_grad: split must be in [0, {d}], got {split}')
  lead = d - m  # axes whose taps go on dy's side
  xp = jnp.pad(x, ((0, 0),) + tuple(same_padding(k) for k in ks) + ((0, 0),))
  dz = jnp.pad(dy, ((0, 0),) + tuple((k - 1, k - 1) for k in ks[:lead]) + ((0, 0),) * (m + 1))
  rows, a, b = _tap_stacks(spatial, ks, c, o, m)
  groups = im2col_groups(n, rows * (a + b) * x.dtype.itemsize, jax.device_count())
  xp = xp.reshape(n // groups, groups, *xp.shape[1:])
  dz = dz.reshape(n // groups, groups, *dz.shape[1:])
  every = (slice(None),)
  dk = jnp.zeros((a, b), jnp.float32)
  for j in range(groups):
    xj, dj = xp[:, j], dz[:, j]
    xs = jnp.concatenate(
      [
        xj[every * (lead + 1) + tuple(slice(t, t + s) for t, s in zip(taps, spatial[lead:]))]
        for taps in itertools.product(*(range(k) for k in ks[lead:]))
      ],
      -1,
    )
    ds = jnp.concatenate(
      [
        # tap t of dy's side reads dy[p - t]: the window from k - 1 - t of dy padded by k - 1
        dj[every + tuple(slice(k - 1 - t, 2 * k - 2 - t + s) for t, k, s in zip(taps, ks, spatial))]
        for taps in itertools.product(*(range(k) for k in ks[:lead]))
      ],
      -1,
    )
    lhs, rhs = xs.reshape(-1, a).T, ds.reshape(-1, b)
    dk = dk + jnp.dot(lhs, rhs, preferred_element_type=jnp.float32)
  dk = dk.reshape(*ks[lead:], c, *ks[:lead], o)
  order = list(range(m + 1, d + 1)) + list(range(m)) + [m, d + 1]
  return dk.transpose(order).astype(x.dtype)


_mixed.defvjp(_mixed_fwd, _mixed_bwd)


class SameConv(nn.Module):
  """``flax.linen.Conv`` (stride 1, SAME padding) over ``ndim`` spatial axes, computed by
  ``lower(x, kernel, impl)``: its parameters have flax's names, shapes and initialisers."""

  ndim: ClassVar[int]
  lower: ClassVar[Callable[[jax.Array, jax.Array, str], jax.Array]]
  features: int
  kernel_size: int
  use_bias: bool = True
  impl: str = 'auto'
  dtype: jnp.dtype = jnp.float32
  kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
  bias_init: nn.initializers.Initializer = nn.initializers.zeros_init()

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    shape = (self.kernel_size,) * self.ndim + (x.shape[-1], self.features)
    kernel = self.param('kernel', self.kernel_init, shape, jnp.float32)
    y = type(self).lower(x.astype(self.dtype), kernel.astype(self.dtype), self.impl)
    if self.use_bias:
      bias = self.param('bias', self.bias_init, (self.features,), jnp.float32)
      y = y + bias.astype(self.dtype)
    return y


class Conv2D(SameConv):
  """2D ``SameConv``, lowered by ``conv2d``."""

  ndim = 2
  lower = staticmethod(conv2d)
