"""TFDS builder `synthetic_shapes`: procedural chairs, tables, lamps, cars and aeroplanes.

No download: every object is generated from (seed, split, index) by `generate.make_example`,
with R2N2's feature spec, cameras and voxel conventions. Written as array_record, so it
builds and reads without TensorFlow.

  python -m refine3d_jax.data.build --dataset=synthetic_shapes --data_dir=DIR
"""

import concurrent.futures
import dataclasses
import multiprocessing
import os

import tensorflow_datasets as tfds

from refine3d_jax.data import features
from refine3d_jax.data.synthetic_shapes import generate
from refine3d_jax.data.synthetic_shapes import shapes

# Below this many objects a process pool costs more (start-up, imports) than it saves.
_MIN_PARALLEL = 200


@dataclasses.dataclass
class SyntheticShapesConfig(tfds.core.BuilderConfig):
  """Split sizes (objects) and the seed every object is derived from."""
  train: int = 2000
  validation: int = 200
  test: int = 200
  seed: int = 0


class SyntheticShapes(tfds.core.GeneratorBasedBuilder):
  """Synthetic multi-view renderings and 32^3 voxels, R2N2's format."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Five categories of box/cylinder/ellipsoid assemblies.'}
  BUILDER_CONFIGS = [
      # ~26 objects/s on 2 cores: builds in ~92 s, 98 MB.
      SyntheticShapesConfig(name='default', description='2000/200/200 objects.'),
      SyntheticShapesConfig(name='small', description='24/8/8 objects, for tests.',
                            train=24, validation=8, test=8),
      SyntheticShapesConfig(name='tiny', description='5/5/5 objects, one per category.',
                            train=5, validation=5, test=5),
  ]
  DEFAULT_CONFIG_NAME = 'default'

  def __init__(self, *, file_format=None, **kwargs):
    # array_record: random access for grain, and no TensorFlow needed to write it.
    super().__init__(file_format=file_format or 'array_record', **kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=features.features(shapes.CATEGORY_NAMES),
        supervised_keys=None,
        homepage='https://github.com/chrischoy/3D-R2N2',
        description=__doc__,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    return {split: self._generate_examples(split, getattr(self.builder_config, split))
            for split in generate.SPLITS}

  def _generate_examples(self, split: str, num: int):
    seed = self.builder_config.seed
    if num < _MIN_PARALLEL or (os.cpu_count() or 1) == 1:
      for index in range(num):
        yield generate.make_example(seed, split, index)
      return
    # Objects are independent of order, so workers can make them in any order. Workers use
    # numpy only, so fork is safe, and it needs no `__main__` guard in the caller's script.
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context('fork' if 'fork' in methods else 'spawn')
    with concurrent.futures.ProcessPoolExecutor(os.cpu_count(), mp_context=ctx) as pool:
      yield from pool.map(generate.make_example, [seed] * num, [split] * num, range(num),
                          chunksize=16)
