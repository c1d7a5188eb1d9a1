"""The pure steps: the moving average's warm-up, single-view examples (train_step, loss_fn
and eval_step are exercised by jtso_test, train_test and evaluate_test)."""

import jax.numpy as jnp
import numpy as np

from refine3d_jax import steps


def test_ema_update_warms_up():
  ema, params = {'w': jnp.zeros(2)}, {'w': jnp.ones(2)}
  # step 0: d = min(0.99, 1/10) = 0.1; step 990: d = min(0.99, 991/1000) = 0.99
  np.testing.assert_allclose(steps.ema_update(ema, params, 0.99, jnp.int32(0))['w'], [0.9, 0.9])
  np.testing.assert_allclose(
    steps.ema_update(ema, params, 0.99, jnp.int32(990))['w'], [0.01, 0.01], rtol=1e-5
  )


def test_single_view_batch_takes_real_views_only():
  images = jnp.arange(3 * 4, dtype=jnp.float32).reshape(3, 4, 1, 1, 1)  # value = 4b + v
  mask = jnp.array([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]], bool)  # first-n real
  voxels = jnp.arange(3, dtype=jnp.float32).reshape(3, 1, 1, 1)
  flat, flat_mask, flat_voxels = steps.single_view_batch(images, mask, voxels, 3)
  assert flat.shape == (9, 1, 1, 1, 1) and bool(flat_mask.all())
  # object 1 has 2 real views (4, 5), object 2 one (8): cycled, never a padded slot
  assert flat.ravel().tolist() == [0, 1, 2, 4, 5, 4, 8, 8, 8]
  assert flat_voxels.ravel().tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
  one, _, same = steps.single_view_batch(images, mask, voxels, 1)
  np.testing.assert_array_equal(one, images[:, :1])
  np.testing.assert_array_equal(same, voxels)
