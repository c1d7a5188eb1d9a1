"""The training driver end to end on the tiny synthetic dataset: learning, logs, resume."""

import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from refine3d_jax import checkpoint, eval_loop, input_pipeline, jtso, metric_writers, resume
from refine3d_jax import train, train_state, trained
from refine3d_jax.models import create_model
from tests import parallel_test
from tests.testutil import fill_disk, small_config, trace_packed

ROOT = parallel_test.ROOT


@pytest.fixture
def data_dir(tiny_data_dir):
  return tiny_data_dir


def params_of(state):
  return jax.tree.map(np.asarray, state.params)


def _logged(workdir):
  """metrics.jsonl without the timing fields, which differ between runs."""
  return [
    {k: v for k, v in m.items() if k not in ('examples_per_sec', 'wall_time')}
    for m in metric_writers.read_metrics(str(workdir))
  ]


def test_resume_gives_bit_identical_parameters_and_logs(data_dir, tmp_path):
  """4 steps straight vs 2 steps + restart + 2 steps, across the stage 1 -> 2 -> 3
  boundaries; the second run also replays the data order from the checkpoint."""
  straight = train.train_and_evaluate(small_config(data_dir, num_steps=4), str(tmp_path / 'a'))
  train.train_and_evaluate(small_config(data_dir, num_steps=2), str(tmp_path / 'b'))
  resumed = train.train_and_evaluate(small_config(data_dir, num_steps=4), str(tmp_path / 'b'))
  assert int(resumed.step) == 4
  jax.tree.map(np.testing.assert_array_equal, params_of(resumed), params_of(straight))
  assert _logged(tmp_path / 'a') == _logged(tmp_path / 'b')
  assert [m['stage'] for m in _logged(tmp_path / 'a') if 'stage' in m] == [1, 1, 2, 3]
  assert checkpoint.Checkpointer(str(tmp_path / 'b')).all_steps() == [2, 4]
  assert os.path.exists(tmp_path / 'a' / 'reconstructions' / 'step_0000004.png')
  saved = checkpoint.restore_config(str(tmp_path / 'a'))
  assert saved['model']['volume_size'] == 16


def test_steps_per_epoch_sets_the_schedule_on_any_dataset(data_dir, tmp_path):
  """An epoch of train.steps_per_epoch steps, not a pass over the 5 objects (2 steps)."""
  config = small_config(data_dir, num_steps=5, steps_per_epoch=4)
  train.train_and_evaluate(config, str(tmp_path))
  assert [m['stage'] for m in _logged(tmp_path) if 'stage' in m] == [1, 1, 1, 1, 2]


def test_single_view_stages_load_k_real_views(data_dir):
  """train.single_views = 3: stage 1 loads 3 distinct views of every object, never padded
  (even with data.min_views > 0, which pads the multi-view stages)."""
  config = small_config(data_dir, single_views=3, num_views=4)
  config.data.min_views = 1
  source = train.input_pipeline.open_source(config.data, 'train')
  for name, views in (('base', 3), ('jtso', 4)):
    batch = next(train._stage_iterator(config, jtso.STAGES[name], source))
    assert batch['images'].shape[1] == views, name
    if name == 'base':
      assert batch['mask'].all()
      assert all(len({x.tobytes() for x in obj}) == 3 for obj in batch['images'])
    else:  # padded with min_views: the single-view pass cycles the real ones
      assert batch['mask'][:, 0].all()


def test_paired_views_run_packs_the_multi_view_passes(data_dir, tmp_path, monkeypatch):
  """data.paired_views through stages 1-3: the multi-view steps are traced with packed =
  min_views + num_views and get batches whose pairs hold that many real views; stage 1
  gets 0."""
  config = small_config(data_dir, num_steps=4, num_views=3)
  config.data.update(min_views=1, paired_views=True)
  checked, check = [], input_pipeline.check_pairs
  monkeypatch.setattr(
    input_pipeline, 'check_pairs', lambda mask, total: (checked.append(total), check(mask, total))
  )
  with trace_packed(monkeypatch) as traced:
    train.train_and_evaluate(config, str(tmp_path))
  logged = [m for m in _logged(tmp_path) if 'stage' in m]
  assert [m['stage'] for m in logged] == [1, 1, 2, 3] and checked == [4, 4]
  assert traced == [('base', 0), ('att', 4), ('jtso', 4)]
  assert all(np.isfinite(m['loss_multi']) for m in logged[2:])


def test_packed_views_only_where_each_device_holds_whole_pairs(data_dir, monkeypatch):
  config = small_config(data_dir, num_views=3, batch_size=4)
  config.data.update(min_views=1, paired_views=True)
  multi, single = jtso.STAGES['att'], jtso.STAGES['base']
  assert (train.packed_views(config, multi), train.packed_views(config, single)) == (4, 0)
  monkeypatch.setattr(jax, 'device_count', lambda: 4)  # one object per device
  assert train.packed_views(config, multi) == 0
  config.data.paired_views = False
  monkeypatch.setattr(jax, 'device_count', lambda: 1)
  assert train.packed_views(config, multi) == 0


def test_tiny_run_learns(data_dir, tmp_path):
  config = small_config(data_dir, num_steps=12, schedule='end_to_end', learning_rate=3e-3)
  config.eval.every_steps = 12
  train.train_and_evaluate(config, str(tmp_path))
  losses = [
    m['loss_multi'] for m in metric_writers.read_metrics(str(tmp_path)) if 'loss_multi' in m
  ]
  assert len(losses) == 12
  assert np.mean(losses[-3:]) < 0.8 * losses[0], losses
  val = [m for m in metric_writers.read_metrics(str(tmp_path)) if 'val_iou' in m]
  assert val and 0 <= val[-1]['val_iou_1v'] <= val[-1]['val_iou_best_1v'] <= 1


def test_jtso_joint_ends_end_to_end(data_dir, tmp_path):
  """'jtso_joint': stages 1 and 2, then every group on the multi-view loss."""
  train.train_and_evaluate(
    small_config(data_dir, num_steps=4, schedule='jtso_joint'), str(tmp_path)
  )
  logged = [m for m in _logged(tmp_path) if 'stage' in m]
  assert [m['stage'] for m in logged] == [1, 1, 2, 0]
  assert 'loss_single' not in logged[-1] and logged[-1]['lr_base'] > 0


def main_args(data_dir, workdir, num_steps):
  """`python main.py` on the tiny preset at 16^3, like small_config."""
  return [
    sys.executable,
    'main.py',
    '--config=configs/jtso.py:tiny',
    f'--workdir={workdir}',
    f'--config.data.data_dir={data_dir}',
    '--config.data.builder_config=tiny',
    f'--config.train.num_steps={num_steps}',
    '--config.model.volume_size=16',
    '--config.model.refiner_widths=(4,4)',
  ]


def test_main_trains_and_rejects_bad_values(data_dir, tmp_path):
  args = main_args(data_dir, tmp_path, 2)
  proc = subprocess.run(args, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert [m['step'] for m in metric_writers.read_metrics(str(tmp_path)) if 'val_iou' in m] == [2]
  bad = subprocess.run(
    args + ['--config.train.k2_epochs=-1'], capture_output=True, text=True, timeout=300
  )
  assert bad.returncode != 0 and 'config.train.k2_epochs' in bad.stderr
  typo = subprocess.run(
    args + ['--config.train.num_step=3'], capture_output=True, text=True, timeout=300
  )
  assert typo.returncode == 1
  assert typo.stderr.strip().splitlines()[-1] == (
    "error: --config.train.num_step: no such config key 'num_step'. Did you mean "
    '"num_steps" instead of "num_step"?'
  )
  assert 'Traceback' not in typo.stderr
  split = subprocess.run(args + ['--cpu_devices=3'], capture_output=True, text=True, timeout=300)
  assert split.returncode == 1
  assert split.stderr.strip().splitlines()[-1] == (
    'error: --cpu_devices=3 does not divide config.train.batch_size = 2'
  )
  hosts = subprocess.run(
    args + ['--cpu_devices=2', '--num_processes=2'], capture_output=True, text=True, timeout=300
  )
  assert hosts.returncode == 1
  assert hosts.stderr.strip().splitlines()[-1] == (
    'error: --cpu_devices=2 is for one process; --num_processes=2'
  )


@pytest.mark.slow
def test_main_on_two_processes_trains_and_resumes(data_dir, tmp_path):
  """Two hosts on 127.0.0.1 (one CPU device each), each reading its half of the data:
  one metrics log and one checkpoint written, a rerun resumes, and one process restores
  the checkpoint."""
  port = parallel_test.free_port()

  def run_two(num_steps):
    procs = []
    for i in range(2):
      env = dict(
        parallel_test.worker_env(1),
        JAX_COORDINATOR_ADDRESS=f'127.0.0.1:{port}',
        JAX_COORDINATOR_BIND_ADDRESS=f'127.0.0.1:{port}',
        JAX_NUM_PROCESSES='2',
        JAX_PROCESS_ID=str(i),
      )
      procs.append(
        subprocess.Popen(
          main_args(data_dir, tmp_path, num_steps),
          cwd=ROOT,
          env=env,
          text=True,
          stdout=subprocess.PIPE,
          stderr=subprocess.STDOUT,
        )
      )
    try:
      outputs = [p.communicate(timeout=600)[0] for p in procs]
    finally:
      for p in procs:
        if p.poll() is None:
          p.kill()
          p.wait()
    for p, out in zip(procs, outputs):
      assert p.returncode == 0, out[-3000:]
    return outputs

  outputs = run_two(2)
  assert 'process 0 of 2' in outputs[0] and 'process 1 of 2' in outputs[1]
  run_two(3)
  logs = metric_writers.read_metrics(str(tmp_path))
  # logged at the last step of each run (log_every_steps is 50): once each, no duplicate
  assert [m['step'] for m in logs if 'loss_single' in m or 'loss_multi' in m] == [2, 3]
  assert checkpoint.Checkpointer(str(tmp_path)).all_steps() == [2, 3]
  config = small_config(data_dir)
  model = create_model(config.model)
  template = train_state.create_train_state(config, model, jtso.optimizer(config))
  restored = checkpoint.Checkpointer(str(tmp_path)).restore(template)
  assert int(restored.step) == 3
  assert any(
    np.any(np.asarray(a) != np.asarray(b))
    for a, b in zip(jax.tree.leaves(restored.params), jax.tree.leaves(template.params))
  )


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_the_rerun_resumes(data_dir, tmp_path):
  """SIGTERM mid-run: the step in progress finishes, a checkpoint of it is saved, the exit
  status is 128 + 15, and the same command resumes from that step."""
  args = main_args(data_dir, tmp_path, 100000) + ['--config.train.log_every_steps=5']
  proc = subprocess.Popen(args, cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  try:
    log = tmp_path / 'metrics.jsonl'
    deadline = time.time() + 300
    while not (log.exists() and log.read_text().strip()) and time.time() < deadline:
      time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait()
  assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
  assert 'stopped by SIGTERM after step' in err
  (saved,) = checkpoint.Checkpointer(str(tmp_path)).all_steps()
  assert saved >= 5
  assert max(m['step'] for m in metric_writers.read_metrics(str(tmp_path))) <= saved
  rerun = subprocess.run(
    main_args(data_dir, tmp_path, saved + 1), cwd=ROOT, capture_output=True, text=True, timeout=600
  )
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert f'Resumed from step {saved}' in rerun.stderr
  assert checkpoint.Checkpointer(str(tmp_path)).latest_step() == saved + 1


def test_a_checkpoint_of_another_model_is_refused_naming_the_keys(data_dir, tmp_path):
  train.train_and_evaluate(small_config(data_dir, num_steps=1), str(tmp_path))
  other = small_config(data_dir, num_steps=2)
  other.model.latent_dim = 32
  with pytest.raises(
    resume.IncompatibleCheckpointError, match=r'model.latent_dim: saved 16, now 32'
  ):
    train.train_and_evaluate(other, str(tmp_path))
  # how the parameters are computed may change: the parameters are the same (modules_test)
  same = small_config(data_dir, num_steps=2)
  same.model.update(conv3d='native', dtype='bfloat16')
  resume.check_compatible(str(tmp_path), 1, same)


def test_ema_weights_are_kept_resumed_and_evaluated(data_dir, tmp_path):
  """train.ema_decay > 0: the state holds the moving average, a resume continues it
  bit-identically, evaluation restores it; a checkpoint with or without one refuses a
  run of the other kind, naming the key."""
  straight = train.train_and_evaluate(
    small_config(data_dir, num_steps=3, ema_decay=0.5), str(tmp_path / 'a')
  )
  train.train_and_evaluate(small_config(data_dir, num_steps=2, ema_decay=0.5), str(tmp_path / 'b'))
  resumed = train.train_and_evaluate(
    small_config(data_dir, num_steps=3, ema_decay=0.5), str(tmp_path / 'b')
  )
  jax.tree.map(
    np.testing.assert_array_equal,
    jax.device_get(resumed.ema_params),
    jax.device_get(straight.ema_params),
  )
  assert any(
    np.any(np.asarray(e) != np.asarray(p))
    for e, p in zip(jax.tree.leaves(straight.ema_params), jax.tree.leaves(straight.params))
  )
  assert train_state.variables_of(straight)['params'] is straight.ema_params
  _, _, variables, step = trained.restore_trained(str(tmp_path / 'a'), 'latest')
  assert step == 3
  jax.tree.map(
    np.testing.assert_array_equal,
    jax.device_get(variables['params']),
    jax.device_get(straight.ema_params),
  )
  with pytest.raises(
    resume.IncompatibleCheckpointError, match=r'train.ema_decay: saved 0.5, now 0'
  ):
    train.train_and_evaluate(small_config(data_dir, num_steps=4), str(tmp_path / 'a'))


def test_a_checkpoint_of_another_run_resumes_only_when_fine_tuning(data_dir, tmp_path):
  """JTSO's checkpoint in an end-to-end run is refused naming the schedule; --fine_tune
  (fine_tune=True) resumes it on purpose."""
  train.train_and_evaluate(small_config(data_dir, num_steps=1), str(tmp_path))
  other = small_config(data_dir, num_steps=2)
  other.train.schedule = 'end_to_end'
  with pytest.raises(
    resume.IncompatibleCheckpointError,
    match=r"train.schedule: saved 'jtso', now 'end_to_end'.*--fine_tune",
  ):
    train.train_and_evaluate(other, str(tmp_path))
  resume.check_compatible(str(tmp_path), 1, other, fine_tune=True)


def poison_from(monkeypatch, first_bad_batch, poison):
  """Makes the training batches from the `first_bad_batch`-th on (1-based) go through
  `poison(batch)`; validation batches stay clean."""
  calls, evaluating = [], []
  clean_inputs, clean_validate = input_pipeline.model_inputs, eval_loop.validate

  def inputs(batch, volume_size):
    batch = clean_inputs(batch, volume_size)
    if evaluating:
      return batch
    calls.append(1)
    return poison(batch) if len(calls) >= first_bad_batch else batch

  def validate(*args, **kwargs):
    evaluating.append(1)
    try:
      return clean_validate(*args, **kwargs)
    finally:
      evaluating.pop()

  monkeypatch.setattr(input_pipeline, 'model_inputs', inputs)
  monkeypatch.setattr(eval_loop, 'validate', validate)


def test_a_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(
  data_dir, tmp_path, monkeypatch
):
  poison_from(monkeypatch, 2, lambda b: {**b, 'images': b['images'] * np.nan})
  config = small_config(data_dir, num_steps=4, checkpoint_every_steps=1)
  with pytest.raises(FloatingPointError) as error:
    train.train_and_evaluate(config, str(tmp_path))
  assert str(error.value).startswith(
    "non-finite loss at step 2 (stage 1, base): {'coarse_single': nan, "
  )
  assert str(error.value).endswith(f'the last good checkpoint is step 1 in {tmp_path}')
  assert checkpoint.Checkpointer(str(tmp_path)).all_steps() == [1]
  assert max(m['step'] for m in metric_writers.read_metrics(str(tmp_path))) == 1


def test_disk_full_during_a_save_stops_cleanly(data_dir, small_disk, monkeypatch):
  """The disk fills after step 1's checkpoint: step 2's save fails with one error, and
  step 1 stays the latest checkpoint, whole; the rerun resumes from it, and the log has
  each step once."""
  save = checkpoint.Checkpointer.save

  def save_and_wait(self, *args, **kwargs):  # so that the disk fills between two saves
    started = save(self, *args, **kwargs)
    self.wait()
    return started

  monkeypatch.setattr(checkpoint.Checkpointer, 'save', save_and_wait)
  poison_from(monkeypatch, 2, lambda b: fill_disk(small_disk, leave_bytes=8192) and b)
  workdir = str(small_disk / 'run')
  config = small_config(data_dir, num_steps=4, checkpoint_every_steps=1)
  config.eval.every_steps = 4  # no picture to write at step 2, only the checkpoint
  with pytest.raises(checkpoint.CheckpointSaveError) as error:
    train.train_and_evaluate(config, workdir)
  assert str(error.value) == (
    f'saving checkpoint 2 in {workdir}/checkpoints failed: the disk is full (No space left '
    'on device). The last complete checkpoint, step 1, is intact; fix the cause and rerun '
    'the same command to resume from it.'
  )
  monkeypatch.undo()
  os.remove(small_disk / 'filler')
  assert checkpoint.Checkpointer(workdir).all_steps() == [1]
  resumed = train.train_and_evaluate(small_config(data_dir, num_steps=2), workdir)
  assert int(resumed.step) == 2
  steps = [
    m['step']
    for m in metric_writers.read_metrics(workdir)
    if 'loss_multi' in m or 'loss_single' in m
  ]
  assert steps == [1, 2]


def _restored_params(workdir, data_dir):
  config = small_config(data_dir)
  template = train_state.create_train_state(
    config, create_model(config.model), jtso.optimizer(config)
  )
  with checkpoint.Checkpointer(str(workdir), read_only=True) as ckpt:
    if ckpt.latest_step() is None:
      return None, None
    return ckpt.latest_step(), params_of(ckpt.restore(template))


@pytest.mark.slow
def test_sigkill_at_any_moment_then_rerun_equals_an_uninterrupted_run(data_dir, tmp_path):
  """SIGKILL three times (once while a checkpoint is being written, twice at random
  moments), rerunning the same command after each: no half-written checkpoint is ever
  listed, and the final parameters and metrics log are bit-identical to one run that was
  never interrupted (data order included)."""
  num_steps = 6
  extra = ['--config.train.checkpoint_every_steps=1', '--config.train.log_every_steps=1']
  # every process compiles afresh (conftest's compilation cache off), as a user's rerun
  # does, and so runs long enough to be killed at the moments drawn below
  env = dict(os.environ, JAX_ENABLE_COMPILATION_CACHE='false')
  reference = subprocess.run(
    main_args(data_dir, tmp_path / 'ref', num_steps) + extra,
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert reference.returncode == 0, reference.stderr[-3000:]

  workdir = tmp_path / 'killed'
  ckpt_dir = workdir / 'checkpoints'
  rng = np.random.default_rng(0)
  killed_mid_save = False
  for attempt in range(3):
    proc = subprocess.Popen(
      main_args(data_dir, workdir, num_steps) + extra,
      cwd=ROOT,
      env=env,
      stdout=subprocess.DEVNULL,
      stderr=subprocess.DEVNULL,
    )
    try:
      deadline = time.time() + 600
      if attempt == 0:  # the moment a save starts: orbax's temporary directory exists
        while (
          proc.poll() is None
          and time.time() < deadline
          and not (
            ckpt_dir.exists() and any('orbax-checkpoint-tmp' in p for p in os.listdir(ckpt_dir))
          )
        ):
          time.sleep(0.002)
        killed_mid_save = proc.poll() is None
      else:  # after a random number of logged steps and a random delay
        wanted = int(rng.integers(0, 2))
        log = workdir / 'metrics.jsonl'
        while (
          proc.poll() is None
          and time.time() < deadline
          and not (log.exists() and len(log.read_text().splitlines()) > wanted)
        ):
          time.sleep(0.01)
        time.sleep(float(rng.uniform(0, 1.5)))
      assert proc.poll() is None, f'run {attempt} ended before it could be killed'
    finally:
      proc.kill()
      proc.wait()
    if ckpt_dir.exists() and os.listdir(ckpt_dir):  # the latest listed one restores whole
      step, _ = _restored_params(workdir, data_dir)
      assert step is None or (ckpt_dir / str(step) / '_CHECKPOINT_METADATA').exists()
  assert killed_mid_save, 'the run ended before a save could be caught in progress'

  rerun = subprocess.run(
    main_args(data_dir, workdir, num_steps) + extra,
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert not [p for p in os.listdir(ckpt_dir) if 'tmp' in p]
  (step_a, params_a), (step_b, params_b) = (
    _restored_params(tmp_path / 'ref', data_dir),
    _restored_params(workdir, data_dir),
  )
  assert step_a == step_b == num_steps
  jax.tree.map(np.testing.assert_array_equal, params_b, params_a)
  assert _logged(workdir) == _logged(tmp_path / 'ref')
  train_steps = [m['step'] for m in _logged(workdir) if 'stage' in m]
  assert train_steps == list(range(1, num_steps + 1))
