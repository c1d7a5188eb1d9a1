"""3D convolution (stride 1, SAME padding) with a choice of lowering.

XLA:CPU runs 3D convolutions slowly, worst with few channels at 32^3. ``impl='fold'``
computes the same convolution as one 2D convolution: the ``k`` depth-shifted copies of the
input are stacked on the channel axis and the depth axis joins the batch, so
``[N, D, H, W, C] * [k, k, k, C, O]`` becomes ``[N*D, H, W, k*C] * [k, k, k*C, O]`` (or,
for layers narrowing to few channels, the ``k`` depth taps become ``k*O`` output channels
summed over shifted slices: see ``fold_output``). ``impl='native'`` is
``lax.conv_general_dilated`` in 3D. ``1x1x1`` kernels are a matmul in both cases.
On CPUs the folded convolution of a wide layer on a large grid takes its kernel gradient as
matrix products (``fold_impl2d``: ``conv2d``'s 'mixed', ``conv2d.tap_kernel_grad``), and
'auto' computes the forward of one volume (a one-object forward) folded on its outputs
(``one_volume_on_output``).
``impl='auto'`` folds on CPUs and GPUs, where folding was measured faster for every 3D
layer of the quick and paper models, and stays native elsewhere (TPUs: not measured).
The per-layer and per-step figures, and their commands (``python -m
refine3d_jax.layer_bench conv3d ...``), are in BENCHMARKS.md.
Around a 2x resize, ``conv3d_up2`` (a convolution of the upsampled input) and
``conv3d_phases`` (a convolution whose output a 2x max-pool follows) work on the coarse
(or, for 3x3x3 kernels, the dual) grid where measured faster (``UpConv3D``, ``PhaseConv3D``).
Parameters (``kernel [k, k, k, C, O]``, ``bias [O]``) have the names, shapes
and initialisers of ``flax.linen.Conv``, so the lowering never changes a checkpoint.
"""

import jax
import jax.numpy as jnp
from jax import lax
import numpy as np

from refine3d_jax.models.conv2d import SameConv, conv2d, same_padding
from refine3d_jax.models.resample import depth_to_space, space_to_depth, upsample_nearest

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


def conv3d(
  x: jax.Array, kernel: jax.Array, impl: str = 'auto', impl2d: str | None = None
) -> jax.Array:
  """SAME, stride-1 convolution of ``x [N, D, H, W, C]`` by ``kernel [k, k, k, C, O]``.
  ``impl2d`` is the folded 2D convolution's lowering (``conv2d``'s impl; default: as
  ``fold_impl2d`` chooses), for benchmarks and tests."""
  kd, kh, kw, c, o = kernel.shape
  if (kd, kh, kw) == (1, 1, 1):
    return jnp.einsum('ndhwc,co->ndhwo', x, kernel[0, 0, 0])
  if resolve_impl(impl) == 'native':
    return lax.conv_general_dilated(
      x,
      kernel,
      (1, 1, 1),
      [same_padding(k) for k in (kd, kh, kw)],
      dimension_numbers=('NDHWC', 'DHWIO', 'NDHWC'),
    )
  if fold_output(c, o, kd):
    return _fold_on_output(x, kernel)
  if impl == 'auto' and impl2d is None and one_volume_on_output(x.shape[0]):
    return _one_volume(x, kernel)
  return _fold_on_input(x, kernel, impl2d)


def _fold_on_output(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """The kd depth taps as kd * o output channels of one 2D convolution, then summed over
  depth-shifted slices: y[i] = sum_a z[i + a - lo, a]."""
  kd, kh, kw, c, o = kernel.shape
  n, d, h, w, _ = x.shape
  kernel2d = jnp.transpose(kernel, (1, 2, 3, 0, 4)).reshape(kh, kw, c, kd * o)
  z = conv2d(x.reshape(n * d, h, w, c), kernel2d, 'native')
  z = jnp.pad(
    z.reshape(n, d, h, w, kd, o), ((0, 0), same_padding(kd), (0, 0), (0, 0), (0, 0), (0, 0))
  )
  return sum(z[:, a : a + d, :, :, a] for a in range(kd))


def _fold_on_input(x: jax.Array, kernel: jax.Array, impl2d: str | None = None) -> jax.Array:
  """The kd depth-shifted copies of the input stacked on its channels, one 2D convolution
  (``impl2d``, default ``fold_impl2d``'s choice)."""
  kd, kh, kw, c, o = kernel.shape
  n, d, h, w, _ = x.shape
  xp = jnp.pad(x, ((0, 0), same_padding(kd), (0, 0), (0, 0), (0, 0)))
  stacked = jnp.concatenate([xp[:, i : i + d] for i in range(kd)], axis=-1)
  kernel2d = jnp.transpose(kernel, (1, 2, 0, 3, 4)).reshape(kh, kw, kd * c, o)
  y = conv2d(stacked.reshape(n * d, h, w, kd * c), kernel2d, impl2d or fold_impl2d(o, min(h, w)))
  return y.reshape(n, d, h, w, o)


@jax.custom_vjp
def _one_volume(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """``_fold_on_output``'s forward with ``_fold_on_input``'s gradients, as larger batches
  take them (``one_volume_on_output``)."""
  return _fold_on_output(x, kernel)


def _one_volume_fwd(x, kernel):
  return _fold_on_output(x, kernel), (x, kernel)


def _one_volume_bwd(residuals, dy):
  return jax.vjp(_fold_on_input, *residuals)[1](dy)


_one_volume.defvjp(_one_volume_fwd, _one_volume_bwd)


def one_volume_on_output(n: int, backend: str | None = None) -> bool:
  """Whether 'auto' computes a layer's forward folded on its output channels (as
  ``fold_output`` does for narrowing layers) whatever its widths: on CPUs, where the
  convolution sees one volume (``n``, the traced global batch, = 1: a one-object forward,
  as ``predict`` and the bench's batch-1 latency run). Its gradients stay those of the
  fold on the input (``_one_volume``). Measured (2-core AMD EPYC Zen 5, batch 1, one device
  of both cores without YNNPACK's fusions, ms against 'auto' before): the paper decoder's
  32^3 64 -> 64 21.1 / 25.5, 64 -> 32 11.0 / 15.9, 32 -> 32 5.6 / 7.1, faster or level in
  each of 14 layers of both presets; the paper model's one-view forward 1.09x. At
  training's batches the fold on the input stays (gradients slower on the output; figures
  in BENCHMARKS.md, 2026-12-03 06:49)."""
  return (backend or jax.default_backend()) == 'cpu' and n == 1


FOLD_MIXED_MIN_FEATURES = 32
FOLD_MIXED_MIN_SIDE = 16
FOLD_MIXED_MIN_OUTPUT = 32 * 32 * 32


def fold_impl2d(o: int, side: int, backend: str | None = None) -> str:
  """The lowering of the folded 2D convolution (``conv2d``'s impl) of a layer of ``o``
  outputs on a grid of ``side``: on CPUs, 'mixed' (its kernel gradient as matrix
  products, ``conv2d.tap_kernel_grad``; the rest native) for wide layers on large grids
  (``o`` >= FOLD_MIXED_MIN_FEATURES, ``side`` >= FOLD_MIXED_MIN_SIDE, ``side^2 * o`` >=
  FOLD_MIXED_MIN_OUTPUT), where XLA:CPU's native kernel gradient is slowest. Measured
  (2-core AMD EPYC, one core, batch 2 = the paper preset's share of one device when
  main.py splits the CPU; ms of the kernel gradient, native / mixed): 32^3 64 -> 64 k3
  2985 / 1046, the decoder's coarse-grid up-convolutions 16^3 64 -> 512 and 128 -> 512 k3
  1102 / 403 and 1332 / 677; but 32^3 64 -> 32 824 / 946, 32^3 32 -> 32 290 / 492, 16^3
  64 -> 64 62 / 156, 8^3 and 4^3 layers within 10%, and the quick preset's narrow layers
  2-9x slower mixed (BENCHMARKS.md, 2026-12-01). Those 'mixed' figures had im2col's
  kernel gradient, before ``tap_kernel_grad``; on a Zen 5 core, batch 2, forward +
  gradient of 32^3 64 -> 64 took 411-443 ms with im2col's, 308-316 with it. With it, the
  32^3 layers of 32 outputs joined (FOLD_MIXED_MIN_FEATURES 64 -> 32, FOLD_MIXED_MIN_OUTPUT
  32^2 * 64 -> 32^3): the paper decoder's last block (64 -> 32, 32 -> 32) and its
  refiner's first layer (1 -> 32, k = 4). On the Zen 3 kind the decoder's two native
  kernel gradients ran at about 5 GFLOP/s in the paper preset's stage-1 step (1,440 and
  783 ms per device), and the step, both forms compiled in one process and alternated,
  took 4,461 ms against 7,109 (stage 3 7,035 against 8,957, stage 2 level; BENCHMARKS.md,
  2026-12-03 "Zen 3 again"). Not measured on Zen 5 or Intel, nor for 16^3 layers of 128
  or more outputs, which these limits now include (neither preset has one)."""
  cpu = (backend or jax.default_backend()) == 'cpu'
  wide = (
    o >= FOLD_MIXED_MIN_FEATURES
    and side >= FOLD_MIXED_MIN_SIDE
    and side * side * o >= FOLD_MIXED_MIN_OUTPUT
  )
  return 'mixed' if cpu and wide else 'native'


def _phase_taps(k: int) -> tuple[int, np.ndarray]:
  """For a SAME, stride-1 kernel of size ``k`` on a 2x nearest-upsampled axis: the low-res
  window's first offset ``r0`` and ``A [2, W, k]``, where ``A[p, j, t] = 1`` when tap ``t``
  of output phase ``p`` (output ``2m + p``) reads low-res input ``m + r0 + j``."""
  lo = same_padding(k)[0]
  offsets = [[(p + t - lo) // 2 for t in range(k)] for p in (0, 1)]
  r0 = min(min(o) for o in offsets)
  width = max(max(o) for o in offsets) - r0 + 1
  taps = np.zeros((2, width, k), np.float32)
  for p in (0, 1):
    for t, r in enumerate(offsets[p]):
      taps[p, r - r0, t] = 1.0
  if (-r0, width - 1 + r0) != same_padding(width):
    raise ValueError(f'conv3d_up2: kernel size {k} has no SAME low-res window')
  return r0, taps


def up2_lowering(side: int, kernel: tuple[int, ...], backend: str | None = None) -> str:
  """How ``conv3d_up2`` convolves a 2x upsampled input of coarse side ``side``: on CPUs,
  'dual' (``conv3d_up2_dual``) for 3x3x3 kernels from side 4, 'coarse' (``conv3d_up2_coarse``)
  for other kernels from side 8, or from 4 with an even kernel (27 taps per phase instead
  of 64); else 'upsample' (upsample, then convolve). Measured (2-core AMD EPYC, one core,
  forward + gradient, ms upsample / coarse / dual; layers by their output side, twice the
  coarse side): quick, batch 8: 16^3 32 -> 16 88 / 64-65 / 25-26, 8^3 64 -> 32 35 / 37-38 /
  21, 4^3 64 -> 64 8-11 / 132-137 / 14-15; paper, batch 2: 32^3
  64 -> 64 921-973 / 751-798 / 296-307, 16^3 128 -> 64 241-248 / 209-228 / 96-106, 8^3
  128 -> 128 59-65 / 167-173 / 58-61, 4^3 128 -> 128 7-10 / 348-362 / 37-38
  (BENCHMARKS.md, 2026-12-02); k = 4, quick, batch 16 (``layer_bench up3d``): 2.4-13x
  faster on the coarse grid. GPUs: not measured, so 'upsample'."""
  if (backend or jax.default_backend()) != 'cpu':
    return 'upsample'
  if tuple(kernel) == (3, 3, 3) and side >= 4:
    return 'dual'
  k = max(kernel)
  return 'coarse' if side >= 8 or (k % 2 == 0 and side >= 4) else 'upsample'


def conv3d_up2(x: jax.Array, kernel: jax.Array, impl: str = 'auto') -> jax.Array:
  """``conv3d(upsample_nearest(x, 2), kernel)``, computed on ``x``'s own grid where
  ``up2_lowering`` says, never building the 8x larger input: on the coarse grid, each of
  the 8 output phases (voxel offsets in a 2x2x2 block) sums some of the kernel's taps over
  the same low-res input, so the kernel becomes one of ``W^3`` taps (W = 3 for k = 3 or 4)
  and ``8 * O`` outputs, rearranged by depth-to-space (27 taps per phase instead of 64
  for k = 4); for k = 3, on the dual grid with 8 taps (``conv3d_up2_dual``).
  ``impl='native'`` always upsamples, then convolves."""
  way = up2_lowering(min(x.shape[1:4]), kernel.shape[:3])
  if resolve_impl(impl) == 'native' or way == 'upsample':
    return conv3d(upsample_nearest(x), kernel, impl)
  return (conv3d_up2_dual if way == 'dual' else conv3d_up2_coarse)(x, kernel, impl)


def conv3d_up2_coarse(x: jax.Array, kernel: jax.Array, impl: str = 'auto') -> jax.Array:
  """``conv3d_up2`` on the coarse grid, whatever the layer."""
  kd, kh, kw, c, o = kernel.shape
  mats = [jnp.asarray(_phase_taps(k)[1], kernel.dtype) for k in (kd, kh, kw)]
  # K'[a, b, e, c, (p, q, r, o)] = sum_{t, u, v} A[p, a, t] A[q, b, u] A[r, e, v] K[t, u, v]
  low = jnp.einsum('pat,qbu,rev,tuvco->abecpqro', *mats, kernel)
  low = low.reshape(*low.shape[:3], c, 8 * o)
  return depth_to_space(conv3d(x, low, impl))


# For k = 3: which of a dual point's two coarse inputs (j - 1, j) each tap t of output phase
# p reads, A[p, a, t]; the phases in reversed order (row 0: phase 1), see conv3d_up2_dual.
_DUAL_TAPS = np.array([[[1, 1, 0], [0, 0, 1]], [[1, 0, 0], [0, 1, 1]]], np.float32)


def conv3d_up2_dual(x: jax.Array, kernel: jax.Array, impl: str = 'auto') -> jax.Array:
  """``conv3d_up2`` of a 3x3x3 kernel as a 2x2x2 convolution on the dual grid: fine
  output 2m of an axis reads coarse inputs (m - 1, m) and output 2m + 1 reads (m, m + 1),
  so both phases of dual point j in [0, S] read the coarse pair (j - 1, j) (fine outputs
  2j - 1 and 2j). One 2x2x2 convolution of ``8 * O`` outputs over the input padded by one
  voxel in front, then depth-to-space and a crop of one voxel per side: 8 taps per output
  instead of the coarse grid's 27, (S + 1)^3 / S^3 more outputs."""
  kd, kh, kw, c, o = kernel.shape
  if (kd, kh, kw) != (3, 3, 3):
    raise ValueError(f'conv3d_up2_dual needs a 3x3x3 kernel, got {kernel.shape}')
  a = jnp.asarray(_DUAL_TAPS, kernel.dtype)
  # K'[a, b, e, c, (p, q, r, o)] = sum_{t, u, v} A[p, a, t] A[q, b, u] A[r, e, v] K[t, u, v]
  low = jnp.einsum('pat,qbu,rev,tuvco->abecpqro', a, a, a, kernel).reshape(2, 2, 2, c, 8 * o)
  # SAME for k = 2 pads one voxel after: with one before, dual j reads coarse (j - 1, j)
  y = depth_to_space(conv3d(jnp.pad(x, ((0, 0), (1, 0), (1, 0), (1, 0), (0, 0))), low, impl))
  return y[:, 1:-1, 1:-1, 1:-1]


def phases_on_coarse_grid(c: int, o: int, backend: str | None = None) -> bool:
  """Whether ``conv3d_phases`` works on the coarse grid: on CPUs, for layers of at most
  4 = ``c * o`` channel pairs. Measured (2-core AMD EPYC, one core, forward + gradient,
  k = 4): the quick refiner's 32^3 1 -> 4, batch 16, 380 ms convolved then rearranged,
  167 ms on the coarse grid; but 16^3 4 -> 8 (batch 16) 75 against 139 ms, and the
  paper's 32^3 1 -> 32 and 16^3 32 -> 64 (batch 4) 343 / 641 against 550 / 1819 ms."""
  return (backend or jax.default_backend()) == 'cpu' and c * o <= 4


def conv3d_phases(x: jax.Array, kernel: jax.Array, impl: str = 'auto') -> jax.Array:
  """``space_to_depth(conv3d(x, kernel))``: the convolution's output in 2x2x2 blocks, so a
  2x max-pool after it is a max over axis -2. Where ``phases_on_coarse_grid`` says, it is
  computed on the coarse grid: the input's 8 phases become channels and the kernel one
  of ``W^3`` taps, ``8 * C`` inputs and ``8 * O`` outputs (W = 3 for k = 3 or 4), which
  XLA:CPU runs far faster than a few-channel convolution at full size (the refiner's
  first layer, 32^3 1 -> 4). ``impl='native'`` convolves, then rearranges."""
  c, o = kernel.shape[-2:]
  if resolve_impl(impl) == 'native' or not phases_on_coarse_grid(c, o):
    return space_to_depth(conv3d(x, kernel, impl))
  return conv3d_phases_coarse(x, kernel, impl)


def conv3d_phases_coarse(x: jax.Array, kernel: jax.Array, impl: str = 'auto') -> jax.Array:
  """``conv3d_phases`` on the coarse grid, whatever the layer."""
  kd, kh, kw, c, o = kernel.shape
  n, d, h, w, _ = x.shape
  mats = []
  for k in (kd, kh, kw):
    r0, taps = _phase_taps(k)  # taps[p, j, t]: output phase p, tap t reads coarse m + r0 + j
    lo = same_padding(k)[0]
    # B[p, j, q, t] = 1 where tap t of output phase p reads input phase q at coarse m + r0 + j
    b = np.zeros((2, taps.shape[1], 2, k), np.float32)
    for p in (0, 1):
      for t in range(k):
        i = p + t - lo - 2 * r0  # the input's fine offset from 2 (m + r0)
        b[p, i // 2, i % 2, t] = 1.0
    mats.append(jnp.asarray(b, kernel.dtype))
  # K'[a, b, e, (q, r, s, c), (p, u, v, o)] = sum_t B[p, a, q, t] B[u, b, r, .] B[v, e, s, .] K
  low = jnp.einsum('paqt,ubrx,vesy,txyco->abeqrscpuvo', *mats, kernel)
  low = low.reshape(*low.shape[:3], 8 * c, 8 * o)
  y = conv3d(space_to_depth(x).reshape(n, d // 2, h // 2, w // 2, 8 * c), low, impl)
  return y.reshape(n, d // 2, h // 2, w // 2, 8, o)


class Conv3D(SameConv):
  """3D ``SameConv`` (``flax.linen.Conv``'s parameters), lowered by ``conv3d``."""

  ndim = 3
  lower = staticmethod(conv3d)


class UpConv3D(SameConv):
  """``Conv3D`` of the 2x nearest-upsampled input, lowered by ``conv3d_up2`` (the same
  parameters as ``Conv3D``: swapping one for the other never changes a checkpoint)."""

  ndim = 3
  lower = staticmethod(conv3d_up2)


class PhaseConv3D(SameConv):
  """``Conv3D`` whose output comes in 2x2x2 blocks ``[N, D/2, H/2, W/2, 8, O]``, lowered
  by ``conv3d_phases`` (the same parameters as ``Conv3D``)."""

  ndim = 3
  lower = staticmethod(conv3d_phases)
