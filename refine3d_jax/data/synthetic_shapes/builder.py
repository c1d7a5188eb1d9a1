"""TFDS builder `synthetic_shapes`: procedural chairs, tables, lamps, cars and aeroplanes.

No download: every object is generated from (seed, split, index, variant) by
`generate.make_example`, with R2N2's feature spec, cameras and voxel conventions. Written as
array_record, so it builds and reads without TensorFlow. Variants: 'hard' (the default
config: one-sided parts, openings, turned sub-assemblies, per-part colours, random lights;
one view leaves real ambiguity) and 'simple' (the 1.0.0 objects, nearly fixed by one view).

  python -m refine3d_jax.data.build --dataset=synthetic_shapes --data_dir=DIR
"""

import dataclasses

import tensorflow_datasets as tfds

from refine3d_jax.data import features
from refine3d_jax.data import pool
from refine3d_jax.data.synthetic_shapes import generate
from refine3d_jax.data.synthetic_shapes import shapes


@dataclasses.dataclass
class SyntheticShapesConfig(tfds.core.BuilderConfig):
  """Split sizes (objects), the seed every object is derived from, and the generator
  (`generate.VARIANTS`: 'hard' or 'simple')."""

  train: int = 2000
  validation: int = 200
  test: int = 200
  seed: int = 0
  variant: str = 'hard'


class SyntheticShapes(tfds.core.GeneratorBasedBuilder):
  """Synthetic multi-view renderings and 32^3 voxels, R2N2's format."""

  VERSION = tfds.core.Version('1.1.0')
  RELEASE_NOTES = {
    '1.0.0': 'Five categories of box/cylinder/ellipsoid assemblies.',
    '1.1.0': "`default` is now the 'hard' variant (one-sided parts, openings, turned "
    'sub-assemblies, random part counts, per-part colours, random lights); the '
    '1.0.0 objects are the `simple` config (bit-identical). small/tiny: simple.',
  }
  BUILDER_CONFIGS = [
    # simple: ~26 objects/s on 2 cores, ~92 s, 98 MB. hard: ~1.25x simple's time per object
    # (137 vs 111 ms on one loaded core), so ~2-3 min on 2 workers, ~105 MB.
    SyntheticShapesConfig(
      name=name,
      description=f'{train}/{validation}/{test} {what}',
      train=train,
      validation=validation,
      test=test,
      variant=variant,
    )
    for name, (train, validation, test), variant, what in (
      ('default', (2000, 200, 200), 'hard', 'hard objects.'),
      ('simple', (2000, 200, 200), 'simple', 'simple (1.0.0) objects.'),
      ('small', (24, 8, 8), 'simple', 'simple objects, for tests.'),
      ('tiny', (5, 5, 5), 'simple', 'simple objects, one per category.'),
      ('hard_small', (24, 8, 8), 'hard', 'hard objects, for tests.'),
    )
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
    return {
      split: self._generate_examples(split, getattr(self.builder_config, split))
      for split in generate.SPLITS
    }

  def _generate_examples(self, split: str, num: int):
    # Objects are independent of order, so workers can make them in any order.
    seed, variant = self.builder_config.seed, self.builder_config.variant
    yield from pool.ordered_map(
      generate.make_example, [seed] * num, [split] * num, range(num), [variant] * num, num_items=num
    )
