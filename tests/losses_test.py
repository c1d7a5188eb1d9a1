"""Tests of refine3d_jax.losses."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from refine3d_jax import losses


def test_voxel_bce_equals_optax_in_value_and_gradient():
  z = jax.random.normal(jax.random.key(0), (2, 4, 4, 4)) * 8
  z = z.at[0, 0, 0, :].set(jnp.array([-80.0, 80.0, 0.0, 1e-3]))  # saturated and flat ends
  for t in (
    jax.random.uniform(jax.random.key(1), z.shape) < 0.3,  # occupancy, bool
    jax.random.uniform(jax.random.key(2), z.shape),  # soft targets
  ):
    ref = lambda z: optax.sigmoid_binary_cross_entropy(z, t.astype(jnp.float32)).mean()
    ours = lambda z: losses.voxel_bce(z, t)
    np.testing.assert_allclose(ours(z), ref(z), rtol=1e-6)
    # gradients are ~ 1/128 per voxel here
    np.testing.assert_allclose(jax.grad(ours)(z), jax.grad(ref)(z), rtol=1e-5, atol=1e-8)


def test_in_blocks_only_reorders_even_volumes_and_the_loss_is_still_optax():
  from refine3d_jax.models.resample import depth_to_space

  v = jax.random.normal(jax.random.key(3), (2, 4, 6, 4))
  blocks = losses.in_blocks(v)
  assert blocks.shape == (2, 2, 3, 2, 8)
  np.testing.assert_array_equal(depth_to_space(blocks)[..., 0], v)
  assert losses.in_blocks(jnp.zeros((2, 3, 4, 4))).shape == (2, 3, 4, 4)  # odd: unchanged
  assert losses.in_blocks(jnp.zeros((2, 4, 4))).shape == (2, 4, 4)  # not [B, D, H, W]
  for shape in ((2, 4, 6, 4), (2, 3, 5, 3)):  # blocked, and as it was
    z = jax.random.normal(jax.random.key(4), shape) * 4
    t = jax.random.uniform(jax.random.key(5), shape) < 0.3
    ref = lambda z, t=t: optax.sigmoid_binary_cross_entropy(z, t.astype(jnp.float32)).mean()
    np.testing.assert_allclose(losses.voxel_bce(z, t), ref(z), rtol=1e-6)
    grads = jax.grad(lambda z, t=t: losses.voxel_bce(z, t))(z)
    assert grads.shape == shape
    np.testing.assert_allclose(grads, jax.grad(ref)(z), rtol=1e-5, atol=1e-8)


def test_reconstruction_loss_sums_both_terms():
  t = jnp.zeros((1, 2, 2, 2), bool).at[0, 0, 0, 0].set(True)
  out = dict(coarse_logits=jnp.zeros((1, 2, 2, 2)), refined_logits=jnp.full((1, 2, 2, 2), -3.0))
  loss, terms = losses.reconstruction_loss(out, t)
  np.testing.assert_allclose(terms['coarse'], np.log(2.0), rtol=1e-6)
  expected = (7 * np.log1p(np.exp(-3.0)) + np.log1p(np.exp(3.0))) / 8
  np.testing.assert_allclose(terms['refined'], expected, rtol=1e-6)
  np.testing.assert_allclose(loss, terms['coarse'] + terms['refined'], rtol=1e-6)
