"""3D convolution (stride 1, SAME padding) with a choice of lowering.

XLA:CPU runs 3D convolutions slowly, worst with few channels at 32^3: a 4^3 convolution
from 1 to 4 channels on 16 objects took 391 ms forward and 974 ms with its gradient
(0.7 GFLOP/s, 2 cores). ``impl='fold'`` computes the same convolution as one 2D
convolution: the ``k`` depth-shifted copies of the input are stacked on the channel axis
and the depth axis joins the batch, so ``[N, D, H, W, C] * [k, k, k, C, O]`` becomes
``[N*D, H, W, k*C] * [k, k, k*C, O]``. The same layer then took 24 ms and 79 ms; every
3D layer of the quick and paper models ran 2-12x faster that way on this CPU
(``python -m refine3d_jax.models.conv3d`` measures them). ``impl='native'`` is
``lax.conv_general_dilated`` in 3D. ``1x1x1`` kernels are a matmul in both cases.
``impl='auto'`` folds on CPUs and GPUs, where folding was measured faster for every 3D
layer of the paper model, and stays native elsewhere (TPUs: not measured):
- this CPU (2 cores, float32, batch 4): at 32^3 with 64 -> 64 channels, forward 27% of the
  matmul ceiling folded against 21% native, input gradient 48% against 22%, weight
  gradient 15% against 14%; the paper decoder's forward + backward took 5.03 / 5.22 /
  5.46 s folded against 5.15 / 5.25 / 5.51 s with its 32^3 layers native (alternated);
- an H100 (bfloat16, batch 64, forward + gradient): 1.1-2.2x faster per layer, e.g. the
  refiner's 1 -> 32 channels at 32^3 in 1.57 ms against 3.38 ms, the decoder's 64 -> 64 at
  32^3 in 4.26 ms against 5.61 ms (runs/conv_probe.py in BENCHMARKS.md).
Parameters (``kernel [k, k, k, C, O]``, ``bias [O]``) have the names, shapes
and initialisers of ``flax.linen.Conv``, so the lowering never changes a checkpoint.
"""

import jax
import jax.numpy as jnp
from jax import lax
import flax.linen as nn

IMPLS = ('auto', 'fold', 'native')


def resolve_impl(impl: str, backend: str | None = None) -> str:
  """The lowering: ``impl`` itself unless it is 'auto' (see the module doc)."""
  if impl not in IMPLS:
    raise ValueError(f'conv3d impl must be one of {IMPLS}, got {impl!r}')
  if impl != 'auto':
    return impl
  return 'fold' if (backend or jax.default_backend()) in ('cpu', 'gpu') else 'native'


def _same(k: int) -> tuple[int, int]:
  lo = (k - 1) // 2     # flax/TF 'SAME': the extra pad of an even kernel goes last
  return lo, k - 1 - lo


def conv3d(x: jax.Array, kernel: jax.Array, impl: str = 'auto') -> jax.Array:
  """SAME, stride-1 convolution of ``x [N, D, H, W, C]`` by ``kernel [k, k, k, C, O]``."""
  kd, kh, kw, c, o = kernel.shape
  if (kd, kh, kw) == (1, 1, 1):
    return jnp.einsum('ndhwc,co->ndhwo', x, kernel[0, 0, 0])
  impl = resolve_impl(impl)
  if impl == 'native':
    return lax.conv_general_dilated(x, kernel, (1, 1, 1), [_same(kd), _same(kh), _same(kw)],
                                    dimension_numbers=('NDHWC', 'DHWIO', 'NDHWC'))
  n, d, h, w, _ = x.shape
  xp = jnp.pad(x, ((0, 0), _same(kd), (0, 0), (0, 0), (0, 0)))
  stacked = jnp.concatenate([xp[:, i:i + d] for i in range(kd)], axis=-1)
  kernel2d = jnp.transpose(kernel, (1, 2, 0, 3, 4)).reshape(kh, kw, kd * c, o)
  y = lax.conv_general_dilated(stacked.reshape(n * d, h, w, kd * c), kernel2d, (1, 1),
                               [_same(kh), _same(kw)],
                               dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  return y.reshape(n, d, h, w, o)


class Conv3D(nn.Module):
  """``flax.linen.Conv`` for 3D, stride 1, SAME padding, with the lowering ``impl``."""
  features: int
  kernel_size: int
  use_bias: bool = True
  impl: str = 'auto'
  dtype: jnp.dtype = jnp.float32
  kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
  bias_init: nn.initializers.Initializer = nn.initializers.zeros_init()

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k = self.kernel_size
    kernel = self.param('kernel', self.kernel_init, (k, k, k, x.shape[-1], self.features),
                        jnp.float32)
    y = conv3d(x.astype(self.dtype), kernel.astype(self.dtype), self.impl)
    if self.use_bias:
      bias = self.param('bias', self.bias_init, (self.features,), jnp.float32)
      y = y + bias.astype(self.dtype)
    return y


# 3D layers (side, channels in, channels out, kernel) of the presets' decoder and refiner.
LAYERS = {
    'quick': [(32, 1, 4, 4), (16, 4, 8, 4), (8, 8, 16, 4), (8, 16, 8, 4), (16, 8, 4, 4),
              (32, 4, 1, 4), (4, 64, 64, 3), (8, 64, 32, 3), (8, 32, 32, 3),
              (16, 32, 16, 3), (16, 16, 16, 3)],
    'paper': [(32, 1, 32, 4), (16, 32, 64, 4), (8, 64, 128, 4), (8, 128, 64, 4),
              (16, 64, 32, 4), (32, 32, 1, 4), (4, 128, 128, 3), (8, 128, 128, 3),
              (16, 128, 64, 3), (16, 64, 64, 3), (32, 64, 64, 3), (32, 64, 32, 3),
              (32, 32, 32, 3)],
}


def _benchmark(preset: str = 'paper', batch: int = 4, dtype: str = 'float32') -> None:
  """Times forward + gradient (input and kernel) of `preset`'s 3D layers both ways."""
  from refine3d_jax import timing  # pylint: disable=import-outside-toplevel
  print(f'{timing.device_name(jax.devices()[0])}; {preset} layers, batch {batch}, {dtype}: '
        'ms forward + gradient (GFLOP/s)')
  for s, ci, co, k in LAYERS[preset]:
    x = jax.random.normal(jax.random.key(0), (batch, s, s, s, ci), dtype)
    w = jax.random.normal(jax.random.key(1), (k, k, k, ci, co), dtype)
    flops = 3 * 2 * batch * s ** 3 * k ** 3 * ci * co
    row = f'{s:2d}^3 {ci:3d}->{co:3d} k{k}:'
    for impl in ('native', 'fold'):
      grad = jax.jit(jax.grad(
          lambda x, w, impl=impl: jnp.sum(conv3d(x, w, impl).astype(jnp.float32) ** 2),
          argnums=(0, 1)))
      t = timing.median_time(lambda grad=grad: grad(x, w), 20, budget_s=10.0)
      row += f'  {impl} {t * 1e3:9.3f} ({flops / t / 1e9:8.1f})'
    print(row, flush=True)


if __name__ == '__main__':
  # python -m refine3d_jax.models.conv3d [quick|paper] [batch] [dtype]
  import sys  # pylint: disable=import-outside-toplevel
  _benchmark(*[t(a) for t, a in zip((str, int, str), sys.argv[1:])])
