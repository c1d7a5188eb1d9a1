"""Helpers shared by tests."""

import contextlib

import jax
import numpy as np


def perturb(params, seed=1, scale=0.05):
  """Adds noise to every parameter, so zero-initialised layers (the fusion's output
  projections, the refiner's last conv) stop being trivial in tests. Numpy noise: one
  jax.random call per leaf shape would compile ~30 small programs."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda p: p + scale * rng.standard_normal(p.shape).astype(p.dtype), params)


def small_config(data_dir, **train_overrides):
  """The tiny preset on synthetic_shapes/tiny at 16^3 (3D conv gradients are slow on
  XLA:CPU), 2 objects a step, so an epoch is 2 steps: stage 2 from step 2, stage 3 from
  step 3."""
  from configs import jtso  # pylint: disable=g-import-not-at-top

  config = jtso.get_config('tiny')
  config.model.update(volume_size=16, refiner_widths=(4, 4))
  config.data.update(data_dir=data_dir, builder_config='tiny', num_threads=1)
  config.train.update(k1_epochs=1.0, k2_epochs=1.5, log_every_steps=1, **train_overrides)
  config.eval.update(every_steps=2, val_views=(1, 2), num_images=2)
  return config


def fill_disk(directory, leave_bytes=0):
  """Fills the file system holding `directory` with one file, then frees `leave_bytes`
  of it; returns the file's path."""
  import os  # pylint: disable=g-import-not-at-top

  path = os.path.join(directory, 'filler')
  fd = os.open(path, os.O_WRONLY | os.O_CREAT)
  try:
    while True:
      os.write(fd, b'\0' * (1 << 16))
  except OSError:
    pass
  try:
    while True:
      os.write(fd, b'\0' * 512)
  except OSError:
    pass
  os.ftruncate(fd, max(0, os.fstat(fd).st_size - leave_bytes))
  os.close(fd)
  return path


@contextlib.contextmanager
def trace_packed(monkeypatch):
  """Yields the list of (stage name, packed) of each train step traced inside the block
  (a spy on steps.train_step behind train.make_train_steps); train's program cache is
  cleared on entry and exit, so the steps are traced afresh through the spy."""
  from refine3d_jax import train  # pylint: disable=g-import-not-at-top

  traced, step = [], train.steps_lib.train_step

  def spy(*args, stage, packed=0, **kwargs):
    traced.append((stage.name, packed))
    return step(*args, stage=stage, packed=packed, **kwargs)

  monkeypatch.setattr(train.steps_lib, 'train_step', spy)
  train._programs.cache_clear()
  try:
    yield traced
  finally:
    train._programs.cache_clear()
