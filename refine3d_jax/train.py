"""Training: `train_and_evaluate(config, workdir)`, the driver, and the cache of the
programs it compiles (`programs`: the model, the optimizer and the jitted steps of
steps.py, one train step per JTSO stage).
"""

import contextlib
import functools
import json
import os
import time
from typing import Any, NamedTuple

from absl import logging
import jax
from jax.experimental import multihost_utils
import ml_collections
import numpy as np
import optax
import tqdm

from refine3d_jax import checkpoint, configlib, errors, eval_loop, input_pipeline, jtso
from refine3d_jax import metric_writers, parallel, resume, stopping, visualize
from refine3d_jax import steps as steps_lib
from refine3d_jax import workdir as workdir_lib
from refine3d_jax.models import Refine3DNet, create_model
from refine3d_jax.train_state import TrainState, create_train_state


def views_for(stage: jtso.Stage, config: ml_collections.ConfigDict) -> int:
  """Views per example the data pipeline must deliver in `stage`."""
  return config.train.num_views if stage.multi else config.train.single_views


# Keys that never change a compiled step: the stage plan, bookkeeping and data (a batch
# of another shape retraces by itself). Runs differing only in these share programs.
_NOT_IN_PROGRAMS = {
  None: ('data', 'seed', 'preset'),
  'train': (
    'batch_size',
    'num_views',
    'num_epochs',
    'num_steps',
    'schedule',
    'k1_epochs',
    'k2_epochs',
    'log_every_steps',
    'checkpoint_every_steps',
    'keep_checkpoints',
  ),
  'eval': (
    'view_counts',
    'fscore_distance',
    'measure_cost',
    'every_steps',
    'val_views',
    'max_examples',
    'num_images',
  ),
}


def program_key(config: ml_collections.ConfigDict) -> str:
  """The config as JSON without the keys in _NOT_IN_PROGRAMS: `_programs`'s cache key."""
  d = json.loads(config.to_json_best_effort())
  for section, keys in _NOT_IN_PROGRAMS.items():
    for key in keys:
      (d if section is None else d.get(section, {})).pop(key, None)
  return json.dumps(d, sort_keys=True)


class Programs(NamedTuple):
  """What a run compiles: the model, the optimizer, {stage name: jitted train step} and
  the jitted eval step."""

  model: Refine3DNet
  tx: optax.GradientTransformation
  steps: dict[str, Any]
  eval_fn: Any


def programs(config: ml_collections.ConfigDict, steps_per_epoch: int | None = None) -> Programs:
  """The Programs of `config`, shared by the runs of one process that differ only in keys
  no program uses. `steps_per_epoch` places the learning-rate decay; None: a constant rate
  (benchmarks and checks, which run steps rather than the schedule)."""
  return _programs(program_key(config), steps_per_epoch)


@functools.lru_cache(maxsize=4)
def _programs(config_json: str, steps_per_epoch: int | None) -> Programs:
  """`programs` of a `program_key`, cached so a second run of the same model in one
  process (a resume, a notebook) compiles nothing."""
  config = ml_collections.ConfigDict(json.loads(config_json))
  model = create_model(config.model)
  tx = jtso.optimizer(config)
  steps = make_train_steps(config, model, tx, jtso.learning_rate_fn(config, steps_per_epoch))
  eval_fn = jax.jit(
    functools.partial(
      steps_lib.eval_step, model=model, thresholds=eval_loop.validation_thresholds(config)
    ),
    static_argnames='view_counts',
  )
  return Programs(model, tx, steps, eval_fn)


def make_train_steps(
  config: ml_collections.ConfigDict, model: Refine3DNet, tx: optax.GradientTransformation, lr_fn
) -> dict[str, Any]:
  """{stage name: jitted step}, state buffers donated; `packed` (static) as
  input_pipeline.pair_total says for the stage's batches."""
  lr_scale = dict(config.train.lr_scale)
  return {
    name: jax.jit(
      functools.partial(
        steps_lib.train_step,
        model=model,
        tx=tx,
        stage=stage,
        lr_fn=lr_fn,
        lr_scale=lr_scale,
        single_views=config.train.single_views,
        ema_decay=config.train.ema_decay,
        data_parallel=True,
      ),
      donate_argnums=0,
      static_argnames='packed',
    )
    for name, stage in jtso.STAGES.items()
  }


def packed_views(config: ml_collections.ConfigDict, stage: jtso.Stage) -> int:
  """The train step's `packed` in `stage`: input_pipeline.pair_total, or 0 (encode every
  slot) where a device's share of the batch is odd, so pairs would straddle devices."""
  total = input_pipeline.pair_total(config, bool(stage.multi))
  return total if config.train.batch_size % (2 * jax.device_count()) == 0 else 0


def _stage_iterator(config, stage: jtso.Stage, source, state=None):
  """The training iterator delivering `stage`'s view count, continuing from `state` (a
  previous iterator's get_state()) so a stage change keeps the data position."""
  views = views_for(stage, config)
  # k > 1 single views: k distinct real views per object, never padded.
  min_views = 0 if not stage.multi and views > 1 else min(config.data.min_views, views)
  it = iter(input_pipeline.train_dataset(config, source=source, views=(min_views, views)))
  if state is not None:
    it.set_state(state)
  return it


def train_and_evaluate(
  config: ml_collections.ConfigDict, workdir: str, fine_tune: bool = False
) -> TrainState:
  """Trains `config` in `workdir`, resuming from its latest checkpoint if there is one
  (of the same model; with `fine_tune`, also of another preset, schedule or dataset).
  Process 0 holds the workdir (workdir.hold): a second live trainer there is refused."""
  with contextlib.ExitStack() as stack:
    refused = None
    if jax.process_index() == 0:
      try:
        stack.enter_context(workdir_lib.hold(workdir))
      except workdir_lib.WorkdirInUseError as e:
        refused = e
    if jax.process_count() > 1:  # every process stops, not only the one that was refused
      held = int(multihost_utils.broadcast_one_to_all(np.int32(refused is None)))
      if not held and refused is None:
        refused = workdir_lib.WorkdirInUseError(
          f'{workdir} is in use by another process (process 0 could not hold it)'
        )
    if refused is not None:
      raise refused
    return _train_and_evaluate(config, workdir, fine_tune)


def _train_and_evaluate(
  config: ml_collections.ConfigDict, workdir: str, fine_tune: bool
) -> TrainState:
  configlib.validate(config)
  mesh = parallel.make_mesh()
  train_source = input_pipeline.open_source(config.data, 'train')
  val_source = input_pipeline.open_source(config.data, 'validation')
  steps_per_epoch, num_steps = input_pipeline.run_steps(
    config, len(train_source), jax.process_count()
  )
  plan = jtso.schedule(config, steps_per_epoch)
  model, tx, steps, eval_fn = programs(config, steps_per_epoch)

  state = parallel.replicate(create_train_state(config, model, tx), mesh)
  checkpoints = checkpoint.Checkpointer(workdir, keep=config.train.keep_checkpoints)
  latest = checkpoints.latest_step()
  start = latest or 0
  stage = jtso.stage_at(start, plan)
  data = _stage_iterator(config, stage, train_source)
  if latest is not None:
    resume.check_compatible(workdir, latest, config, fine_tune)
    state = checkpoints.restore(state, data)
    logging.info('Resumed from step %d in %s.', start, workdir)
  writer = metric_writers.MetricWriter(workdir, enabled=jax.process_index() == 0)
  writer.rewind(start)
  logging.info(
    'Training %d steps (%d per epoch), stages %s, on %d devices.',
    num_steps,
    steps_per_epoch,
    plan,
    jax.device_count(),
  )

  bar = tqdm.tqdm(total=num_steps, initial=start, disable=jax.process_index() != 0)
  timer, timed_steps = time.perf_counter(), 0
  stopped_by = None
  finished = False
  try:
    with stopping.stop_requests() as received:
      for step in range(start, num_steps):
        new_stage = jtso.stage_at(step, plan)
        if views_for(new_stage, config) != views_for(stage, config):
          data = _stage_iterator(config, new_stage, train_source, data.get_state())
        stage = new_stage
        batch = input_pipeline.model_inputs(next(data), config.model.volume_size)
        packed = packed_views(config, stage)
        if packed:
          input_pipeline.check_pairs(batch['mask'], packed)
        state, step_metrics = steps[stage.name](
          state, parallel.shard_batch(batch, mesh), packed=packed
        )
        done, timed_steps = step + 1, timed_steps + 1
        bar.set_description(f'stage {stage.index} ({stage.name})')
        bar.update()
        last = done == num_steps
        log = last or done % config.train.log_every_steps == 0
        is_eval = last or done % config.eval.every_steps == 0
        stop = stopping.agreed_stop(received, done, config)
        save = is_eval or stop or done % config.train.checkpoint_every_steps == 0
        if save or log:
          # never log or save a non-finite state: the last checkpoint stays the last good one
          scalars = stopping.finite_scalars(step_metrics, done, stage, checkpoints, workdir)
        if log:
          elapsed = time.perf_counter() - timer
          scalars.update(
            stage=stage.index,
            wall_time=time.time(),
            examples_per_sec=timed_steps * config.train.batch_size / elapsed,
          )
          writer.write_scalars(done, scalars)
          bar.set_postfix(loss=scalars.get('loss_multi', scalars.get('loss_single')))
          timer, timed_steps = time.perf_counter(), 0
        if is_eval:
          val, picture = eval_loop.validate(state, config, eval_fn, mesh, val_source)
          writer.write_scalars(done, {**val, 'wall_time': time.time()})
          writer.write_image(done, 'reconstructions', picture)
          visualize.save_png(
            os.path.join(workdir, 'reconstructions', f'step_{done:07d}.png'), picture
          )
          logging.info('step %d: %s', done, val)
          timer = time.perf_counter()
        if save:
          checkpoints.save(
            done, state, data, metrics=val if is_eval else None, config=config, force=stop
          )
        if stop:
          logging.warning(
            'Stopped by signal %d after step %d; checkpoint saved in %s.',
            received[0],
            done,
            workdir,
          )
          stopped_by = received[0]
          break
    finished = True
  finally:  # an error (NaN, full disk, bad data) still finishes the last good save
    bar.close()
    checkpoints.close(raise_errors=finished)
    try:
      writer.close()
    except OSError as e:  # e.g. the disk is full too: report the error that stopped us
      if finished:
        raise
      logging.error('closing the metric writers in %s: %s', workdir, e)
  if stopped_by is not None:
    raise errors.Interrupted(stopped_by, int(state.step), workdir)
  return state
