"""3D U-Net refiner: coarse logits ``[B, S, S, S]`` -> refined logits ``[B, S, S, S]``.

Paper: 4^3 convolutions with 32/64/128 channels, BatchNorm, LeakyReLU, max-pooling and skip
connections, after Pix2Vox's refiner. Our reading:
- input: the coarse occupancy probabilities (sigmoid of the decoder's logits);
- down path: per width, conv4 -> BN -> LeakyReLU -> 2x max-pool (32^3 -> 16 -> 8 -> 4);
- up path: nearest 2x resize -> conv4 -> BN -> LeakyReLU, plus the down path's output at
  the same resolution (additive skips, as Pix2Vox's refiner adds them: concatenation
  would double the channels of the costliest convolutions);
- a last nearest 2x resize -> conv4 to one channel gives a logit correction ``delta``;
  refined logits = coarse logits + delta. The last convolution starts at zero, so an
  untrained refiner returns the coarse volume unchanged.
Options (the paper preset's values first, ours second): ``up_activation`` 'relu' (the
paper's text for the up path) or 'leaky_relu'; ``bottleneck`` h > 0 adds the authors'
code's (and Pix2Vox's) fully connected bottleneck at the lowest resolution, x + ReLU(FC(
ReLU(FC_h(flatten x)))) (8192 -> 2048 -> 8192 at 4^3 x 128), or 0 for none; ``bn_momentum``
0.99 (the authors' framework's default) or 0.9 (the running statistics' decay, Flax's
convention: new = momentum * old + (1 - momentum) * batch).
Upsampling is resize + conv, never ``ConvTranspose`` (slow in 3D on XLA:CPU), computed
on the coarse grid where measured faster (``conv3d.conv3d_up2``, the same function); the
down path's conv -> BN -> act runs in 2x2x2 blocks, so its pool is a max over the block
(``conv3d.conv3d_phases``).
On CPUs the bottleneck's kernel gradients are written in the kernels' own layout
(`batch_outer_dot`): XLA:CPU returned them transposed from their dots, and Adam's updates
of the 33.6M weights then read them through the transpose. Where the train steps trace
under the data mesh, every device gathers the batch's rows (at most GATHER_MAX_ROWS) and
sums all their outer products itself, so the 8192x2048 gradients need no all-reduce. On a
2-core AMD EPYC Zen 5 (BENCHMARKS.md, "gathered rows"): the paper preset's steps
1.11-1.43x faster in in-process A/B runs, from 0.79x to 1.34x in separate bench processes.
BatchNorm uses the Flax convention: statistics in the ``batch_stats`` collection, updated
when ``train=True`` (apply with ``mutable=['batch_stats']``), read when ``train=False``.
"""

import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from refine3d_jax.models.conv3d import Conv3D, PhaseConv3D, UpConv3D
from refine3d_jax.models.pooling import max_over_phases


ACTIVATIONS = ('leaky_relu', 'relu')


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _matmul(x: jax.Array, kernel: jax.Array, precision=None) -> jax.Array:
  return jnp.dot(x, kernel, precision=precision)


def _matmul_fwd(x, kernel, precision):
  return jnp.dot(x, kernel, precision=precision), (x, kernel)


# the most rows (the pass's examples, over all hosts) a device gathers (gathered_rows)
GATHER_MAX_ROWS = 16


def _matmul_bwd(precision, residuals, g):
  x, kernel = residuals
  dx = jax.lax.dot_general(g, kernel, (((1,), (1,)), ((), ())), precision=precision)
  # sum over the batch of outer products, in the kernel's [in, out] layout: an element-wise
  # fusion, where the dot x^T g came out [out, in] and every reader transposed it
  f32 = lambda a: a.astype(jnp.float32)
  if gathered_rows(x.shape[0]):
    # every device gathers the batch's few rows and sums all their outer products: no
    # all-reduce of the [in, out] gradient, which stays element-wise up to its readers
    x, g = (jax.lax.with_sharding_constraint(a, P()) for a in (x, g))
    dkernel = sum(f32(x[b])[:, None] * f32(g[b])[None, :] for b in range(x.shape[0]))
  else:
    dkernel = jnp.sum(f32(x)[:, :, None] * f32(g)[:, None, :], axis=0)
  return dx, dkernel.astype(kernel.dtype)


def gathered_rows(rows: int) -> bool:
  """Whether the kernel gradient of `rows` rows gathers them on every device: under an
  abstract mesh of more than one device whose axes are all Auto (the one the train steps
  trace under: steps.train_step's `data_parallel`), for 1 to GATHER_MAX_ROWS rows."""
  mesh = jax.sharding.get_abstract_mesh()
  return mesh.size > 1 and mesh.are_all_axes_auto and 0 < rows <= GATHER_MAX_ROWS


_matmul.defvjp(_matmul_fwd, _matmul_bwd)


def batch_outer_dot(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
  """`nn.Dense`'s `dot_general` for `[B, in] @ [in, out]`, the kernel's gradient summed
  over the batch's outer products (the refiner's bottleneck on CPUs: a few objects per
  device)."""
  del preferred_element_type
  if lhs.ndim != 2 or dimension_numbers != (((1,), (0,)), ((), ())):
    raise ValueError(
      f'batch_outer_dot: [B, in] @ [in, out] only, got {lhs.shape} @ {rhs.shape} '
      f'with dimension_numbers {dimension_numbers}'
    )
  return _matmul(lhs, rhs, precision)


class ConvBNAct(nn.Module):
  """conv (kernel^3) -> BatchNorm -> LeakyReLU (or ReLU) on ``[N, D, H, W, C]``."""

  features: int
  kernel: int = 4
  leaky_slope: float = 0.2
  conv_impl: str = 'auto'
  dtype: jnp.dtype = jnp.float32
  activation: str = 'leaky_relu'
  bn_momentum: float = 0.9
  upsample: bool = False  # convolve the 2x nearest-upsampled input (conv3d.conv3d_up2)
  phases: bool = False  # output in 2x2x2 blocks [N, D/2, H/2, W/2, 8, C] (conv3d_phases)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    conv = PhaseConv3D if self.phases else UpConv3D if self.upsample else Conv3D
    x = conv(
      self.features, self.kernel, use_bias=False, impl=self.conv_impl, dtype=self.dtype, name='conv'
    )(x)
    x = nn.BatchNorm(
      use_running_average=not train,
      momentum=self.bn_momentum,
      epsilon=1e-5,
      dtype=self.dtype,
      name='bn',
    )(x)
    return nn.relu(x) if self.activation == 'relu' else nn.leaky_relu(x, self.leaky_slope)


class Refiner(nn.Module):
  """U-Net over ``volume_size``^3; ``len(widths)`` poolings (S must divide by 2**len)."""

  widths: Sequence[int] = (32, 64, 128)
  kernel: int = 4
  leaky_slope: float = 0.2
  conv_impl: str = 'auto'  # see refine3d_jax/models/conv3d.py
  dtype: jnp.dtype = jnp.float32
  up_activation: str = 'leaky_relu'  # or 'relu' (see the module doc)
  bottleneck: int = 0  # > 0: FC bottleneck width at the lowest resolution
  bn_momentum: float = 0.9

  @nn.compact
  def __call__(self, coarse_logits: jax.Array, train: bool = False) -> jax.Array:
    size = coarse_logits.shape[1]
    if size % 2 ** len(self.widths):
      raise ValueError(f'refiner: volume size {size} does not divide by 2**{len(self.widths)}')
    if self.up_activation not in ACTIVATIONS:
      raise ValueError(
        f'refiner up_activation must be one of {ACTIVATIONS}, got {self.up_activation!r}'
      )
    block = lambda w, name, act='leaky_relu', up=False, phases=False: ConvBNAct(
      w,
      self.kernel,
      self.leaky_slope,
      self.conv_impl,
      self.dtype,
      act,
      self.bn_momentum,
      up,
      phases,
      name=name,
    )
    x = jax.nn.sigmoid(coarse_logits)[..., None].astype(self.dtype)
    skips = []
    for i, width in enumerate(self.widths):
      # conv -> BN -> act in 2x2x2 blocks (BatchNorm's statistics are the same), so the
      # max-pool is a max over the block (conv3d.conv3d_phases)
      x = max_over_phases(block(width, f'down{i + 1}', phases=True)(x, train))
      skips.append(x)
    if self.bottleneck:
      flat = x.reshape(x.shape[0], -1)
      # measured on XLA:CPU only; elsewhere Flax's dot (see the module doc)
      dot = batch_outer_dot if jax.default_backend() == 'cpu' else None
      dense = lambda n, name: nn.Dense(n, dtype=self.dtype, dot_general=dot, name=name)
      h = nn.relu(dense(self.bottleneck, 'fc1')(flat))
      h = nn.relu(dense(flat.shape[-1], 'fc2')(h))
      x = x + h.reshape(x.shape)
    for i in reversed(range(len(self.widths) - 1)):
      x = block(self.widths[i], f'up{i + 1}', self.up_activation, up=True)(x, train) + skips[i]
    delta = UpConv3D(
      1,
      self.kernel,
      impl=self.conv_impl,
      dtype=self.dtype,
      kernel_init=nn.initializers.zeros,
      name='delta',
    )(x)
    return coarse_logits + delta[..., 0].astype(coarse_logits.dtype)
