"""3D convolution (stride 1, SAME padding) with a choice of lowering.

XLA:CPU runs 3D convolutions slowly, worst with few channels at 32^3: a 4^3 convolution
from 1 to 4 channels on 16 objects took 391 ms forward and 974 ms with its gradient
(0.7 GFLOP/s, 2 cores). ``impl='fold'`` computes the same convolution as one 2D
convolution: the ``k`` depth-shifted copies of the input are stacked on the channel axis
and the depth axis joins the batch, so ``[N, D, H, W, C] * [k, k, k, C, O]`` becomes
``[N*D, H, W, k*C] * [k, k, k*C, O]`` (or, for layers narrowing to few channels, the
``k`` depth taps become ``k*O`` output channels summed over shifted slices: see
``fold_output``). The same layer then took 24 ms and 79 ms; every
3D layer of the quick and paper models ran 2-12x faster that way on this CPU
(``python -m refine3d_jax.models.conv3d`` measures them). ``impl='native'`` is
``lax.conv_general_dilated`` in 3D. ``1x1x1`` kernels are a matmul in both cases.
``impl='auto'`` folds on CPUs and GPUs, where folding was measured faster for every 3D
layer of the paper model, and stays native elsewhere (TPUs: not measured):
- this CPU (2 cores, float32, batch 4; ``python -m refine3d_jax.models.conv3d paper 4
  float32 parts``): at 32^3 with 64 -> 64 channels, the forward at 25% of the matmul
  folded against 20% native, the input gradient at 51% against 17%, the kernel gradient
  at 9% both ways. The paper model's stage 2, which needs only the decoder's input
  gradient, went from 6.10 to 3.83 s per step when its 32^3 layers were folded too;
- an H100 (bfloat16, batch 64, forward + gradient): 1.1-2.2x faster per layer, e.g. the
  refiner's 1 -> 32 channels at 32^3 in 1.57 ms against 3.38 ms, the decoder's 64 -> 64 at
  32^3 in 4.26 ms against 5.61 ms (BENCHMARKS.md).
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
    return lax.conv_general_dilated(x, kernel, (1, 1, 1), [same_padding(k) for k in (kd, kh, kw)],
                                    dimension_numbers=('NDHWC', 'DHWIO', 'NDHWC'))
  n, d, h, w, _ = x.shape
  if fold_output(c, o, kd):
    # the kd depth taps as kd * o output channels of one 2D convolution, then summed
    # over depth-shifted slices: y[i] = sum_a z[i + a - lo, a]
    kernel2d = jnp.transpose(kernel, (1, 2, 3, 0, 4)).reshape(kh, kw, c, kd * o)
    z = conv2d(x.reshape(n * d, h, w, c), kernel2d, 'native')
    z = jnp.pad(z.reshape(n, d, h, w, kd, o),
                ((0, 0), same_padding(kd), (0, 0), (0, 0), (0, 0), (0, 0)))
    return sum(z[:, a:a + d, :, :, a] for a in range(kd))
  xp = jnp.pad(x, ((0, 0), same_padding(kd), (0, 0), (0, 0), (0, 0)))
  stacked = jnp.concatenate([xp[:, i:i + d] for i in range(kd)], axis=-1)
  kernel2d = jnp.transpose(kernel, (1, 2, 0, 3, 4)).reshape(kh, kw, kd * c, o)
  y = conv2d(stacked.reshape(n * d, h, w, kd * c), kernel2d, 'native')
  return y.reshape(n, d, h, w, o)


class Conv3D(SameConv):
  """3D ``SameConv`` (``flax.linen.Conv``'s parameters), lowered by ``conv3d``."""
  ndim = 3
  lower = staticmethod(conv3d)


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


def _benchmark(preset: str = 'paper', batch: int = 4, dtype: str = 'float32',
               parts: str = '') -> None:
  """Times forward + gradient (input and kernel) of `preset`'s 3D layers both ways; with
  `parts='parts'`, the forward, the input gradient and the kernel gradient apart, each
  as a fraction of a 2048^3 matmul measured first."""
  from refine3d_jax import timing  # pylint: disable=import-outside-toplevel
  time = lambda f, *a: timing.median_time(lambda: f(*a), 20, budget_s=10.0)
  print(f'{timing.device_name(jax.devices()[0])}; {preset} layers, batch {batch}, {dtype}: '
        + ('fraction of the matmul ceiling: forward / input grad / kernel grad' if parts else
           'ms forward + gradient (GFLOP/s)'))
  if parts:
    a = jax.random.normal(jax.random.key(0), (2048, 2048), dtype)
    ceiling = 2 * 2048 ** 3 / time(jax.jit(jnp.matmul), a, a)
    print(f'matmul 2048^3: {ceiling / 1e9:.1f} GFLOP/s')
  for s, ci, co, k in LAYERS[preset]:
    x = jax.random.normal(jax.random.key(0), (batch, s, s, s, ci), dtype)
    w = jax.random.normal(jax.random.key(1), (k, k, k, ci, co), dtype)
    flops = 2 * batch * s ** 3 * k ** 3 * ci * co
    row = f'{s:2d}^3 {ci:3d}->{co:3d} k{k}:'
    for impl in ('native', 'fold'):
      f = lambda x, w, impl=impl: conv3d(x, w, impl)
      if parts:
        y = f(x, w)
        # every array an argument: XLA would fold transposes of a captured one at compile time
        fx = jax.jit(lambda x, w, g, f=f: jax.vjp(lambda x: f(x, w), x)[1](g)[0])
        fw = jax.jit(lambda x, w, g, f=f: jax.vjp(lambda w: f(x, w), w)[1](g)[0])
        fracs = [flops / time(jax.jit(f), x, w) / ceiling, flops / time(fx, x, w, y) / ceiling,
                 flops / time(fw, x, w, y) / ceiling]
        row += f'  {impl} ' + ' / '.join(f'{v:4.0%}' for v in fracs)
        continue
      grad = jax.jit(jax.grad(lambda x, w, f=f: jnp.sum(f(x, w).astype(jnp.float32) ** 2),
                              argnums=(0, 1)))
      t = time(grad, x, w)
      row += f'  {impl} {t * 1e3:9.3f} ({3 * flops / t / 1e9:8.1f})'
    print(row, flush=True)


if __name__ == '__main__':
  # python -m refine3d_jax.models.conv3d [quick|paper] [batch] [dtype] [parts]
  import sys  # pylint: disable=import-outside-toplevel
  _benchmark(*[t(a) for t, a in zip((str, int, str, str), sys.argv[1:])])
