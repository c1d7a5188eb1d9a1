"""Unit tests of the building blocks: fusion modules, upsampling, encoder and decoder shapes."""

import jax
import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import pytest

from refine3d_jax.models import conv2d as conv2d_lib
from refine3d_jax.models import conv3d as conv3d_lib
from refine3d_jax.models import refiner as refiner_lib
from refine3d_jax.models.conv3d import Conv3D, resolve_impl
from refine3d_jax.models.decoder import Decoder, num_upsamplings
from refine3d_jax.models.resample import depth_to_space, space_to_depth, upsample_nearest
from refine3d_jax.models.encoder import Encoder
from refine3d_jax.models.pooling import max_over_phases, max_pool2
from refine3d_jax.models.refiner import Refiner, batch_outer_dot
from refine3d_jax.models.fusion import AttSetsFusion, SelfAttentionFusion, masked_mean
from tests.testutil import perturb


def test_upsample_nearest_matches_numpy_repeat():
  x = np.random.default_rng(0).standard_normal((2, 3, 4, 5, 6)).astype(np.float32)
  want = x.repeat(2, axis=1).repeat(2, axis=2).repeat(2, axis=3)
  np.testing.assert_array_equal(upsample_nearest(jnp.asarray(x)), want)


def test_num_upsamplings():
  assert num_upsamplings(32, 2) == 4
  assert num_upsamplings(32, 32) == 0
  with pytest.raises(ValueError, match='power of 2'):
    num_upsamplings(32, 3)


def test_masked_mean_ignores_padding():
  x = jnp.array([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
  np.testing.assert_allclose(masked_mean(x, jnp.array([[True, True, False]])), [[2.0, 3.0]])


@pytest.mark.parametrize(
  'fusion',
  [
    SelfAttentionFusion(num_heads=2, mlp_dim=8),
    AttSetsFusion(),
    SelfAttentionFusion(num_heads=2, block='plain'),
  ],
  ids=['self_attention', 'attsets', 'plain_attention'],
)
def test_fusion_permutation_invariant_and_masked(fusion):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((3, 5, 8)), jnp.float32)
  mask = jnp.array([[True] * 5, [True, True, False, False, False], [True] + [False] * 4])
  params = perturb(fusion.init(jax.random.key(0), x, mask), scale=0.5)
  apply = jax.jit(fusion.apply)
  out = apply(params, x, mask)
  assert out.shape == (3, 8)
  for _ in range(5):
    perm = rng.permutation(5)
    np.testing.assert_allclose(apply(params, x[:, perm], mask[:, perm]), out, atol=1e-5)
  # Object 1 only sees its 2 real views, object 2 its single one.
  np.testing.assert_allclose(apply(params, x[1:2, :2], mask[1:2, :2]), out[1:2], atol=1e-5)
  np.testing.assert_allclose(apply(params, x[2:, :1], mask[2:, :1]), out[2:], atol=1e-5)
  # ... and garbage in the padded slots changes nothing, while real views do matter.
  noisy = x.at[1, 2:].set(1e3)
  np.testing.assert_allclose(apply(params, noisy, mask)[1], out[1], atol=1e-5)
  assert np.abs(apply(params, x.at[1, 0].set(0.0), mask)[1] - out[1]).max() > 1e-3


def test_attsets_is_identity_on_one_view():
  x = jax.random.normal(jax.random.key(0), (4, 1, 8))
  fusion = AttSetsFusion()
  params = perturb(fusion.init(jax.random.key(1), x, jnp.ones((4, 1), bool)), scale=0.5)
  np.testing.assert_allclose(fusion.apply(params, x, jnp.ones((4, 1), bool)), x[:, 0], atol=1e-6)


def test_encoder_shapes_and_paper_spatial_size():
  enc = Encoder(widths=(4, 4, 8, 8, 8, 8), latent_dim=12, first_kernel=3)
  shapes = jax.eval_shape(enc.init_with_output, jax.random.key(0), jnp.zeros((5, 127, 127, 3)))
  out, variables = shapes
  assert out.shape == (5, 12)
  # 127 px -> 64 -> 32 -> 16 -> 8 -> 4 -> 2 with SAME pooling: 2 * 2 * 8 flattened features.
  assert variables['params']['project']['kernel'].shape == (2 * 2 * 8, 12)
  assert 'shortcut' not in variables['params']['block4']
  assert all('shortcut' in variables['params'][f'block{i}'] for i in (1, 2, 3, 5, 6))
  assert variables['params']['block1']['conv1']['kernel'].shape == (3, 3, 3, 4)


def test_decoder_upsamples_from_base_grid():
  dec = Decoder(widths=(8, 8, 8, 4, 4, 4), base_size=2, volume_size=32)
  out, variables = jax.eval_shape(dec.init_with_output, jax.random.key(0), jnp.zeros((3, 16)))
  assert out.shape == (3, 32, 32, 32)
  assert variables['params']['stem']['kernel'].shape == (16, 2**3 * 8)
  # A 1x1x1 shortcut only where the width changes (block3: 8 -> 4).
  assert [('shortcut' in variables['params'][f'block{i}']) for i in range(1, 6)] == [
    False,
    False,
    True,
    False,
    False,
  ]
  with pytest.raises(ValueError, match='cannot upsample'):
    jax.eval_shape(Decoder(widths=(8, 8), base_size=2).init, jax.random.key(0), jnp.zeros((1, 4)))


def check_lowerings(flax_conv: nn.Module, x: jax.Array, ours: list[nn.Module]) -> None:
  """Each of `ours` (one module per lowering) has `flax_conv`'s parameter shapes and, with
  its (perturbed, so a non-zero bias) parameters, its output; all have the same gradients."""
  variables = perturb(flax_conv.init(jax.random.PRNGKey(1), x), scale=0.1)
  expected = flax_conv.apply(variables, x)
  for conv in ours:
    assert jax.tree.map(jnp.shape, conv.init(jax.random.PRNGKey(1), x)) == jax.tree.map(
      jnp.shape, variables
    )
    np.testing.assert_allclose(conv.apply(variables, x), expected, atol=1e-5)
  grads = [
    jax.grad(lambda v, x, c=c: jnp.sum(jnp.sin(c.apply(v, x))), (0, 1))(variables, x) for c in ours
  ]
  for other in grads[1:]:
    for a, b in zip(jax.tree.leaves(grads[0]), jax.tree.leaves(other)):
      np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-5)  # sums of thousands of terms


@pytest.mark.parametrize('kernel', [1, 3, 4])
@pytest.mark.parametrize('channels', [(3, 2), (2, 5)])
def test_conv3d_fold_equals_native_and_flax(kernel, channels):
  # Same output (SAME padding, even kernels included) and gradients in both lowerings,
  # folded on the output channels (3 -> 2) or the input's (2 -> 5), and the same
  # parameters as flax.linen.Conv, so checkpoints do not depend on `impl`.
  c, o = channels
  assert conv3d_lib.fold_output(c, o, 4) == (o < c)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 6, 5, 4, c))
  flax_conv = nn.Conv(o, (kernel,) * 3)
  check_lowerings(flax_conv, x, [Conv3D(o, kernel, impl=impl) for impl in ('fold', 'native')])


def test_conv3d_fold_with_a_mixed_kernel_gradient_equals_native(monkeypatch):
  # fold_impl2d's 'mixed' (wide layers on large grids, CPUs), made to apply to a small layer
  for name, value in (
    ('FOLD_MIXED_MIN_SIDE', 4),
    ('FOLD_MIXED_MIN_FEATURES', 2),
    ('FOLD_MIXED_MIN_OUTPUT', 1),
  ):
    monkeypatch.setattr(conv3d_lib, name, value)
  assert conv3d_lib.fold_impl2d(5, 4, backend='cpu') == 'mixed'
  assert conv3d_lib.fold_impl2d(5, 4, backend='gpu') == 'native'
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 6, 5, 4, 3))
  check_lowerings(nn.Conv(5, (3, 3, 3)), x, [Conv3D(5, 3, impl=i) for i in ('fold', 'native')])
  # an explicit 2D lowering (layer_bench's fold2n) overrides the rule: each one is used
  # (its primitives in the jaxpr) and exact, outputs and both gradients
  w = jax.random.normal(jax.random.PRNGKey(1), (3, 3, 3, 3, 5))
  loss = lambda f: lambda x, w: (f(x, w) ** 2).sum()
  want = jax.grad(loss(lambda x, w: conv3d_lib.conv3d(x, w, 'native')), (0, 1))(x, w)
  for impl2d in ('native', 'mixed', 'matmul'):
    f = lambda x, w, i=impl2d: conv3d_lib.conv3d(x, w, 'fold', impl2d=i)
    jaxpr = str(jax.make_jaxpr(f)(x, w))
    assert ('custom_vjp_call' in jaxpr) == (impl2d == 'mixed')
    assert ('conv_general_dilated' in jaxpr) == (impl2d != 'matmul')
    got = jax.jit(jax.grad(loss(f), (0, 1)))(x, w)
    for g, r in zip(got, want):
      np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(
  conv3d_lib.resolve_impl('auto') == 'native', reason="'auto' does not fold on this backend"
)
@pytest.mark.parametrize('kernel', [3, 4])
def test_conv3d_folds_one_volume_on_its_outputs_on_cpus(kernel):
  # one_volume_on_output: on CPUs the forward of one volume is folded on its outputs,
  # widening layers too (3 -> 5 here, which fold_output alone folds on the input), its
  # gradients those of the fold on the input; a batch of two, an explicit 'fold' and an
  # explicit 2D lowering fold on the input. Every way the same output and gradients as native.
  assert conv3d_lib.one_volume_on_output(1, backend='cpu')
  assert not conv3d_lib.one_volume_on_output(2, backend='cpu')
  assert not conv3d_lib.one_volume_on_output(1, backend='gpu')
  w = jax.random.normal(jax.random.PRNGKey(1), (kernel,) * 3 + (3, 5))
  native = lambda x, w: conv3d_lib.conv3d(x, w, 'native')
  loss = lambda f: lambda x, w: (jnp.sin(f(x, w)) ** 2).sum()
  on_cpu = jax.default_backend() == 'cpu'
  cases = [
    (1, dict(impl='auto'), on_cpu),
    (2, dict(impl='auto'), False),
    (1, dict(impl='fold'), False),
    (1, dict(impl='auto', impl2d='native'), False),
  ]
  for n, kwargs, on_output in cases:
    x = jax.random.normal(jax.random.PRNGKey(0), (n, 6, 5, 4, 3))
    f = lambda x, w, kw=kwargs: conv3d_lib.conv3d(x, w, **kw)
    jaxpr = str(jax.make_jaxpr(f)(x, w))
    # on the outputs: one 2D convolution of k x k taps from C to k * O channels
    assert (f'f32[{kernel},{kernel},3,{kernel * 5}]' in jaxpr) == on_output, (n, kwargs)
    assert ('custom_vjp_call' in jaxpr) == on_output, (n, kwargs)
    np.testing.assert_allclose(f(x, w), native(x, w), atol=1e-4)
    got = jax.jit(jax.grad(loss(f), (0, 1)))(x, w)
    want = jax.grad(loss(native), (0, 1))(x, w)
    for g, r in zip(got, want):
      np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4)
  # one volume's gradients are the fold on the input's: its kernel is in the gradient's
  # program (the forward folds on the output)
  x = jax.random.normal(jax.random.PRNGKey(0), (1, 6, 5, 4, 3))
  grad = jax.make_jaxpr(jax.grad(loss(lambda x, w: conv3d_lib.conv3d(x, w)), (0, 1)))(x, w)
  assert f'f32[{kernel},{kernel},{kernel * 3},5]' in str(grad)


def test_fold_impl2d_is_mixed_for_wide_layers_on_large_grids_on_cpus():
  mixed = lambda o, side: conv3d_lib.fold_impl2d(o, side, backend='cpu') == 'mixed'
  # the paper decoder's slowest kernel gradients: its 32^3 layers, the 16^3 up-convolutions
  assert mixed(64, 32) and mixed(32, 32) and mixed(512, 16)
  # the paper's 16^3 64-output layers, the quick preset's (at most 16 outputs at 32^3)
  assert not mixed(64, 16) and not mixed(512, 8) and not mixed(16, 64) and not mixed(16, 32)
  assert conv3d_lib.fold_impl2d(64, 32, backend='gpu') == 'native'


class _UpsampledFlaxConv(nn.Module):
  """flax.linen.Conv of the 2x nearest-upsampled input: the reference of UpConv3D."""

  features: int
  kernel: int

  @nn.compact
  def __call__(self, x):
    return nn.Conv(self.features, (self.kernel,) * 3, name='conv')(upsample_nearest(x))


class _Named(nn.Module):
  """`conv` (a field, so named 'conv'): its parameters sit where _UpsampledFlaxConv's do."""

  conv: nn.Module

  def __call__(self, x):
    return self.conv(x)


@pytest.mark.parametrize('kernel', [1, 2, 3, 4, 5])
@pytest.mark.parametrize('channels', [(3, 2), (4, 1)])
def test_upconv3d_equals_upsample_then_conv(kernel, channels):
  # conv3d_up2 works on the dual grid (k = 3) or the coarse grid (8 output phases,
  # depth-to-space) yet gives the values and gradients of upsampling first, with
  # flax.linen.Conv's parameters.
  c, o = channels
  x = jax.random.normal(jax.random.PRNGKey(0), (1, 8, 9, 8, c))
  way = conv3d_lib.up2_lowering(8, (kernel,) * 3, backend='cpu')
  assert way == ('dual' if kernel == 3 else 'coarse')
  ours = [_Named(conv3d_lib.UpConv3D(o, kernel, impl=impl)) for impl in ('fold', 'native')]
  check_lowerings(_UpsampledFlaxConv(o, kernel), x, ours)


@pytest.mark.parametrize('shape', [(1, 2, 2, 2, 3), (2, 4, 5, 4, 2), (1, 3, 3, 3, 1)])
def test_up2_dual_and_coarse_equal_upsample_then_conv(shape):
  # Each way, also on grids where `up2_lowering` picks another (coarse side 2 or 3), and on
  # a non-cubic grid: the values and gradients of the native convolution of the
  # upsampled input.
  x = jax.random.normal(jax.random.PRNGKey(0), shape)
  w = jax.random.normal(jax.random.PRNGKey(1), (3, 3, 3, shape[-1], 4))
  ref = lambda x, w: conv3d_lib.conv3d(upsample_nearest(x), w, 'native')
  loss = lambda f: lambda x, w: jnp.sum(jnp.sin(f(x, w)))
  for f in (conv3d_lib.conv3d_up2_dual, conv3d_lib.conv3d_up2_coarse):
    np.testing.assert_allclose(f(x, w, 'fold'), ref(x, w), atol=2e-5, rtol=2e-5)
    for ours, theirs in zip(jax.grad(loss(f), (0, 1))(x, w), jax.grad(loss(ref), (0, 1))(x, w)):
      np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=1e-4)
  with pytest.raises(ValueError, match='3x3x3 kernel'):
    conv3d_lib.conv3d_up2_dual(x, w[:2])


def test_upconv3d_grid_choice():
  way = lambda side, k, backend='cpu': conv3d_lib.up2_lowering(side, (k,) * 3, backend)
  assert way(8, 3) == way(4, 3) == 'dual'  # 8 taps per output instead of 27
  assert way(2, 3) == 'upsample'  # measured faster for a 4^3 output
  assert way(8, 4) == way(4, 4) == way(8, 5) == 'coarse'
  assert way(2, 4) == way(4, 5) == 'upsample'
  assert conv3d_lib.up2_lowering(8, (1, 3, 3), 'cpu') == 'coarse'
  assert way(16, 3, 'gpu') == way(16, 4, 'gpu') == 'upsample'  # not measured there


@pytest.mark.parametrize('kernel', [2, 3, 4])
def test_conv3d_phases_equals_conv_then_space_to_depth(kernel):
  # On the coarse grid (1 -> 4 channels, as the quick refiner's first layer) or convolved
  # at full size, then rearranged: the same values and gradients.
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 4, 6, 4, 1))
  w = jax.random.normal(jax.random.PRNGKey(1), (kernel,) * 3 + (1, 4))
  assert conv3d_lib.phases_on_coarse_grid(1, 4, backend='cpu')
  reference = lambda x, w: space_to_depth(conv3d_lib.conv3d(x, w, 'native'))
  ours = lambda x, w: conv3d_lib.conv3d_phases(x, w, 'fold')
  np.testing.assert_allclose(ours(x, w), reference(x, w), atol=1e-5)
  grads = [
    jax.grad(lambda x, w, f=f: jnp.sum(jnp.sin(f(x, w))), (0, 1))(x, w) for f in (ours, reference)
  ]
  for a, b in zip(*grads):
    np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-5)
  assert not conv3d_lib.phases_on_coarse_grid(4, 8, backend='cpu')  # measured slower


def test_space_to_depth_and_max_over_phases_equal_max_pool2():
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 4, 6, 2, 3))
  phases = space_to_depth(x)
  assert phases.shape == (2, 2, 3, 1, 8, 3)
  np.testing.assert_array_equal(phases[0, 1, 2, 0, 5], x[0, 3, 4, 1])  # offset (1, 0, 1)
  np.testing.assert_array_equal(max_over_phases(phases), max_pool2(x))
  x = jnp.round(x)  # ties: the gradient goes to the same (first) maximum
  g = lambda pool: jax.grad(lambda x: jnp.sum(jnp.arange(18.0) @ pool(x).reshape(18, -1)))(x)
  np.testing.assert_array_equal(g(lambda x: max_over_phases(space_to_depth(x))), g(max_pool2))


def test_conv3d_impl_choice():
  assert resolve_impl('auto', backend='cpu') == 'fold'
  assert resolve_impl('auto', backend='gpu') == 'fold'
  assert resolve_impl('auto', backend='tpu') == 'native'
  assert resolve_impl('native', backend='gpu') == 'native'
  with pytest.raises(ValueError, match='impl'):
    resolve_impl('winograd')


@pytest.mark.parametrize('kernel', [1, 3, 4, 5])
def test_conv2d_lowerings_equal_flax(kernel):
  # The encoder's lowerings: same output and gradients, flax.linen.Conv's parameters.
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 6, 5, 3))
  flax_conv = nn.Conv(4, (kernel, kernel))
  impls = ('matmul', 'native', 'mixed')
  check_lowerings(flax_conv, x, [conv2d_lib.Conv2D(4, kernel, impl=impl) for impl in impls])


def test_im2col_groups():
  mb = 1 << 20
  assert conv2d_lib.im2col_groups(64, 7 * mb, 2) == 4  # 8 images of 7 MB per device and group
  assert conv2d_lib.im2col_groups(64, 2 * mb, 2) == 1  # all 32 within 64 MB: one pass
  assert conv2d_lib.im2col_groups(6, 30 * mb, 4) == 1  # 6 images do not split over 4 devices
  assert conv2d_lib.im2col_groups(12, 100 * mb, 2) == 6  # larger than the bound: one image


@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
def test_tap_kernel_gradient_in_groups_equals_im2col(monkeypatch, dtype):
  # Every split of the taps (0: all on dy's side, 2: im2col), even and odd kernels, one
  # pass or one image per group: the kernel gradient of the im2col matmul, the same FLOPs
  # grouped as in one pass, and the 'mixed' conv's VJP uses it
  x = jax.random.normal(jax.random.PRNGKey(0), (12, 7, 5, 3)).astype(dtype)
  tol = dict(rtol=1e-5, atol=1e-5) if dtype == jnp.float32 else dict(rtol=2e-2, atol=0.1)
  assert conv2d_lib.tap_split((127, 127), (3, 3), 96, 96) == 1  # 3C + 3O per pixel, not 9C + O
  assert conv2d_lib.tap_split((127, 127), (7, 7), 3, 96) == 2  # the first layer: im2col
  for ks in ((3, 3), (4, 2)):
    dy = jax.random.normal(jax.random.PRNGKey(1), (12, 7, 5, 4)).astype(dtype)
    k = jnp.zeros(ks + (3, 4), dtype)
    want = jax.vjp(lambda k: conv2d_lib._matmul(x, k), k)[1](dy)[0]
    for split in range(3):
      # a new function per bound: jit and make_jaxpr cache traces by function
      f = lambda: lambda x, dy, s=split: conv2d_lib.tap_kernel_grad(x, dy, k.shape, s)
      flops = lambda: jax.jit(f()).lower(x, dy).cost_analysis()['flops']
      monkeypatch.setattr(conv2d_lib, 'IM2COL_GROUP_BYTES', 1 << 40)
      one_pass, one_pass_flops = f()(x, dy), flops()
      monkeypatch.setattr(conv2d_lib, 'IM2COL_GROUP_BYTES', 1)
      groups = conv2d_lib.im2col_groups(12, 1 << 20, jax.device_count())
      assert groups == 12 // jax.device_count() > 1
      jaxpr = jax.make_jaxpr(f())(x, dy)
      assert [e.primitive.name for e in jaxpr.eqns].count('dot_general') == groups
      grouped = f()(x, dy)
      assert grouped.dtype == dtype
      for got in (one_pass, grouped):
        np.testing.assert_allclose(np.asarray(got, np.float32), np.asarray(want, np.float32), **tol)
      # every group counted (not one loop body's 1/12), plus the accumulating adds
      assert abs(flops() - one_pass_flops) < 0.05 * one_pass_flops
  k = jnp.zeros((3, 3, 3, 4), dtype)  # the default split here is 1, not im2col
  assert conv2d_lib.tap_split((7, 5), (3, 3), 3, 4) == 1
  via_vjp = jax.vjp(lambda k: conv2d_lib._mixed(x, k), k)[1](dy)[0]
  direct = conv2d_lib.tap_kernel_grad(x, dy, k.shape)
  want = jax.vjp(lambda k: conv2d_lib._matmul(x, k), k)[1](dy)[0]
  np.testing.assert_allclose(np.asarray(direct, np.float32), np.asarray(want, np.float32), **tol)
  with pytest.raises(ValueError, match='split must be in'):
    conv2d_lib.tap_kernel_grad(x, dy, k.shape, 3)
  np.testing.assert_array_equal(np.asarray(via_vjp, np.float32), np.asarray(direct, np.float32))


def test_conv2d_lowerings_agree_in_bfloat16():
  # The GPU preset's dtype: every lowering keeps bf16 activations and float32 parameter
  # gradients, and agrees with the native one to bf16 rounding.
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 7, 5))
  convs = {
    i: conv2d_lib.Conv2D(6, 3, impl=i, dtype=jnp.bfloat16) for i in ('native', 'mixed', 'matmul')
  }
  variables = perturb(convs['native'].init(jax.random.PRNGKey(1), x), scale=0.1)
  loss = lambda v, x, c: jnp.sum(jnp.sin(c.apply(v, x).astype(jnp.float32)))
  results = {}
  for impl, conv in convs.items():
    y = conv.apply(variables, x)
    assert y.dtype == jnp.bfloat16
    grads = jax.grad(loss, (0, 1))(variables, x, conv)
    assert {g.dtype for g in jax.tree.leaves(grads)} == {jnp.dtype(jnp.float32)}
    results[impl] = (y.astype(jnp.float32), grads)
  for impl in ('mixed', 'matmul'):
    for a, b in zip(jax.tree.leaves(results['native']), jax.tree.leaves(results[impl])):
      np.testing.assert_allclose(a, b, atol=0.05, rtol=0.02)


def test_conv2d_impl_choice():
  features = conv2d_lib.MATMUL_MIN_FEATURES
  side = conv2d_lib.MIXED_MIN_SIDE
  assert conv2d_lib.resolve_impl('auto', features, side, backend='cpu') == 'mixed'
  assert conv2d_lib.resolve_impl('auto', features, side - 1, backend='cpu') == 'matmul'
  assert conv2d_lib.resolve_impl('auto', features - 1, side, backend='cpu') == 'native'
  assert conv2d_lib.resolve_impl('auto', 256, 127, backend='gpu') == 'native'
  assert conv2d_lib.resolve_impl('native', 8, 64, backend='cpu') == 'native'
  with pytest.raises(ValueError, match='impl'):
    conv2d_lib.resolve_impl('winograd', 8)


def test_depth_to_space_places_each_channel_at_its_offset():
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 3, 4, 5, 16))
  y = np.asarray(depth_to_space(x))
  assert y.shape == (2, 6, 8, 10, 2)
  x = np.asarray(x).reshape(2, 3, 4, 5, 2, 2, 2, 2)
  for i, j, k in np.ndindex(2, 2, 2):
    np.testing.assert_array_equal(y[:, i::2, j::2, k::2], x[:, :, :, :, i, j, k])


def test_shuffle_head_and_occupancy_prior():
  dec = Decoder(
    widths=(8, 8, 8, 4, 4), base_size=2, volume_size=32, head='shuffle', occupancy_prior=0.1
  )
  z = jnp.zeros((3, 16))
  variables = dec.init(jax.random.key(0), z)
  params = variables['params']
  assert sorted(k for k in params if k.startswith('block')) == [
    'block1',
    'block2',
    'block3',
    'block4',
  ]
  assert params['logits']['kernel'].shape == (1, 1, 1, 4, 8)
  np.testing.assert_allclose(params['logits']['bias'], np.log(0.1 / 0.9), rtol=1e-6)
  assert dec.apply(variables, z).shape == (3, 32, 32, 32)
  # 3 upsamplings in blocks (2 -> 16), the 4th in the head: a 4th width would add a block
  assert Decoder(widths=(8, 8, 8, 4), base_size=2, head='shuffle').init(jax.random.key(0), z)[
    'params'
  ]['logits']['kernel'].shape == (1, 1, 1, 4, 8)
  with pytest.raises(ValueError, match='head'):
    Decoder(widths=(8, 8), head='transpose').init(jax.random.key(0), z)


@pytest.mark.parametrize('shape', [(2, 8, 4, 6, 3), (2, 7, 5, 3), (1, 127, 127, 2)])
def test_max_pool2_equals_flax_max_pool_and_its_gradient(shape):
  """2D and 3D, even and odd sides (SAME padding), values and gradients."""
  x = jnp.asarray(np.random.default_rng(0).standard_normal(shape), jnp.float32)
  d = len(shape) - 2
  flax_pool = lambda x: nn.max_pool(x, (2,) * d, strides=(2,) * d, padding='SAME')
  np.testing.assert_array_equal(max_pool2(x), flax_pool(x))
  weights = jnp.asarray(np.random.default_rng(1).standard_normal(flax_pool(x).shape), jnp.float32)
  grad = lambda pool: jax.grad(lambda x: jnp.sum(pool(x) * weights))(x)
  np.testing.assert_array_equal(grad(max_pool2), grad(flax_pool))  # no ties in random x


def test_refiner_paper_options():
  """The paper preset's refiner: ReLU up path, the FC bottleneck at 2^3 x 8 = 64 -> 16 -> 64
  here, BN momentum 0.99 (running mean moves 1% of the way to the batch mean per step)."""
  x = jax.random.normal(jax.random.key(0), (2, 16, 16, 16)) + 3.0
  paper = Refiner(widths=(4, 8, 8), up_activation='relu', bottleneck=16, bn_momentum=0.99)
  ours = Refiner(widths=(4, 8, 8))
  v_paper, v_ours = paper.init(jax.random.key(1), x), ours.init(jax.random.key(1), x)
  assert v_paper['params']['fc1']['kernel'].shape == (64, 16)
  assert v_paper['params']['fc2']['kernel'].shape == (16, 64) and 'fc1' not in v_ours['params']
  # the zero-initialised last conv: both start as the identity on the coarse logits
  np.testing.assert_allclose(paper.apply(v_paper, x), x, atol=1e-6)
  # down1 sees the same input through the same initial conv in both, so the same batch
  # mean m_b; from running mean 0: new = (1 - momentum) * m_b.
  np.testing.assert_array_equal(
    v_paper['params']['down1']['conv']['kernel'], v_ours['params']['down1']['conv']['kernel']
  )
  means = [
    model.apply(v, x, train=True, mutable=['batch_stats'])[1]['batch_stats']['down1']['bn']['mean']
    for model, v in ((paper, v_paper), (ours, v_ours))
  ]
  assert np.abs(means[1]).max() > 0.01
  np.testing.assert_allclose(means[0] / 0.01, means[1] / 0.1, rtol=1e-4, atol=1e-6)
  # ReLU on the up path changes the output once the weights are perturbed
  perturbed = perturb(v_ours, scale=0.5)
  relu_up = Refiner(widths=(4, 8, 8), up_activation='relu')
  assert np.abs(relu_up.apply(perturbed, x) - ours.apply(perturbed, x)).max() > 1e-4


@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
def test_batch_outer_dot_is_dense(dtype):
  """The bottleneck's Dense with its kernel gradient as a sum of outer products: the same
  outputs and gradients as Flax's default dot."""
  x = jax.random.normal(jax.random.key(0), (3, 40))
  ours, flax_dot = (nn.Dense(24, dtype=dtype, dot_general=d) for d in (batch_outer_dot, None))
  params = flax_dot.init(jax.random.key(1), x)
  weights = jax.random.normal(jax.random.key(2), (3, 24))
  loss = lambda model: lambda p, x: jnp.sum(model.apply(p, x).astype(jnp.float32) * weights)
  tol = dict(rtol=1e-5, atol=1e-5) if dtype == jnp.float32 else dict(rtol=2e-2, atol=2e-2)
  np.testing.assert_allclose(ours.apply(params, x), flax_dot.apply(params, x), **tol)
  grads = [jax.grad(loss(m), argnums=(0, 1))(params, x) for m in (ours, flax_dot)]
  for a, b in zip(jax.tree.leaves(grads[0]), jax.tree.leaves(grads[1])):
    assert a.dtype == b.dtype and np.abs(np.asarray(a, np.float32)).max() > 0.1
    np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b, np.float32), **tol)
  with pytest.raises(ValueError, match=r'\[B, in\] @ \[in, out\] only'):
    nn.Dense(4, dot_general=batch_outer_dot).init(jax.random.key(0), jnp.ones((2, 3, 5)))


def test_batch_outer_dot_gathers_its_rows_under_a_mesh():
  """Under an Auto mesh of several devices (the train steps trace under the data mesh) the
  kernel gradient gathers the batch's rows, at most GATHER_MAX_ROWS of them; never under
  one device or Explicit axes (parallel_test checks the gradients on four devices)."""
  dense = nn.Dense(24, dot_general=batch_outer_dot)
  params = dense.init(jax.random.key(1), jnp.ones((1, 40)))
  grad = jax.grad(lambda p, x: jnp.sum(jnp.sin(dense.apply(p, x))), argnums=(0, 1))
  constraints = lambda x: str(jax.make_jaxpr(grad)(params, x)).count('sharding_constraint')
  x = jax.random.normal(jax.random.key(0), (3, 40))
  many = jnp.ones((refiner_lib.GATHER_MAX_ROWS + 1, 40))
  mesh = lambda n, kind: jax.sharding.AbstractMesh((n,), ('data',), axis_types=(kind,))
  assert constraints(x) == 0
  with jax.sharding.use_abstract_mesh(mesh(2, jax.sharding.AxisType.Auto)):
    assert constraints(x) == 2 and constraints(many) == 0
  with jax.sharding.use_abstract_mesh(mesh(1, jax.sharding.AxisType.Auto)):
    assert constraints(x) == 0
  with jax.sharding.use_abstract_mesh(mesh(2, jax.sharding.AxisType.Explicit)):
    assert constraints(x) == 0


def test_decoder_conv_shortcuts_everywhere():
  z = jnp.ones((1, 16))
  ours = Decoder(widths=(8, 8, 4), base_size=8, volume_size=32)
  paper = Decoder(widths=(8, 8, 4), base_size=8, volume_size=32, shortcuts='conv')
  p_ours = ours.init(jax.random.key(0), z)['params']
  p_paper = paper.init(jax.random.key(0), z)['params']
  assert 'shortcut' not in p_ours['block1'] and 'shortcut' in p_ours['block2']  # 8 -> 8, 8 -> 4
  assert 'shortcut' in p_paper['block1'] and 'shortcut' in p_paper['block2']
