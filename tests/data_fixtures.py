"""The dataset the input-pipeline tests read: ONE place to switch it (e.g. to synthetic_shapes).

tests/conftest.py imports the fixture, so every test module can ask for `built_dataset`.
"""

import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(ROOT, '..', 'shared', 'shapenet_r2n2_sample', 'paired')
# What the fixture builds: 11 real ShapeNet objects, split r2n2 -> 5 train / 1 validation
# (carved from train) / 5 test.
DATASET, BUILDER_CONFIG = 'shapenet_r2n2', 'r2n2'
SPLITS = {'train': 5, 'test': 5, 'validation': 1}


@pytest.fixture(scope='session')
def built_dataset(tmp_path_factory) -> tuple[str, str, str]:
  """(dataset, builder_config, data_dir) of a freshly built small dataset (< 2 s)."""
  if not os.path.isdir(SAMPLE):
    pytest.skip(f'real ShapeNet sample not found at {SAMPLE}')
  from refine3d_jax.data import build  # pylint: disable=g-import-not-at-top

  data_dir = str(tmp_path_factory.mktemp('tfds'))
  summary = build.build(DATASET, data_dir, BUILDER_CONFIG, SAMPLE)
  assert summary['splits'] == SPLITS, summary
  return DATASET, BUILDER_CONFIG, data_dir
