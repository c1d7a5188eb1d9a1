"""3D convolution (stride 1, SAME padding) with a choice of lowering.

XLA:CPU runs 3D convolutions slowly, worst with few channels at 32^3: a 4^3 convolution
from 1 to 4 channels on 16 objects took 391 ms forward and 974 ms with its gradient
(0.7 GFLOP/s, 2 cores). ``impl='fold'`` computes the same convolution as one 2D
convolution: the ``k`` depth-shifted copies of the input are stacked on the channel axis
and the depth axis joins the batch, so ``[N, D, H, W, C] * [k, k, k, C, O]`` becomes
``[N*D, H, W, k*C] * [k, k, k*C, O]``. The same layer then took 24 ms and 79 ms; every
3D layer of the quick and paper models ran 2-12x faster that way on this CPU
(``python -m refine3d_jax.models.conv3d`` measures them). ``impl='native'`` is
``lax.conv_general_dilated`` in 3D (cuDNN on GPUs). ``1x1x1`` kernels are a matmul in
both cases. Folding makes the weight gradient slower on wide layers at 32^3 (32 -> 32
channels at batch 4: native 900 ms, fold 1732 ms with the gradient), so ``impl='auto'``
chooses per layer: on CPU, native for a volume of side >= 32 with >= 32 channels in and
out, fold otherwise; native on GPUs and TPUs. Parameters (``kernel [k, k, k, C, O]``, ``bias [O]``) have the names, shapes
and initialisers of ``flax.linen.Conv``, so the lowering never changes a checkpoint.
"""

import jax
import jax.numpy as jnp
from jax import lax
import flax.linen as nn

IMPLS = ('auto', 'fold', 'native')


def resolve_impl(impl: str, size: int, channels_in: int, channels_out: int,
                 backend: str | None = None) -> str:
  """The lowering of one layer: ``impl`` itself unless it is 'auto' (see the module doc)."""
  if impl not in IMPLS:
    raise ValueError(f'conv3d impl must be one of {IMPLS}, got {impl!r}')
  if impl != 'auto':
    return impl
  if (backend or jax.default_backend()) != 'cpu':
    return 'native'
  return 'native' if size >= 32 and min(channels_in, channels_out) >= 32 else 'fold'


def _same(k: int) -> tuple[int, int]:
  lo = (k - 1) // 2     # flax/TF 'SAME': the extra pad of an even kernel goes last
  return lo, k - 1 - lo


def conv3d(x: jax.Array, kernel: jax.Array, impl: str = 'auto') -> jax.Array:
  """SAME, stride-1 convolution of ``x [N, D, H, W, C]`` by ``kernel [k, k, k, C, O]``."""
  kd, kh, kw, c, o = kernel.shape
  if (kd, kh, kw) == (1, 1, 1):
    return jnp.einsum('ndhwc,co->ndhwo', x, kernel[0, 0, 0])
  impl = resolve_impl(impl, max(x.shape[1:4]), c, o)
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


def _benchmark() -> None:
  """Times forward and gradient of every 3D layer shape of the quick and paper models."""
  import time  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel

  def timed(f, *args):
    jax.block_until_ready(f(*args))
    times = []
    for _ in range(5):
      t = time.perf_counter()
      jax.block_until_ready(f(*args))
      times.append(time.perf_counter() - t)
    return float(np.median(times))

  shapes = [(16, 32, 16, 8, 3), (16, 32, 8, 8, 3), (16, 16, 32, 16, 3), (16, 32, 1, 4, 4),
            (16, 32, 4, 1, 4), (4, 32, 64, 32, 3), (4, 32, 1, 32, 4), (4, 32, 32, 1, 4)]
  print(f'device: {jax.devices()[0].device_kind}; batch, size^3, channels, kernel; '
        'ms forward / with gradient (GFLOP/s)')
  for n, s, ci, co, k in shapes:
    x = jax.random.normal(jax.random.PRNGKey(0), (n, s, s, s, ci))
    w = jax.random.normal(jax.random.PRNGKey(1), (k, k, k, ci, co))
    flops = 2 * n * s ** 3 * k ** 3 * ci * co
    row = f'{n:3d} {s:2d}^3 {ci:3d}->{co:3d} k{k}:'
    for impl in ('native', 'fold'):
      fwd = jax.jit(lambda x, w, impl=impl: conv3d(x, w, impl))
      grad = jax.jit(jax.grad(lambda x, w, impl=impl: jnp.sum(conv3d(x, w, impl) ** 2),
                              argnums=(0, 1)))
      tf, tg = timed(fwd, x, w), timed(grad, x, w)
      row += (f'  {impl} {tf * 1e3:6.0f} ({flops / tf / 1e9:5.1f}) / '
              f'{tg * 1e3:6.0f} ({3 * flops / tg / 1e9:5.1f})')
    print(row, flush=True)


if __name__ == '__main__':
  _benchmark()
