"""The projected wall time of a run: stage steps, validations and evaluation, by hand."""

import pytest

from configs import jtso as jtso_config
from refine3d_jax import projection
from refine3d_jax.errors import DataError, NotFoundError


def test_project_counts_each_stage_validation_and_evaluation():
  config = jtso_config.get_config('quick')  # 875 steps: base to 350, att to 438, jtso after
  rates = {'base': 16.0, 'att': 32.0, 'jtso': 8.0}
  latency = {1: 10.0, 20: 48.0}  # ms per object: 10 + 2 (n - 1) at n views
  sizes = {'train': 4000, 'validation': 100, 'test': 200}
  r = projection.project(config, rates, latency, sizes)
  assert r['steps'] == 875 and r['steps_per_epoch'] == 125
  assert r['train_s'] == pytest.approx({'base': 350.0, 'att': 44.0, 'jtso': 874.0})
  # 7 validations (every 125 steps) of 100 objects at 1 and 3 views: 10 + 14 ms
  assert r['validate_s'] == pytest.approx(7 * 100 * 24 / 1e3)
  # test and validation at views 1, 2, 3, 4, 5, 8, 12, 16, 20: 9 x 10 + 2 x 62 ms
  assert r['evaluate_s'] == pytest.approx(300 * 214 / 1e3)
  assert r['total_s'] == pytest.approx(350 + 44 + 874 + 16.8 + 64.2)
  assert projection.describe(r).startswith('22.5 min (875 steps; training base 5.8, att 0.7')


def test_project_epochs_from_the_split_and_a_missing_stage():
  config = jtso_config.get_config('paper')  # 250 epochs of 30,643 / 4 objects
  config.train.schedule = 'end_to_end'
  with pytest.raises(ValueError, match="'joint'"):
    projection.project(config, {'base': 1.0}, {1: 1.0, 20: 1.0}, {'train': 30643})
  r = projection.project(config, {'joint': 4.0}, {1: 1.0, 20: 1.0}, {'train': 30643})
  assert r['steps_per_epoch'] == 7660 and r['steps'] == 250 * 7660
  assert r['train_s'] == {'joint': 250 * 7660.0}
  assert projection.describe(r).startswith('531.94 h (1915000 steps; training joint 31916.7')


def test_split_sizes_of_an_unbuilt_paper_dataset_come_from_the_shipped_split(tmp_path):
  data = jtso_config.get_config('paper').data
  data.data_dir = str(tmp_path)
  assert projection.split_sizes(data) == {'train': 30643, 'validation': 4371, 'test': 8770}
  data.builder_config = 'r2n2'
  with pytest.raises(DataError, match='shapenet_r2n2/r2n2 is not built'):
    projection.split_sizes(data)
  data.dataset = 'synthetic_shapes'
  with pytest.raises(NotFoundError):
    projection.split_sizes(data)
