"""TFDS builder `shapenet_vox`: real ShapeNet shapes (ShapeNetVox32 grids) rendered by us.

For a user who has only the small voxel archive of the 3D-R2N2 release (ShapeNetVox32.tgz,
no renderings): each grid's smooth surface (`render.py`) is drawn from 24 cameras sampled
from R2N2's distribution, at 137x137 RGBA (alpha 0 background), with a random colour and
light per object; deterministic in (seed, synset, model id). Same feature spec and labels
(13 classes) as `shapenet_r2n2`, so every command works on it.

  python -m refine3d_jax.data.build --dataset=shapenet_vox --manual_dir=DIR \
      --split_file=ShapeNet.json --data_dir=TFDS_DIR
"""

import dataclasses
import os
import zlib
from typing import Any, Sequence

import numpy as np
import tensorflow_datasets as tfds

from refine3d_jax.data import camera as camera_lib
from refine3d_jax.data import features
from refine3d_jax.data import pool
from refine3d_jax.data import shading
from refine3d_jax.data.shapenet_r2n2 import objects
from refine3d_jax.data.shapenet_r2n2 import splits
from refine3d_jax.data.shapenet_vox import render
from refine3d_jax.errors import DataError

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Download ShapeNetVox32.tgz of the 3D-R2N2 release (ShapeNet terms of use: non-commercial
research) and extract it into the manual dir (`--manual_dir`), so that it holds
  <manual_dir>/ShapeNetVox32/<synset>/<model_id>/model.binvox   (32^3)
e.g. `tar -xzf ShapeNetVox32.tgz -C DIR`. No renderings are needed: this builder draws them.
"""


@dataclasses.dataclass
class ShapenetVoxConfig(tfds.core.BuilderConfig):
  """split_kind: 'pix2vox' (a ShapeNet.json; --split_file replaces the shipped one) or
  'r2n2' (per class, first 80% of the sorted ids train). seed: cameras, colours, lights."""

  split_kind: str = 'pix2vox'
  seed: int = 0


def object_rng(seed: int, synset: str, model_id: str) -> np.random.Generator:
  """The object's own generator: independent of build order, split and other objects."""
  return np.random.default_rng([seed, zlib.crc32(f'{synset}/{model_id}'.encode())])


def make_object(manual_dir: str, synset: str, model_id: str, seed: int) -> dict[str, Any]:
  """Arrays of one object: images [24, 137, 137, 4] uint8, camera [24, 5], voxels, ids."""
  path = objects.voxel_path(manual_dir, synset, model_id)
  voxels = objects.read_voxels(path)
  if not voxels.any():
    raise DataError(f'{path}: empty grid')
  rng = object_rng(seed, synset, model_id)
  camera = camera_lib.sample_cameras(rng)
  colour, light = shading.sample_colour(rng), shading.sample_light(rng)
  return {
    'images': render.render(voxels, camera, colour, light),
    'camera': camera,
    'voxels': voxels,
    'label': splits.SYNSETS.index(synset),
    'synset': synset,
    'model_id': model_id,
  }


def make_example(
  manual_dir: str, seed: int, object_id: splits.ObjectId
) -> tuple[str, dict[str, Any]]:
  """(key, TFDS example) with PNG-encoded views."""
  obj = make_object(manual_dir, *object_id, seed)
  obj['images'] = [features.encode_png(im) for im in obj['images']]
  return f'{obj["synset"]}_{obj["model_id"]}', obj


class ShapenetVox(splits.SplitFileBuilder, tfds.core.GeneratorBasedBuilder):
  """ShapeNetVox32 shapes rendered with smooth shading; labels over the 13 R2N2 classes."""

  DESCRIPTION = __doc__
  RELEASE_NOTES = {
    '1.0.0': 'Marching cubes of the blurred grid, random colour and light.',
    **splits.SplitFileBuilder.RELEASE_NOTES,
  }
  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
  BUILDER_CONFIGS = [
    ShapenetVoxConfig(name='pix2vox', description="Pix2Vox's split (or --split_file)."),
    ShapenetVoxConfig(
      name='r2n2',
      split_kind='r2n2',
      description='Per class, the first 80% of the sorted ids train.',
    ),
  ]
  DEFAULT_CONFIG_NAME = 'pix2vox'

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    manual_dir = objects.manual_dir(
      dl_manager, 'ShapeNetVox32', (objects.VOXELS,), MANUAL_DOWNLOAD_INSTRUCTIONS
    )
    kept, skipped = {}, {}
    for split, ids in self._wanted_ids(manual_dir).items():
      kept[split], _ = objects.check_objects(
        'shapenet_vox',
        manual_dir,
        split,
        ids,
        _reason,
        {'not_in_manual_dir': 'no model.binvox in the manual dir'},
      )
      skipped[split] = {'not_in_manual_dir': len(ids) - len(kept[split])}
    kept, validation_source = splits.with_validation(kept)
    self.info.metadata.update(
      {
        'split_source': splits.split_source(self.builder_config.split_kind, self._split_file),
        'validation_source': validation_source,
        'skipped_counts': skipped,
        'render': {
          'sigma': render.SIGMA,
          'level': render.LEVEL,
          'normal_sigma': render.NORMAL_SIGMA,
          'seed': self.builder_config.seed,
        },
      }
    )
    empty = sorted(s for s, v in kept.items() if not v)
    if empty:
      raise DataError(
        f'split(s) {empty} of shapenet_vox would be empty: none of their '
        f'objects has a model.binvox in {manual_dir}.\n' + MANUAL_DOWNLOAD_INSTRUCTIONS
      )
    return {split: self._generate_examples(manual_dir, ids) for split, ids in kept.items()}

  def _wanted_ids(self, manual_dir: str) -> dict[str, list[splits.ObjectId]]:
    return splits.wanted_ids(
      self.builder_config.split_kind,
      self._split_file,
      splits.SYNSETS,
      lambda synset: _model_ids(manual_dir, synset),
      'shapenet_vox',
    )

  def _generate_examples(self, manual_dir: str, object_ids: Sequence[splits.ObjectId]):
    n = len(object_ids)
    yield from pool.ordered_map(
      make_example, [manual_dir] * n, [self.builder_config.seed] * n, object_ids, num_items=n
    )


def _model_ids(manual_dir: str, synset: str) -> list[str]:
  folder = os.path.join(manual_dir, objects.VOXELS, synset)
  return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def _reason(manual_dir: str, synset: str, model_id: str) -> str | None:
  """'not_in_manual_dir' unless the object's model.binvox exists (check_objects' test)."""
  found = os.path.isfile(objects.voxel_path(manual_dir, synset, model_id))
  return None if found else 'not_in_manual_dir'
