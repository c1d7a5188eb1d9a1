r"""Per-layer timing of the convolution lowerings (models/conv2d.py, models/conv3d.py):
forward + gradient of each encoder (2D) or decoder and refiner (3D) layer of a
preset, each way (2D: the forward alone too), on the default device. Results and their
commands are in BENCHMARKS.md.

  python -m refine3d_jax.layer_bench conv2d [quick|paper] [batch]
  python -m refine3d_jax.layer_bench conv3d [quick|paper] [batch] [dtype] [parts]
  python -m refine3d_jax.layer_bench up3d [quick|paper] [batch]
  python -m refine3d_jax.layer_bench phases3d [quick|paper] [batch]

up3d also times the dual grid (3x3x3 kernels; 'n/a' for others).
conv3d times 'native', 'fold' (as `conv3d` chooses its 2D lowering: `fold_impl2d`) and
'fold2n' (the fold with a native 2D convolution throughout, as before `fold_impl2d`); at
batch 1 on CPUs 'auto' computes the forward as neither (`conv3d.one_volume_on_output`).
`parts` times the forward, the input gradient and the kernel gradient apart, each as a
fraction of a 2048^3 matmul measured first.
"""

import sys

import jax
import jax.numpy as jnp

from refine3d_jax import cli, timing
from refine3d_jax.models.conv2d import conv2d
from refine3d_jax.models.conv3d import conv3d, conv3d_phases_coarse, conv3d_up2_coarse
from refine3d_jax.models.conv3d import conv3d_up2_dual
from refine3d_jax.models.resample import space_to_depth, upsample_nearest

# The layer tables, a few layers a row (ruff format would put every number on a line).
# fmt: off
# 2D layers (side, channels in, channels out, kernel) of the presets' encoders.
CONV2D_LAYERS = {
  'quick': [(64, 3, 16, 5), (64, 16, 16, 3), (32, 16, 32, 3), (32, 32, 32, 3), (16, 32, 64, 3),
            (16, 64, 64, 3), (8, 64, 64, 3), (4, 64, 64, 3), (2, 64, 64, 3)],
  'paper': [(127, 3, 96, 7), (127, 96, 96, 3), (64, 96, 128, 3), (64, 128, 128, 3),
            (32, 128, 256, 3), (32, 256, 256, 3), (16, 256, 256, 3), (8, 256, 256, 3),
            (4, 256, 256, 3)],
}
# 3D layers (side, channels in, channels out, kernel) of the presets' decoder and refiner;
# the paper's last two: the decoder's upsampling convolutions as conv3d_up2 runs them, on
# the coarse grid with 8 x 64 outputs.
CONV3D_LAYERS = {
  'quick': [(32, 1, 4, 4), (16, 4, 8, 4), (8, 8, 16, 4), (8, 16, 8, 4), (16, 8, 4, 4),
            (32, 4, 1, 4), (4, 64, 64, 3), (8, 64, 32, 3), (8, 32, 32, 3), (16, 32, 16, 3),
            (16, 16, 16, 3)],
  'paper': [(32, 1, 32, 4), (16, 32, 64, 4), (8, 64, 128, 4), (8, 128, 64, 4),
            (16, 64, 32, 4), (32, 32, 1, 4), (4, 128, 128, 3), (8, 128, 128, 3),
            (16, 128, 64, 3), (16, 64, 64, 3), (32, 64, 64, 3), (32, 64, 32, 3),
            (32, 32, 32, 3), (8, 128, 512, 3), (16, 64, 512, 3)],
}
# 3D layers that convolve a 2x upsampled input (output side, channels in, channels out,
# kernel): the decoder's upsampling blocks' first conv and the refiner's up path.
UP3D_LAYERS = {
  'quick': [(4, 64, 64, 3), (8, 64, 32, 3), (16, 32, 16, 3), (8, 16, 8, 4), (16, 8, 4, 4),
            (32, 4, 1, 4)],
  'paper': [(4, 128, 128, 3), (8, 128, 128, 3), (16, 128, 64, 3), (32, 64, 64, 3),
            (8, 128, 64, 4), (16, 64, 32, 4), (32, 32, 1, 4)],
}
# 3D layers followed by a 2x max-pool (side, channels in, channels out, kernel): the
# refiner's down path.
PHASE3D_LAYERS = {
  'quick': [(32, 1, 4, 4), (16, 4, 8, 4), (8, 8, 16, 4)],
  'paper': [(32, 1, 32, 4), (16, 32, 64, 4), (8, 64, 128, 4)],
}
# fmt: on


def conv2d_layers(preset: str = 'quick', batch: int = 128) -> None:
  """Times the forward alone and forward + gradient (input and kernel) of `preset`'s
  encoder layers in each lowering."""
  time = lambda f, *a: timing.median_time(lambda: f(*a), 10, budget_s=10.0)
  print(
    f'{timing.device_name(jax.devices()[0])}; {preset} encoder layers, batch {batch}: '
    'ms forward / forward + gradient (GFLOP/s of the latter)'
  )
  for s, ci, co, k in CONV2D_LAYERS[preset]:
    x = jax.random.normal(jax.random.key(0), (batch, s, s, ci))
    w = jax.random.normal(jax.random.key(1), (k, k, ci, co))
    flops = 2 * batch * s * s * k * k * ci * co
    row = f'{s:3d} px {ci:3d}->{co:3d} k{k}:'
    for impl in ('native', 'matmul', 'mixed'):
      forward = jax.jit(lambda x, w, impl=impl: conv2d(x, w, impl))
      grad = jax.jit(
        jax.grad(lambda x, w, impl=impl: jnp.sum(conv2d(x, w, impl) ** 2), argnums=(0, 1))
      )
      f, t = time(forward, x, w), time(grad, x, w)
      row += f'  {impl} {f * 1e3:6.1f} / {t * 1e3:6.1f} ({3 * flops / t / 1e9:5.1f})'
    print(row, flush=True)


def conv3d_layers(
  preset: str = 'paper', batch: int = 4, dtype: str = 'float32', parts: str = ''
) -> None:
  """Times forward + gradient (input and kernel) of `preset`'s 3D layers both ways; with
  `parts='parts'`, the forward, the input gradient and the kernel gradient apart, each
  as a fraction of a 2048^3 matmul measured first."""
  time = lambda f, *a: timing.median_time(lambda: f(*a), 20, budget_s=10.0)
  print(
    f'{timing.device_name(jax.devices()[0])}; {preset} layers, batch {batch}, {dtype}: '
    + (
      'fraction of the matmul ceiling: forward / input grad / kernel grad'
      if parts
      else 'ms forward + gradient (GFLOP/s)'
    )
  )
  if parts:
    a = jax.random.normal(jax.random.key(0), (2048, 2048), dtype)
    ceiling = 2 * 2048**3 / time(jax.jit(jnp.matmul), a, a)
    print(f'matmul 2048^3: {ceiling / 1e9:.1f} GFLOP/s')
  for s, ci, co, k in CONV3D_LAYERS[preset]:
    x = jax.random.normal(jax.random.key(0), (batch, s, s, s, ci), dtype)
    w = jax.random.normal(jax.random.key(1), (k, k, k, ci, co), dtype)
    flops = 2 * batch * s**3 * k**3 * ci * co
    row = f'{s:2d}^3 {ci:3d}->{co:3d} k{k}:'
    # fold2n: the fold with its 2D convolution native (never fold_impl2d's 'mixed')
    for impl, impl3d, impl2d in (
      ('native', 'native', None),
      ('fold', 'fold', None),
      ('fold2n', 'fold', 'native'),
    ):
      f = lambda x, w, i=impl3d, i2=impl2d: conv3d(x, w, i, impl2d=i2)
      if parts:
        y = f(x, w)
        # every array an argument: XLA would fold transposes of a captured one at compile time
        fx = jax.jit(lambda x, w, g, f=f: jax.vjp(lambda x: f(x, w), x)[1](g)[0])
        fw = jax.jit(lambda x, w, g, f=f: jax.vjp(lambda w: f(x, w), w)[1](g)[0])
        fracs = [
          flops / time(jax.jit(f), x, w) / ceiling,
          flops / time(fx, x, w, y) / ceiling,
          flops / time(fw, x, w, y) / ceiling,
        ]
        row += f'  {impl} ' + ' / '.join(f'{v:4.0%}' for v in fracs)
        continue
      grad = jax.jit(
        jax.grad(lambda x, w, f=f: jnp.sum(f(x, w).astype(jnp.float32) ** 2), argnums=(0, 1))
      )
      t = time(grad, x, w)
      row += f'  {impl} {t * 1e3:9.3f} ({3 * flops / t / 1e9:8.1f})'
    print(row, flush=True)


def _ways(
  title: str, layers, input_side, ways: dict, batch: int, kernels: dict | None = None
) -> None:
  """Prints forward + gradient ms of each of `ways` (lowerings of one function) on
  every layer (side, channels in, channels out, kernel), the input of side
  `input_side(side)`, and the first's time over the second's; a way named in `kernels`
  runs only on layers of those kernel sizes ('n/a' on the others)."""
  time = lambda f, *a: timing.median_time(lambda: f(*a), 20, budget_s=10.0)
  print(f'{timing.device_name(jax.devices()[0])}; {title}', flush=True)
  for s, ci, co, k in layers:
    x = jax.random.normal(jax.random.key(0), (batch,) + (input_side(s),) * 3 + (ci,))
    w = jax.random.normal(jax.random.key(1), (k, k, k, ci, co))
    row = f'{s:2d}^3 {ci:3d}->{co:3d} k{k}:'
    times = []
    for name, f in ways.items():
      if k not in (kernels or {}).get(name, (k,)):
        row += f'  {name} n/a'
        continue
      grad = jax.jit(jax.grad(lambda x, w, f=f: jnp.sum(f(x, w) ** 2), argnums=(0, 1)))
      times.append(time(grad, x, w))
      row += f'  {name} {times[-1] * 1e3:9.3f}'
    print(f'{row}  ({times[0] / times[1]:.2f}x)', flush=True)


def up3d_layers(preset: str = 'quick', batch: int = 16) -> None:
  """Times forward + gradient of `preset`'s convolutions of a 2x upsampled input, as
  upsampling then the folded convolution, as `conv3d_up2` on the coarse grid, and (3x3x3
  kernels) on the dual grid."""
  ways = {
    'upsample+conv': lambda x, w: conv3d(upsample_nearest(x), w, 'fold'),
    'coarse': lambda x, w: conv3d_up2_coarse(x, w, 'fold'),
    'dual': lambda x, w: conv3d_up2_dual(x, w, 'fold'),
  }
  title = (
    f'{preset} upsampling layers, batch {batch}: ms forward + gradient, upsample + conv / '
    'on the coarse grid / on the dual grid (ratio: the first over the second)'
  )
  _ways(title, UP3D_LAYERS[preset], lambda s: s // 2, ways, batch, kernels={'dual': (3,)})


def phases3d_layers(preset: str = 'quick', batch: int = 16) -> None:
  """Times forward + gradient of `preset`'s convolutions before a max-pool, as the folded
  convolution then ``space_to_depth``, and as ``conv3d_phases`` on the coarse grid."""
  ways = {
    'conv+s2d': lambda x, w: space_to_depth(conv3d(x, w, 'fold')),
    'coarse': lambda x, w: conv3d_phases_coarse(x, w, 'fold'),
  }
  title = (
    f'{preset} layers before a max-pool, batch {batch}: ms forward + gradient, '
    'conv + space_to_depth / on the coarse grid'
  )
  _ways(title, PHASE3D_LAYERS[preset], lambda s: s, ways, batch)


def main(argv: list[str]) -> None:
  commands = {
    'conv2d': (conv2d_layers, (str, int)),
    'conv3d': (conv3d_layers, (str, int, str, str)),
    'up3d': (up3d_layers, (str, int)),
    'phases3d': (phases3d_layers, (str, int)),
  }
  if len(argv) < 2 or argv[1] not in commands:
    sys.exit(f'usage: python -m refine3d_jax.layer_bench {{{"|".join(commands)}}} [preset] ...')
  run, types = commands[argv[1]]
  run(*[t(a) for t, a in zip(types, argv[2:])])


if __name__ == '__main__':
  cli.run(main)
