"""2D view encoder: one RGB view -> one latent vector.

The residual encoder of 3D-R2N2 as Refine3DNet uses it: six blocks of two convolutions
(12 conv layers), channels 96/128/256/256/256/256 in the paper, LeakyReLU, a 2x max-pool
after every block, and a 1x1 convolution on the shortcut of every block except the 4th
(``shortcuts[3] = False`` in the paper preset: that block is two plain convolutions).

Choices where the paper is silent, following 3D-R2N2's residual encoder:
- the first convolution is 7x7, all others 3x3 (``first_kernel``);
- pooling uses SAME padding, so 127 px -> 64 -> 32 -> 16 -> 8 -> 4 -> 2;
- no normalisation layer: every view is encoded independently, so padded views of a
  mixed-count batch cannot leak into real ones through batch statistics;
- the final feature map is flattened and projected with one Dense layer to ``latent_dim``
  (paper: 2x2x256 = 1024 -> 1024), followed by LeakyReLU.
"""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from refine3d_jax.models.conv2d import Conv2D
from refine3d_jax.models.pooling import max_pool2


class ResidualBlock2D(nn.Module):
  """conv -> act -> conv (+ 1x1 conv shortcut) -> act -> 2x max-pool.

  Input ``[N, H, W, C_in]``, output ``[N, ceil(H/2), ceil(W/2), features]``.
  """

  # No defaults: the Encoder, its one user, owns them and passes every field.
  features: int
  shortcut: bool
  kernel: int
  leaky_slope: float
  conv_impl: str
  dtype: jnp.dtype

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    act = lambda y: nn.leaky_relu(y, self.leaky_slope)
    conv = lambda k, name: Conv2D(
      self.features, k, impl=self.conv_impl, dtype=self.dtype, name=name
    )
    y = act(conv(self.kernel, 'conv1')(x))
    y = conv(3, 'conv2')(y)
    if self.shortcut:
      y = y + conv(1, 'shortcut')(x)
    y = act(y)
    return max_pool2(y)


class Encoder(nn.Module):
  """Encodes views ``[N, H, W, 3]`` to latent vectors ``[N, latent_dim]``."""

  widths: Sequence[int] = (96, 128, 256, 256, 256, 256)
  shortcuts: Sequence[bool] = (True, True, True, False, True, True)
  latent_dim: int = 1024
  first_kernel: int = 7
  leaky_slope: float = 0.2
  conv_impl: str = 'auto'  # see refine3d_jax/models/conv2d.py
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array) -> jax.Array:
    x = images.astype(self.dtype)
    for i, (width, shortcut) in enumerate(zip(self.widths, self.shortcuts)):
      x = ResidualBlock2D(
        width,
        shortcut,
        kernel=self.first_kernel if i == 0 else 3,
        leaky_slope=self.leaky_slope,
        conv_impl=self.conv_impl,
        dtype=self.dtype,
        name=f'block{i + 1}',
      )(x)
    x = x.reshape(x.shape[0], -1)
    x = nn.Dense(self.latent_dim, dtype=self.dtype, name='project')(x)
    return nn.leaky_relu(x, self.leaky_slope)
