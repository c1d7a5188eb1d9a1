"""2D convolution (stride 1, SAME padding) with a choice of lowering, for the encoder.

``impl='matmul'`` computes the convolution as one matrix product: the ``k*k`` shifted
copies of the padded input are stacked on the channel axis (im2col), so
``[N, H, W, C] * [k, k, C, O]`` becomes ``[N*H*W, k*k*C] @ [k*k*C, O]``. ``impl='native'``
is ``lax.conv_general_dilated``. ``impl='auto'`` uses the matmul on CPUs for layers of at
least ``MATMUL_MIN_FEATURES`` output channels, where it was measured faster on the 2-core
AMD EPYC (narrower layers were not), and stays native elsewhere (GPUs and the Intel CPU
kind: not measured). Figures and commands (``python -m refine3d_jax.layer_bench conv2d
...``) are in BENCHMARKS.md.
Parameters (``kernel [k, k, C, O]``, ``bias [O]``) have the names, shapes and initialisers
of ``flax.linen.Conv``, so the lowering never changes a checkpoint.
"""

from typing import Callable, ClassVar

import jax
import jax.numpy as jnp
from jax import lax
import flax.linen as nn

IMPLS = ('auto', 'matmul', 'native')
MATMUL_MIN_FEATURES = 32


def resolve_impl(impl: str, features: int, backend: str | None = None) -> str:
  """The lowering of a layer with ``features`` output channels: ``impl`` unless 'auto'."""
  if impl not in IMPLS:
    raise ValueError(f'conv2d impl must be one of {IMPLS}, got {impl!r}')
  if impl != 'auto':
    return impl
  cpu = (backend or jax.default_backend()) == 'cpu'
  return 'matmul' if cpu and features >= MATMUL_MIN_FEATURES else 'native'


def same_padding(k: int) -> tuple[int, int]:
  """(before, after) padding of one axis for a SAME, stride-1 kernel of size ``k``."""
  lo = (k - 1) // 2  # flax/TF 'SAME': the extra pad of an even kernel goes last
  return lo, k - 1 - lo


def conv2d(x: jax.Array, kernel: jax.Array, impl: str = 'auto') -> jax.Array:
  """SAME, stride-1 convolution of ``x [N, H, W, C]`` by ``kernel [k, k, C, O]``."""
  kh, kw, c, o = kernel.shape
  n, h, w, _ = x.shape
  if (kh, kw) == (1, 1):
    return jnp.einsum('nhwc,co->nhwo', x, kernel[0, 0])
  if resolve_impl(impl, o) == 'native':
    return lax.conv_general_dilated(
      x,
      kernel,
      (1, 1),
      [same_padding(kh), same_padding(kw)],
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
    )
  xp = jnp.pad(x, ((0, 0), same_padding(kh), same_padding(kw), (0, 0)))
  patches = jnp.concatenate(
    [xp[:, i : i + h, j : j + w] for i in range(kh) for j in range(kw)], axis=-1
  )
  y = jnp.dot(patches.reshape(n * h * w, kh * kw * c), kernel.reshape(kh * kw * c, o))
  return y.reshape(n, h, w, o)


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
