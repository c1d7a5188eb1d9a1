"""Tests for the per-view numpy image functions refine3d_jax.data.transforms."""

import io

import numpy as np
from PIL import Image
import pytest

from refine3d_jax.data import transforms


def rgba_image(size=137, seed=0):
  """uint8 [size, size, 4]: random colours, alpha 0 outside a centred square."""
  rng = np.random.default_rng(seed)
  image = rng.integers(0, 256, (size, size, 4), dtype=np.uint8)
  image[..., 3] = 0
  image[40:100, 30:90, 3] = rng.integers(1, 256, (60, 60), dtype=np.uint8)
  return image


def png_bytes(array):
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format='PNG')
  return buffer.getvalue()


def test_decode_png_round_trip_and_corrupt():
  image = rgba_image()
  np.testing.assert_array_equal(transforms.decode_png(png_bytes(image)), image)
  rgb = transforms.decode_png(png_bytes(image[..., :3]))
  assert rgb.shape == (137, 137, 4) and (rgb[..., 3] == 255).all()
  with pytest.raises(ValueError, match='corrupt PNG'):
    transforms.decode_png(png_bytes(image)[:200])
  with pytest.raises(ValueError, match='corrupt PNG'):
    transforms.decode_png(b'not a png')


def test_crop_and_bounds():
  image = rgba_image()
  np.testing.assert_array_equal(transforms.crop(image, 9, 3, 127), image[9:136, 3:130])
  with pytest.raises(ValueError, match='leaves'):
    transforms.crop(image, 11, 0, 127)


def test_composite_background_only_where_alpha_is_zero():
  full = rgba_image()
  # the whole image, a crop and a flipped crop (strided views of it, read in place)
  for image in (full, full[3:130, 7:134], full[3:130, 7:134][:, ::-1]):
    rgb = transforms.composite_background(image, (225, 240, 255))
    assert rgb.dtype == np.uint8 and rgb.shape == image.shape[:2] + (3,)
    clear = image[..., 3] == 0
    np.testing.assert_array_equal(rgb[clear], np.broadcast_to([225, 240, 255], rgb[clear].shape))
    np.testing.assert_array_equal(rgb[~clear], image[..., :3][~clear])


def test_background_of_a_flipped_crop_is_the_flipped_background():
  """views.view_pixels flips first and fills the background second: the same pixels as
  filling, flipping and resizing in the old order."""
  image = rgba_image()
  view = transforms.flip_horizontal(transforms.crop(image, 3, 7, 127))
  rgb = transforms.composite_background(view, (230, 241, 252))
  old = transforms.flip_horizontal(
    transforms.composite_background(transforms.crop(image, 3, 7, 127), (230, 241, 252))
  )
  np.testing.assert_array_equal(rgb, old)
  np.testing.assert_array_equal(transforms.resize(rgb, 64), transforms.resize(old, 64))


@pytest.mark.parametrize('size', [16, 64, 127, 224])
def test_composite_resize_is_composite_then_resize(size):
  """The RGBX path gives the bytes of filling the background, then resizing the RGB view
  (PIL resamples each band on its own), flipped crops included."""
  image = rgba_image()
  for view in (transforms.crop(image, 3, 7, 127), transforms.flip_horizontal(image[:127, 2:129])):
    expected = transforms.resize(transforms.composite_background(view, (230, 241, 252)), size)
    got = transforms.composite_resize(view, (230, 241, 252), size)
    assert got.shape == (size, size, 3) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, expected)


def test_flip_resize_jitter_normalize():
  rgb = rgba_image()[..., :3]
  np.testing.assert_array_equal(transforms.flip_horizontal(rgb)[:, 0], rgb[:, -1])
  for size in (16, 64, 224):
    out = transforms.resize(rgb, size)
    assert out.shape == (size, size, 3) and out.dtype == np.uint8
  assert transforms.resize(rgb, 137) is rgb
  x = transforms.to_float(rgb)
  np.testing.assert_allclose(transforms.color_jitter(x, 1, 1, 1), x, atol=1e-6)
  brighter = transforms.color_jitter(x, 1.4, 1, 1)
  assert brighter.mean() > x.mean() and brighter.max() <= 1
  grey = transforms.color_jitter(x, 1, 1, 0)
  np.testing.assert_allclose(grey[..., 0], grey[..., 1], atol=1e-6)
  y = transforms.normalize(x, (0.5,) * 3, (0.5,) * 3)
  assert y.dtype == np.float32 and -1 <= y.min() and y.max() <= 1
  np.testing.assert_allclose(y, 2 * x - 1, atol=1e-6)
  np.testing.assert_array_equal(transforms.normalize(x, (0.0,) * 3, (1.0,) * 3), x)


def test_protocols():
  for p in transforms.PROTOCOLS.values():
    assert p.train_offsets <= 137 - p.crop and 2 * p.center_offset == 137 - p.crop - (
      (137 - p.crop) % 2
    )


def test_pca_lighting_and_channel_permutation():
  """Pix2Vox's RandomNoise (AlexNet's PCA lighting) and RandomPermuteRGB."""
  x = np.random.default_rng(0).random((4, 4, 3)).astype(np.float32)
  np.testing.assert_array_equal(transforms.pca_lighting(x, (0, 0, 0)), x)
  shifted = transforms.pca_lighting(x, (1.0, 0, 0))  # the first component, scaled by 0.2175
  np.testing.assert_allclose(
    shifted - x,
    np.broadcast_to([-0.5675 * 0.2175, -0.5808 * 0.2175, -0.5836 * 0.2175], x.shape),
    atol=1e-6,
  )
  perm = transforms.permute_channels(x, (2, 0, 1))
  np.testing.assert_array_equal(perm[..., 0], x[..., 2])
  np.testing.assert_array_equal(perm[..., 1], x[..., 0])
