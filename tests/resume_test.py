"""Tests for refine3d_jax.resume: which saved configs a run may resume. (A run refused for
real, through train_and_evaluate, is in train_test.)"""

import numpy as np
import pytest

from configs import jtso
from refine3d_jax import checkpoint, resume


def saved_run(workdir, config=None):
  """A workdir with checkpoint 1 (a stand-in state) saved with `config`, or with none."""
  with checkpoint.Checkpointer(str(workdir)) as ckpt:
    ckpt.save(1, {'w': np.zeros(2, np.float32)}, config=config)


def test_another_model_is_refused_and_another_run_only_without_fine_tune(tmp_path):
  config = jtso.get_config('tiny')
  saved_run(tmp_path, config)
  resume.check_compatible(str(tmp_path), 1, config)
  other_model = jtso.get_config('tiny')
  other_model.model.latent_dim += 1
  with pytest.raises(
    resume.IncompatibleCheckpointError, match='of another model; model.latent_dim'
  ):
    resume.check_compatible(str(tmp_path), 1, other_model, fine_tune=True)
  other_run = jtso.get_config('tiny')
  other_run.train.schedule = 'end_to_end'
  with pytest.raises(
    resume.IncompatibleCheckpointError,
    match="of another run; train.schedule: saved 'jtso', now 'end_to_end'",
  ):
    resume.check_compatible(str(tmp_path), 1, other_run)
  resume.check_compatible(str(tmp_path), 1, other_run, fine_tune=True)


def test_a_checkpoint_without_a_config_is_not_checked(tmp_path):
  saved_run(tmp_path)
  config = jtso.get_config('tiny')
  config.model.latent_dim += 1
  resume.check_compatible(str(tmp_path), 1, config)
