"""The training driver end to end on the tiny synthetic dataset: learning, logs, resume."""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import jtso as jtso_config
from refine3d_jax import checkpoint, metric_writers, train
from refine3d_jax.data import build


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp('tfds'))
  build.build('synthetic_shapes', path, 'tiny')  # 5 train / 5 validation objects
  return path


def small_config(data_dir, **train_overrides):
  """The tiny model at 16^3 (3D conv gradients are slow on XLA:CPU), 2 objects a step,
  so an epoch is 2 steps: stage 2 from step 2, stage 3 from step 3."""
  config = jtso_config.get_config('tiny')
  config.model.update(volume_size=16, refiner_widths=(4, 4))
  config.data.update(data_dir=data_dir, builder_config='tiny', num_threads=1)
  config.train.update(k1_epochs=1.0, k2_epochs=1.5, log_every_steps=1, **train_overrides)
  config.eval.update(every_steps=2, val_views=(1, 2), num_images=2)
  return config


def params_of(state):
  return jax.tree.map(np.asarray, state.params)


def test_resume_gives_bit_identical_parameters_and_logs(data_dir, tmp_path):
  """4 steps straight vs 2 steps + restart + 2 steps, across the stage 1 -> 2 -> 3
  boundaries; the second run also replays the data order from the checkpoint."""
  straight = train.train_and_evaluate(small_config(data_dir, num_steps=4), str(tmp_path / 'a'))
  train.train_and_evaluate(small_config(data_dir, num_steps=2), str(tmp_path / 'b'))
  resumed = train.train_and_evaluate(small_config(data_dir, num_steps=4), str(tmp_path / 'b'))
  assert int(resumed.step) == 4
  jax.tree.map(np.testing.assert_array_equal, params_of(resumed), params_of(straight))
  logs_a = metric_writers.read_metrics(str(tmp_path / 'a'))
  logs_b = metric_writers.read_metrics(str(tmp_path / 'b'))
  drop_speed = lambda logs: [{k: v for k, v in m.items()
                              if k not in ('examples_per_sec', 'wall_time')} for m in logs]
  assert drop_speed(logs_a) == drop_speed(logs_b)
  assert [m['stage'] for m in logs_a if 'stage' in m] == [1, 1, 2, 3]
  assert checkpoint.Checkpointer(str(tmp_path / 'b')).all_steps() == [2, 4]
  assert os.path.exists(tmp_path / 'a' / 'reconstructions' / 'step_0000004.png')
  saved = checkpoint.restore_config(str(tmp_path / 'a'))
  assert saved['model']['volume_size'] == 16


def test_tiny_run_learns(data_dir, tmp_path):
  config = small_config(data_dir, num_steps=12, schedule='end_to_end', learning_rate=3e-3)
  config.eval.every_steps = 12
  train.train_and_evaluate(config, str(tmp_path))
  losses = [m['loss_multi'] for m in metric_writers.read_metrics(str(tmp_path))
            if 'loss_multi' in m]
  assert len(losses) == 12
  assert np.mean(losses[-3:]) < 0.8 * losses[0], losses
  val = [m for m in metric_writers.read_metrics(str(tmp_path)) if 'val_iou' in m]
  assert val and 0 <= val[-1]['val_iou_1v'] <= 1


def test_main_trains_and_rejects_bad_values(data_dir, tmp_path):
  args = [sys.executable, 'main.py', '--config=configs/jtso.py:tiny', f'--workdir={tmp_path}',
          f'--config.data.data_dir={data_dir}', '--config.data.builder_config=tiny',
          '--config.train.num_steps=2', '--config.model.volume_size=16',
          '--config.model.refiner_widths=(4,4)']
  proc = subprocess.run(args, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert [m['step'] for m in metric_writers.read_metrics(str(tmp_path)) if 'val_iou' in m] == [2]
  bad = subprocess.run(args + ['--config.train.k2_epochs=-1'], capture_output=True, text=True,
                       timeout=300)
  assert bad.returncode != 0 and 'config.train.k2_epochs' in bad.stderr
