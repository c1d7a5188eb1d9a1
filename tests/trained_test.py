"""A trained run restored for use: which checkpoint, its config (completed, checked), errors."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from refine3d_jax import checkpoint, configlib, jtso, trained
from refine3d_jax.models import create_model
from refine3d_jax.train_state import create_train_state, variables_of


def test_parse_which():
  assert [trained.parse_which(w) for w in trained.WHICH] == list(trained.WHICH)
  assert trained.parse_which('12') == trained.parse_which(12) == 12
  with pytest.raises(ValueError, match="got 'first'"):
    trained.parse_which('first')


def test_load_config_completes_and_checks_the_saved_config(tmp_path, tiny_config):
  old = tiny_config.copy_and_resolve_references()
  del old.model['decoder_head']  # saved before the key existed
  bad = tiny_config.copy_and_resolve_references()
  bad.train.num_views = 0
  with checkpoint.Checkpointer(str(tmp_path / 'old')) as ckpt:
    ckpt.save(1, {'w': jnp.zeros(2)}, config=old)
  with checkpoint.Checkpointer(str(tmp_path / 'bad')) as ckpt:
    ckpt.save(1, {'w': jnp.zeros(2)}, config=bad)
  assert trained.load_config(str(tmp_path / 'old')).model.decoder_head == 'conv'
  with pytest.raises(configlib.ConfigError, match='train.num_views'):
    trained.load_config(str(tmp_path / 'bad'))


def test_restore_trained_picks_best_latest_or_a_step(tmp_path, tiny_config):
  model = create_model(tiny_config.model)
  state = create_train_state(tiny_config, model, jtso.optimizer(tiny_config))
  workdir, no_metrics = str(tmp_path / 'run'), str(tmp_path / 'no_metrics')
  with checkpoint.Checkpointer(workdir) as ckpt:
    ckpt.save(1, state, metrics={'val_iou': 0.6}, config=tiny_config)
    ckpt.save(2, state, metrics={'val_iou': 0.4}, config=tiny_config)
  with checkpoint.Checkpointer(no_metrics) as ckpt:
    ckpt.save(3, state, config=tiny_config)
  best = trained.restore_trained(workdir)
  assert best.step == 1 and json.loads(best.config.to_json()) == json.loads(tiny_config.to_json())
  jax.tree.map(np.testing.assert_array_equal, best.variables, variables_of(state))
  assert trained.restore_trained(workdir, 'latest').step == 2
  assert trained.restore_trained(workdir, '1', config=tiny_config).step == 1
  assert trained.restore_trained(no_metrics).step == 3  # no best: the latest
  with pytest.raises(FileNotFoundError, match=r'no checkpoint 5; it has steps \[1, 2\]'):
    trained.restore_trained(workdir, 5)
  with pytest.raises(FileNotFoundError, match='train first'):
    trained.restore_trained(str(tmp_path / 'none'))
