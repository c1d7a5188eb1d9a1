"""Photos made to look like renderings (refine3d_jax.data.photos): framing, the automatic
background, and one-line errors for bad arrays and files."""

import numpy as np
from PIL import Image
import pytest

from refine3d_jax import input_pipeline
from refine3d_jax.data import photos, transforms
from tests.testutil import small_config

BACKDROP = (205, 210, 220)  # the plain background of the fake photos


def on_backdrop(rgba, size, at, noise=3.0, seed=0):
  """uint8 [h, w, 3]: `rgba` pasted at `at` = (top, left) on a plain noisy backdrop."""
  h, w = size
  canvas = np.full((h, w, 3), BACKDROP, np.float32)
  a = rgba[..., 3:] / np.float32(255)
  top, left = at
  canvas[top : top + rgba.shape[0], left : left + rgba.shape[1]] = rgba[..., :3] * a + canvas[
    top : top + rgba.shape[0], left : left + rgba.shape[1]
  ] * (1 - a)
  canvas += np.random.default_rng(seed).normal(0, noise, canvas.shape)
  return np.clip(np.round(canvas), 0, 255).astype(np.uint8)


@pytest.fixture(scope='module')
def renderings(tiny_data_dir):
  """uint8 [137, 137, 4] views 0, 6, 12 of synthetic_shapes/tiny's test object 0 (RGBA,
  as rendered)."""
  example = input_pipeline.open_source(small_config(tiny_data_dir).data, 'test')[0]
  return [transforms.decode_png(example['images'][v]) for v in (0, 6, 12)]


def test_frame_places_the_object_as_the_renderings_do():
  mask = np.zeros((200, 300), bool)
  mask[40:100, 200:230] = True  # 60 tall, 30 wide, off-centre
  rgb = np.repeat(np.where(mask[..., None], 0, 240).astype(np.uint8), 3, axis=-1)
  out = photos.frame(rgb, mask, background=240)
  assert out.shape == (137, 137, 3)
  ys, xs = np.nonzero(out[..., 0] < 120)
  assert abs((ys.max() - ys.min() + 1) - photos.OBJECT_FILL * 137) <= 2
  assert abs((xs.min() + xs.max() + 1) / 2 - 68.5) <= 1
  assert abs((ys.min() + ys.max() + 1) / 2 - 68.5 - photos.OBJECT_DROP * 137) <= 1
  # without a mask: the centred square, nothing padded
  assert (photos.frame(rgb, None, 240) == transforms.resize(rgb[:, 50:250], 137)).all()


def test_auto_background_finds_the_object(renderings):
  rgba = renderings[0]
  photo = on_backdrop(rgba, (200, 300), (30, 100))
  truth = np.zeros((200, 300), bool)
  truth[30:167, 100:237] = rgba[..., 3] > 0
  mask = photos.border_mask(photo)
  assert (mask & truth).sum() / (mask | truth).sum() > 0.95
  # made uniform: the photo and the cut-out become nearly the same rendering
  auto = photos.to_rendering(photo, 240, background='auto').astype(np.float32)
  cut = photos.to_rendering(rgba, 240).astype(np.float32)
  assert auto.shape == cut.shape == (137, 137, 4)
  assert np.abs(auto - cut).mean() < 4
  with pytest.raises(ValueError, match='found no object'):
    photos.border_mask(np.full((50, 60, 3), 128, np.uint8))


def test_bad_arrays_and_files(tmp_path, renderings):
  with pytest.raises(ValueError, match='shape'):
    photos.as_rgba(np.zeros((4, 4, 2), np.uint8))
  with pytest.raises(ValueError, match=r'in \[0, 1\]'):
    photos.as_rgba(np.full((4, 4, 3), 2.0))
  truncated = tmp_path / 'cut.png'
  Image.fromarray(renderings[0]).save(truncated)
  truncated.write_bytes(truncated.read_bytes()[:200])
  with pytest.raises(photos.InputError, match=f'^{truncated}: unreadable image'):
    photos.read_image(str(truncated))
  folder = tmp_path / 'no_images'
  folder.mkdir()
  (folder / 'notes.txt').write_text('no images here')
  with pytest.raises(photos.InputError, match=f'^{folder}: no PNG or JPEG files'):
    photos.list_images([str(folder)])
  with pytest.raises(photos.InputError, match=f'^{tmp_path}/a.png: no such file'):
    photos.list_images([str(tmp_path / 'a.png')])
