"""One synthetic object, from (seed, split, index, variant) alone: any can be made independently."""

from typing import Any

import numpy as np

from refine3d_jax.data import camera as camera_lib
from refine3d_jax.data import features
from refine3d_jax.data import shading
from refine3d_jax.data.synthetic_shapes import hard_shapes
from refine3d_jax.data.synthetic_shapes import render
from refine3d_jax.data.synthetic_shapes import shapes

SPLITS = ('train', 'validation', 'test')
# Base colours per category, jittered per object.
_COLOURS = {
  'chair': (0.75, 0.45, 0.25),
  'table': (0.55, 0.40, 0.30),
  'lamp': (0.85, 0.80, 0.45),
  'car': (0.70, 0.15, 0.15),
  'aeroplane': (0.75, 0.78, 0.85),
}


def object_rng(seed: int, split: str, index: int, variant: str = 'simple') -> np.random.Generator:
  """The object's own generator, independent of generation order."""
  key = [seed, SPLITS.index(split), index]
  return np.random.default_rng(key if variant == 'simple' else key + [VARIANTS.index(variant)])


def category_of(index: int) -> str:
  """Categories cycle with the index, so every split is balanced."""
  return shapes.CATEGORY_NAMES[index % len(shapes.CATEGORY_NAMES)]


def _simple_look(rng, category, parts):
  """One jittered base colour [3] per category, the fixed camera light."""
  del parts
  colour = np.clip(np.array(_COLOURS[category]) + rng.uniform(-0.15, 0.15, 3), 0.05, 1.0)
  return colour, shading.CAMERA_LIGHT


def _hard_look(rng, category, parts):
  """Per-part colours [P, 3] from a palette of 1-3 random colours, and a random light."""
  del category
  palette = np.stack([shading.sample_colour(rng) for _ in range(rng.integers(1, 4))])
  return palette[rng.integers(0, len(palette), len(parts))], shading.sample_light(rng)


_GENERATORS = {
  'simple': (shapes.CATEGORIES, _simple_look),
  'hard': (hard_shapes.CATEGORIES, _hard_look),
}
VARIANTS = tuple(_GENERATORS)


def make_object(seed: int, split: str, index: int, variant: str = 'simple') -> dict[str, Any]:
  """Arrays of one object: images [24, 137, 137, 4] uint8, camera [24, 5], voxels [32]^3, ...

  variant: 'simple' (one colour, fixed light, objects nearly fixed by one view) or 'hard'
  (`hard_shapes`, per-part colours, a random light). Also returns `side`, the voxel grid's
  side in the object's (unit-diagonal) frame.
  """
  categories, look = _GENERATORS[variant]
  rng = object_rng(seed, split, index, variant)
  category = category_of(index)
  parts, side = shapes.normalize(categories[category](rng))
  camera = camera_lib.sample_cameras(rng)
  colour, light = look(rng, category, parts)
  return {
    'images': render.render(parts, camera, colour, light=light),
    'camera': camera,
    'voxels': render.voxelize(parts, side),
    'label': category,
    'synset': category,
    'model_id': f'{index:06d}',
    'side': side,
  }


def make_example(
  seed: int, split: str, index: int, variant: str = 'simple'
) -> tuple[str, dict[str, Any]]:
  """(key, TFDS example) with PNG-encoded views, ready for `features.features`."""
  obj = make_object(seed, split, index, variant)
  obj.pop('side')
  obj['images'] = [features.encode_png(im) for im in obj['images']]
  return f'{obj["synset"]}/{obj["model_id"]}', obj
