"""Tests for refine3d_jax.data.views: one view through the view protocols."""

import ml_collections
import numpy as np
import pytest

from refine3d_jax import input_pipeline
from refine3d_jax.data import transforms
from refine3d_jax.data import views


@pytest.fixture(scope='module')
def split_source(built_dataset):
  """The test split of the small built dataset (tests/data_fixtures.py), PNGs encoded."""
  dataset, builder_config, data_dir = built_dataset
  data = ml_collections.ConfigDict(
    dict(dataset=dataset, builder_config=builder_config, data_dir=data_dir)
  )
  return input_pipeline.open_source(data, 'test')


def options(protocol='r2n2_127', image_size=127, train=False, **kw):
  kw = {
    'train_background': (225, 255),
    'test_background': 240,
    'color_jitter': 0.0,
    'mean': (0.0,) * 3,
    'std': (1.0,) * 3,
    **kw,
  }
  return views.ViewOptions(protocol, image_size, train, **kw)


def test_test_background_is_exactly_240(split_source):
  rgba = views.decode_view(split_source[1], 4)
  opts = options()
  pixels = views.view_pixels(rgba, opts, views.sample_view_params(opts, None))
  clear = rgba[5:132, 5:132, 3] == 0
  assert clear.mean() > 0.2 and (pixels[clear] == 240).all()
  assert not (pixels[~clear] == 240).all()


def test_pix2vox_object_noise_and_permutation():
  """Drawn once per object and only when on: other configs' random streams are unchanged."""
  off = options('pix2vox_224', 32, train=True)
  rng = np.random.default_rng(0)
  assert views.sample_object_params(off, rng) == views.ObjectParams()
  assert rng.random() == np.random.default_rng(0).random()  # nothing drawn
  on = options(
    'pix2vox_224', 32, train=True, pca_noise=0.1, rgb_permute=True, mean=(0.5,) * 3, std=(0.5,) * 3
  )
  obj = views.sample_object_params(on, np.random.default_rng(1))
  assert len(obj.lighting) == 3 and sorted(obj.perm) == [0, 1, 2]
  assert views.sample_object_params(on, None) == views.ObjectParams()  # evaluation: none
  rgb = np.random.default_rng(2).integers(0, 256, (32, 32, 3)).astype(np.uint8)
  params = views.sample_view_params(options('pix2vox_224', 32), None)
  plain = views.finish_view(rgb, on, params)
  noisy = views.finish_view(rgb, on, params, views.ObjectParams(lighting=(1.0, 0.0, 0.0)))
  np.testing.assert_allclose(
    noisy - plain,
    np.broadcast_to(transforms.PCA_EIGVECS[:, 0] * transforms.PCA_EIGVALS[0] / 0.5, plain.shape),
    atol=1e-5,
  )
  permuted = views.finish_view(rgb, on, params, views.ObjectParams(perm=(1, 2, 0)))
  np.testing.assert_array_equal(permuted, plain[..., [1, 2, 0]])
