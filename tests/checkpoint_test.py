"""Checkpointer: exact round trips of the TrainState and the data stream, retention,
config, and the failure modes (uncommitted tmp dirs, unwritable workdirs)."""

import json
import os
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import jtso
from refine3d_jax import checkpoint
from refine3d_jax import input_pipeline as ip
from refine3d_jax import jtso as jtso_lib
from refine3d_jax.models import create_model
from refine3d_jax.train_state import create_train_state
from refine3d_jax.train_state import TrainState
from tests.testutil import fill_disk


def make_state(seed=0, step=7):
  """A TrainState with a 3-label multi_transform Adam state advanced one update."""
  rng = np.random.default_rng(seed)
  params = {
    'encoder': {'kernel': jnp.asarray(rng.normal(size=(3, 4)), jnp.float32)},
    'fusion': {'query': jnp.asarray(rng.normal(size=(4,)), jnp.float32)},
    'refiner': {
      'kernel': jnp.asarray(rng.normal(size=(2, 2, 2)), jnp.float32),
      'bias': jnp.zeros((2,), jnp.float32),
    },
  }
  labels = {
    'encoder': {'kernel': 'base'},
    'fusion': {'query': 'att'},
    'refiner': {'kernel': 'ref', 'bias': 'ref'},
  }
  tx = optax.multi_transform(
    {'base': optax.adam(1e-3), 'att': optax.adam(2e-3), 'ref': optax.adam(3e-3)}, labels
  )
  opt_state = tx.init(params)
  grads = jax.tree.map(jnp.ones_like, params)
  _, opt_state = tx.update(grads, opt_state, params)
  batch_stats = {
    'norm': {'mean': jnp.arange(4, dtype=jnp.float32), 'var': jnp.full((4,), 2.0, jnp.float32)}
  }
  return TrainState(
    step=jnp.int32(step),
    params=params,
    batch_stats=batch_stats,
    opt_state=opt_state,
    rng=jax.random.key_data(jax.random.key(seed)),
  )


def assert_identical(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    assert x.dtype == y.dtype and x.shape == y.shape
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_state_round_trip_bit_identical(tmp_path):
  state = make_state()
  with checkpoint.Checkpointer(str(tmp_path)) as ckpt:
    assert ckpt.latest_step() is None and ckpt.best_step() is None
    assert ckpt.save(7, state)
    ckpt.wait()
    assert ckpt.latest_step() == 7
    template = make_state(seed=1, step=0)
    restored = ckpt.restore(template)
  assert isinstance(restored, TrainState)
  assert type(restored.opt_state.inner_states['att'].inner_state[0]) is type(
    state.opt_state.inner_states['att'].inner_state[0]
  )  # ScaleByAdamState
  assert_identical(state, restored)
  assert jax.random.key_data(restored.key()).tolist() == state.rng.tolist()


@pytest.mark.parametrize('fusion', ['mean', 'attsets'])
def test_every_fusion_saves_and_restores(tmp_path, fusion):
  """The whole state of a real model (e.g. mean fusion's placeholder parameter and its Adam
  moments) goes through orbax."""
  config = jtso.get_config('tiny')
  config.model.fusion = fusion
  model = create_model(config.model)
  state = create_train_state(config, model, jtso_lib.optimizer(config))
  with checkpoint.Checkpointer(str(tmp_path)) as ckpt:
    assert ckpt.save(1, state)
    ckpt.wait()
    restored = ckpt.restore(jax.eval_shape(lambda: state))
  assert_identical(state, restored)


@flax.struct.dataclass
class TrainStateBeforeEma:
  """TrainState as checkpoints before ema_params existed were saved."""

  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  rng: jax.Array


def test_checkpoints_of_the_old_train_state_restore(tmp_path):
  state = make_state()
  old = TrainStateBeforeEma(**{k: getattr(state, k) for k in TrainStateBeforeEma.__annotations__})
  with checkpoint.Checkpointer(str(tmp_path)) as ckpt:
    ckpt.save(3, old)
    ckpt.wait()
    restored = ckpt.restore(jax.eval_shape(lambda: make_state(seed=1)))
  assert isinstance(restored, TrainState) and restored.ema_params is None
  assert_identical(state, restored)
  with_ema = state.replace(ema_params=state.params)
  with checkpoint.Checkpointer(str(tmp_path / 'ema')) as ckpt:
    ckpt.save(1, with_ema)
    ckpt.wait()
    assert_identical(
      with_ema, ckpt.restore(make_state(seed=1).replace(ema_params=make_state(seed=1).params))
    )


def test_restore_into_abstract_template(tmp_path):
  state = make_state()
  ckpt = checkpoint.Checkpointer(str(tmp_path))
  ckpt.save(3, state)
  ckpt.close()
  # A fresh Checkpointer, as a resumed run would have; abstract leaves without shardings.
  abstract = jax.eval_shape(lambda: make_state(seed=1))
  restored = checkpoint.Checkpointer(str(tmp_path)).restore(abstract)
  assert_identical(state, restored)
  assert all(isinstance(x, jax.Array) for x in jax.tree.leaves(restored))


@pytest.fixture
def tiny_data(tiny_data_dir):
  data_dir = tiny_data_dir
  config = jtso.get_config('tiny')
  config.data.update(data_dir=data_dir, builder_config='tiny', num_threads=1)
  config.train.batch_size = 2
  return config


def take(iterator, n):
  return [next(iterator) for _ in range(n)]


def test_data_iterator_resumes_exactly(tmp_path, tiny_data):
  config = tiny_data
  dataset = lambda: ip.train_dataset(config, shard_index=0, shard_count=1)
  it = iter(dataset())
  take(it, 3)  # past the first epoch (5 examples, batch 2 -> 2 batches per epoch)
  ckpt = checkpoint.Checkpointer(str(tmp_path))
  ckpt.save(3, make_state(), it, config=config)
  expected = take(it, 3)  # advancing right after save must not change what was saved
  ckpt.close()
  fresh = iter(dataset())
  restored = checkpoint.Checkpointer(str(tmp_path)).restore(make_state(), fresh)
  assert_identical(make_state(), restored)
  for a, b in zip(expected, take(fresh, 3)):
    assert a.keys() == b.keys()
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])
  with pytest.raises(ValueError, match='no data iterator state'):
    ckpt = checkpoint.Checkpointer(str(tmp_path))
    ckpt.save(4, make_state())
    ckpt.restore(make_state(), iter(dataset()))


def test_keeps_last_k_and_best(tmp_path):
  ckpt = checkpoint.Checkpointer(str(tmp_path), keep=2, best_metric='val_iou')
  state = make_state()
  for step, iou in enumerate([0.1, 0.9, 0.2, 0.3, 0.4], start=1):
    assert ckpt.save(step, state, metrics={'val_iou': np.float32(iou), 'stage': 'base'})
  ckpt.wait()
  assert ckpt.all_steps() == [2, 4, 5]
  assert ckpt.best_step() == 2 and ckpt.latest_step() == 5
  assert ckpt.metrics(2) == {'val_iou': pytest.approx(0.9), 'stage': 'base'}
  ckpt.close()
  # The same after a restart (metrics reloaded from disk).
  again = checkpoint.Checkpointer(str(tmp_path), keep=2, best_metric='val_iou')
  assert again.all_steps() == [2, 4, 5] and again.best_step() == 2
  again.close()


def test_checkpoints_without_the_metric_never_count_as_best(tmp_path):
  ckpt = checkpoint.Checkpointer(str(tmp_path), keep=1, best_metric='val_iou')
  state = make_state()
  ckpt.save(1, state, metrics={'stage': 'base'})
  ckpt.save(2, state, metrics={'stage': 'base', 'val_iou': float('nan')})
  ckpt.save(3, state)
  ckpt.save(4, state, metrics={'stage': 'att'})
  ckpt.wait()
  assert ckpt.all_steps() == [4] and ckpt.best_step() is None
  ckpt.save(5, state, metrics={'val_iou': 0.5})
  ckpt.save(6, state, metrics={'stage': 'ref'})
  ckpt.save(7, state, metrics={'val_iou': 0.5})  # a tie: the earlier one stays best
  ckpt.wait()
  assert ckpt.all_steps() == [5, 7] and ckpt.best_step() == 5
  ckpt.close()


def test_config_restorable_from_the_workdir_alone(tmp_path, tiny_config):
  ckpt = checkpoint.Checkpointer(str(tmp_path))
  ckpt.save(1, make_state(), config=tiny_config)
  ckpt.save(2, make_state())  # no config: the latest config is step 1's
  ckpt.close()
  saved = checkpoint.restore_config(str(tmp_path))
  assert saved == checkpoint.restore_config(str(tmp_path), step=1)
  assert saved['model']['latent_dim'] == tiny_config.model.latent_dim
  assert saved['model']['encoder_widths'] == list(tiny_config.model.encoder_widths)
  assert saved == json.loads(tiny_config.to_json())  # tuples become lists
  with pytest.raises(FileNotFoundError, match='checkpoint 2'):
    checkpoint.restore_config(str(tmp_path), step=2)
  with pytest.raises(FileNotFoundError, match='no checkpoints'):
    checkpoint.restore_config(str(tmp_path / 'empty'))


def test_uncommitted_tmp_dirs_are_ignored(tmp_path):
  ckpt = checkpoint.Checkpointer(str(tmp_path))
  assert ckpt.latest_step() is None
  with pytest.raises(FileNotFoundError, match='no checkpoint'):
    ckpt.restore(make_state())
  ckpt.save(3, make_state())
  ckpt.close()
  # What a save killed midway leaves: orbax's temporary name, partly written items.
  partial = tmp_path / 'checkpoints' / '9.orbax-checkpoint-tmp-1700000000000000'
  (partial / 'state').mkdir(parents=True)
  (partial / 'state' / '_METADATA').write_text('{')
  reader = checkpoint.Checkpointer(str(tmp_path), read_only=True)
  assert reader.latest_step() == 3 and reader.all_steps() == [3]
  assert partial.exists()  # a reader (evaluate, predict) changes nothing
  ckpt = checkpoint.Checkpointer(str(tmp_path))
  assert ckpt.latest_step() == 3 and ckpt.all_steps() == [3]
  assert_identical(make_state(), ckpt.restore(make_state()))
  ckpt.save(4, make_state())
  ckpt.close()
  assert not partial.exists()  # a writer (a resumed run) removes the leftovers


def test_unwritable_workdir_is_named(tmp_path):
  blocker = tmp_path / 'a_file'
  blocker.write_text('')
  workdir = str(blocker / 'run')
  with pytest.raises(PermissionError, match=f'{workdir}/checkpoints is not writable'):
    checkpoint.Checkpointer(workdir)
  if os.geteuid() != 0:  # root writes through permission bits
    locked = tmp_path / 'locked'
    locked.mkdir(mode=0o500)
    with pytest.raises(PermissionError, match=str(locked)):
      checkpoint.Checkpointer(str(locked))


def test_relative_workdir(tmp_path, monkeypatch):
  """`python main.py` defaults to the relative workdir runs/<preset>: saving there works."""
  monkeypatch.chdir(tmp_path)
  tx = optax.adam(1e-3)
  params = {'w': jnp.arange(4.0)}
  state = TrainState(
    step=jnp.zeros((), jnp.int32),
    params=params,
    batch_stats={},
    opt_state=tx.init(params),
    rng=jax.random.key_data(jax.random.key(0)),
  )
  with checkpoint.Checkpointer('runs/rel') as ckpt:
    assert ckpt.save(1, state)
    ckpt.wait()
    assert ckpt.latest_step() == 1
    restored = ckpt.restore(state)
  np.testing.assert_array_equal(restored.params['w'], params['w'])
  assert (tmp_path / 'runs' / 'rel' / 'checkpoints' / '1').is_dir()


def test_disk_full_during_a_save_keeps_the_previous_checkpoint(small_disk):
  """A real full disk (a tmpfs) while the asynchronous save of step 2 writes: the error
  names the step, the directory and the intact step 1, which still restores; the next
  writer removes the half-written step."""
  ckpt = checkpoint.Checkpointer(str(small_disk / 'run'))
  ckpt.save(1, make_state(step=1))
  ckpt.wait()
  filler = fill_disk(small_disk)
  with pytest.raises(checkpoint.CheckpointSaveError) as error:
    ckpt.save(2, make_state(step=2))
    ckpt.close()
  assert str(error.value) == (
    f'saving checkpoint 2 in {small_disk}/run/checkpoints failed: the disk is full (No '
    'space left on device). The last complete checkpoint, step 1, is intact; fix the cause '
    'and rerun the same command to resume from it.'
  )
  assert ckpt.all_steps() == [1]
  ckpt.close(raise_errors=False)
  os.remove(filler)
  with checkpoint.Checkpointer(str(small_disk / 'run')) as again:
    assert again.all_steps() == [1]
    assert_identical(make_state(step=1), again.restore(make_state()))
  assert sorted(os.listdir(small_disk / 'run' / 'checkpoints')) == ['1']


def test_a_failing_save_is_reported_once_per_call_and_never_listed(tmp_path, monkeypatch):
  """The same path without a tmpfs: orbax's save itself raising ENOSPC."""
  ckpt = checkpoint.Checkpointer(str(tmp_path))
  ckpt.save(1, make_state(step=1))

  def full(*args, **kwargs):
    raise OSError(28, 'No space left on device')

  monkeypatch.setattr(ckpt._manager, 'save', full)
  with pytest.raises(
    checkpoint.CheckpointSaveError,
    match='saving checkpoint 2 in .* failed: '
    r'the disk is full .*step 1, is intact',
  ):
    ckpt.save(2, make_state(step=2))
  with pytest.raises(checkpoint.CheckpointSaveError):  # no later call pretends it worked
    ckpt.wait()
  ckpt.close(raise_errors=False)
  assert checkpoint.Checkpointer(str(tmp_path)).all_steps() == [1]
