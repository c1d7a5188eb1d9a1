"""Unit tests of the building blocks: fusion modules, upsampling, encoder and decoder shapes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from refine3d_jax.models.decoder import Decoder, num_upsamplings, upsample_nearest
from refine3d_jax.models.encoder import Encoder
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
  x = jnp.array([[[1., 2.], [3., 4.], [100., 100.]]])
  np.testing.assert_allclose(masked_mean(x, jnp.array([[True, True, False]])), [[2., 3.]])


@pytest.mark.parametrize('fusion', [SelfAttentionFusion(num_heads=2, mlp_dim=8), AttSetsFusion()],
                         ids=['self_attention', 'attsets'])
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
  assert np.abs(apply(params, x.at[1, 0].set(0.), mask)[1] - out[1]).max() > 1e-3


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
  assert variables['params']['stem']['kernel'].shape == (16, 2 ** 3 * 8)
  # A 1x1x1 shortcut only where the width changes (block3: 8 -> 4).
  assert [('shortcut' in variables['params'][f'block{i}']) for i in range(1, 6)] == [
      False, False, True, False, False]
  with pytest.raises(ValueError, match='cannot upsample'):
    jax.eval_shape(Decoder(widths=(8, 8), base_size=2).init, jax.random.key(0), jnp.zeros((1, 4)))
