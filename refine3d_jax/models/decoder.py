"""3D decoder: fused latent vector ``[B, D]`` -> coarse occupancy logits ``[B, S, S, S]``.

The paper describes "five residual blocks" with six widths (128, 128, 128, 64, 64, 32) and
"2D" 1x1 shortcuts. Our reading (see ../shared/PROTOCOL.md):
- a Dense layer maps the latent vector to a ``base_size``^3 grid with ``widths[0]``
  channels (the stem; paper: 2^3 x 128, so 1024 -> 1024);
- ``widths[1:]`` are the five residual blocks; the first log2(S / base_size) of them
  upsample by 2 on entry (paper: 2 -> 4 -> 8 -> 16 -> 32, then one block at 32^3);
- a block is conv3 -> act -> conv3 plus a shortcut -> act; the shortcut is a 1x1x1
  convolution when the width changes and the identity otherwise (``shortcuts='identity'``,
  ours), or a 1x1x1 convolution in every block (``shortcuts='conv'``, the paper's text);
- a final 1x1x1 convolution gives one logit per voxel.

Upsampling is nearest-neighbour resize followed by the block's 3x3x3 convolution (and the
shortcut's 1x1x1 one), not ``ConvTranspose``: 3D transposed convolutions run at
1-2 GFLOP/s on XLA:CPU, while resize + conv runs as an ordinary convolution (lowered as
``conv_impl`` says: refine3d_jax/models/conv3d.py). The shortcut runs before the resize,
and the 3x3x3 one as a 2x2x2 convolution on the coarse grid's dual where
``conv3d.up2_lowering`` says (8 taps per output instead of 27; both equal to resizing
first).
``head='shuffle'`` (an option, off in the paper preset) replaces the last 2x upsampling and
its block by a 1x1x1 convolution to 8 logits per voxel at half the size, rearranged into
the 2x2x2 voxels they cover (3D depth-to-space, the "sub-pixel convolution" of ESPCN): no
convolution runs at full size, which is most of the decoder's cost on a CPU.
``occupancy_prior`` p > 0 starts the logits' bias at log(p / (1 - p)), so the untrained
model predicts the data's mean occupancy instead of 0.5 (the prior initialisation of
RetinaNet's classifier), sparing the first steps the work of learning it.
No normalisation layer: the decoder is frozen in JTSO's stage 2, and batch statistics
would keep drifting under a frozen decoder.
"""

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from refine3d_jax.models.conv3d import Conv3D, UpConv3D
from refine3d_jax.models.resample import depth_to_space, upsample_nearest


HEADS = ('conv', 'shuffle')


def num_upsamplings(volume_size: int, base_size: int) -> int:
  """How many 2x upsamplings take ``base_size`` to ``volume_size`` (must be a power of 2)."""
  ratio = volume_size // base_size
  if base_size <= 0 or volume_size % base_size or ratio & (ratio - 1):
    raise ValueError(
      f'volume_size / base_size must be a power of 2, got {volume_size} / {base_size}'
    )
  return int(math.log2(ratio))


SHORTCUTS = ('identity', 'conv')


class ResidualBlock3D(nn.Module):
  """[upsample 2x ->] conv3 -> act -> conv3 (+ shortcut) -> act: ``[N, D, H, W, C]``.
  The shortcut is a 1x1x1 conv when the width changes or ``conv_shortcut``."""

  features: int
  upsample: bool
  leaky_slope: float = 0.2
  conv_impl: str = 'auto'
  dtype: jnp.dtype = jnp.float32
  conv_shortcut: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    conv = lambda k, name, cls=Conv3D: cls(
      self.features, k, impl=self.conv_impl, dtype=self.dtype, name=name
    )
    act = lambda y: nn.leaky_relu(y, self.leaky_slope)
    # conv1 of the upsampled input runs on the input's grid (conv3d.conv3d_up2), and the
    # 1x1x1 shortcut before the upsampling: both equal to upsampling first
    y = conv(3, 'conv2')(act(conv(3, 'conv1', UpConv3D if self.upsample else Conv3D)(x)))
    if self.conv_shortcut or x.shape[-1] != self.features:
      x = conv(1, 'shortcut')(x)
    if self.upsample:
      x = upsample_nearest(x)
    return act(x + y)


class Decoder(nn.Module):
  """Latent ``[B, D]`` -> coarse logits ``[B, S, S, S]`` (S = ``volume_size``)."""

  widths: Sequence[int] = (128, 128, 128, 64, 64, 32)
  base_size: int = 2
  volume_size: int = 32
  leaky_slope: float = 0.2
  head: str = 'conv'  # 'conv' or 'shuffle' (see the module doc)
  occupancy_prior: float = 0.0  # > 0: the logits' initial bias is log(p / (1 - p))
  conv_impl: str = 'auto'  # see refine3d_jax/models/conv3d.py
  dtype: jnp.dtype = jnp.float32
  shortcuts: str = 'identity'  # 'identity' where the width is unchanged, or 'conv' always

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    if self.head not in HEADS:
      raise ValueError(f'decoder head must be one of {HEADS}, got {self.head!r}')
    if self.shortcuts not in SHORTCUTS:
      raise ValueError(f'decoder shortcuts must be one of {SHORTCUTS}, got {self.shortcuts!r}')
    shuffle = self.head == 'shuffle'
    ups = num_upsamplings(self.volume_size, self.base_size) - shuffle
    if ups > len(self.widths) - 1:
      raise ValueError(
        f'{len(self.widths) - 1} decoder blocks cannot upsample {ups} times '
        f'from {self.base_size}^3 to {self.volume_size}^3'
      )
    b = self.base_size
    x = nn.Dense(b**3 * self.widths[0], dtype=self.dtype, name='stem')(z.astype(self.dtype))
    x = nn.leaky_relu(x, self.leaky_slope).reshape(z.shape[0], b, b, b, self.widths[0])
    for i, width in enumerate(self.widths[1:]):
      x = ResidualBlock3D(
        width,
        upsample=i < ups,
        leaky_slope=self.leaky_slope,
        conv_impl=self.conv_impl,
        dtype=self.dtype,
        conv_shortcut=self.shortcuts == 'conv',
        name=f'block{i + 1}',
      )(x)
    p = self.occupancy_prior
    bias_init = (
      nn.initializers.constant(math.log(p / (1 - p))) if p > 0 else nn.initializers.zeros_init()
    )
    logits = Conv3D(
      8 if shuffle else 1,
      1,
      impl=self.conv_impl,
      dtype=self.dtype,
      bias_init=bias_init,
      name='logits',
    )(x)
    return (depth_to_space(logits) if shuffle else logits)[..., 0]
