"""3D convolution (stride 1, SAME padding) with a choice of lowering.

XLA:CPU runs 3D convolutions slowly, worst with few channels at 32^3. ``impl='fold'``
computes the same convolution as one 2D convolution: the ``k`` depth-shifted copies of the
input are stacked on the channel axis and the depth axis joins the batch, so
``[N, D, H, W, C] * [k, k, k, C, O]`` becomes ``[N*D, H, W, k*C] * [k, k, k*C, O]`` (or,
for layers narrowing to few channels, the ``k`` depth taps become ``k*O`` output channels
summed over shifted slices: see ``fold_output``). ``impl='native'`` is
``lax.conv_general_dilated`` in 3D. ``1x1x1`` kernels are a matmul in both cases.
``impl='auto'`` folds on CPUs and GPUs, where folding was measured faster for every 3D
layer of the quick and paper models, and stays native elsewhere (TPUs: not measured).
The per-layer and per-step figures, and their commands (``python -m
refine3d_jax.layer_bench conv3d ...``), are in BENCHMARKS.md.
Parameters (``kernel [k, k, k, C, O]``, ``bias [O]``) have the names, shapes
and initialisers of ``flax.linen.Conv``, so the lowering never changes a checkpoint.
"""

import jax
import jax.numpy as jnp
from jax import lax

from refine3d_jax.models.conv2d import SameConv, conv2d, same_padding

IMPLS = ('auto', 'fold', 'native')


def resolve_impl(impl: str, backend: str | None = None) -> str:
  """The lowering: ``impl`` itself unless it is 'auto' (see the module doc)."""
  if impl not in IMPLS:
    raise ValueError(f'conv3d impl must be one of {IMPLS}, got {impl!r}')
  if impl != 'auto':
    return impl
  return 'fold' if (backend or jax.default_backend()) in ('cpu', 'gpu') else 'native'


def fold_output(c: int, o: int, kd: int) -> bool:
  """Whether 'fold' stacks the depth taps on the output channels instead of the input's:
  for layers narrowing to at most 16 folded outputs (the refiner's last two). Measured
  (2-core AMD EPYC, batch 16, forward + gradient): 32^3 4 -> 1, k = 4: 380-632 ms folded
  on the input, 180-233 ms on the output; 16^3 8 -> 4: 42-51 and 30-41 ms; but 16^3
  32 -> 16, k = 3 (48 folded outputs): 248 and 409 ms."""
  return o < c and kd * o <= 16


def conv3d(x: jax.Array, kernel: jax.Array, impl: str = 'auto') -> jax.Array:
  """SAME, stride-1 convolution of ``x [N, D, H, W, C]`` by ``kernel [k, k, k, C, O]``."""
  kd, kh, kw, c, o = kernel.shape
  if (kd, kh, kw) == (1, 1, 1):
    return jnp.einsum('ndhwc,co->ndhwo', x, kernel[0, 0, 0])
  impl = resolve_impl(impl)
  if impl == 'native':
    return lax.conv_general_dilated(
      x,
      kernel,
      (1, 1, 1),
      [same_padding(k) for k in (kd, kh, kw)],
      dimension_numbers=('NDHWC', 'DHWIO', 'NDHWC'),
    )
  n, d, h, w, _ = x.shape
  if fold_output(c, o, kd):
    # the kd depth taps as kd * o output channels of one 2D convolution, then summed
    # over depth-shifted slices: y[i] = sum_a z[i + a - lo, a]
    kernel2d = jnp.transpose(kernel, (1, 2, 3, 0, 4)).reshape(kh, kw, c, kd * o)
    z = conv2d(x.reshape(n * d, h, w, c), kernel2d, 'native')
    z = jnp.pad(
      z.reshape(n, d, h, w, kd, o), ((0, 0), same_padding(kd), (0, 0), (0, 0), (0, 0), (0, 0))
    )
    return sum(z[:, a : a + d, :, :, a] for a in range(kd))
  xp = jnp.pad(x, ((0, 0), same_padding(kd), (0, 0), (0, 0), (0, 0)))
  stacked = jnp.concatenate([xp[:, i : i + d] for i in range(kd)], axis=-1)
  kernel2d = jnp.transpose(kernel, (1, 2, 0, 3, 4)).reshape(kh, kw, kd * c, o)
  y = conv2d(stacked.reshape(n * d, h, w, kd * c), kernel2d, 'native')
  return y.reshape(n, d, h, w, o)


class Conv3D(SameConv):
  """3D ``SameConv`` (``flax.linen.Conv``'s parameters), lowered by ``conv3d``."""

  ndim = 3
  lower = staticmethod(conv3d)
