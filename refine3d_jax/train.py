"""Training: `train_and_evaluate(config, workdir)` and the pure steps it jits.

The step is `(state, batch) -> (state, metrics)`, one compiled version per JTSO stage
(the stage is static). A batch holds `images [B, n, S, S, 3]`, `mask [B, n]` and
`voxels [B, 32, 32, 32]`; stages that need a single-view batch take view 0 of it (the
views are drawn at random, so view 0 is a random view), or with `train.single_views = k`
its first k views, each its own single-view example (`single_view_batch`).
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
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm

from refine3d_jax import checkpoint, configlib, eval_loop, input_pipeline, jtso, losses
from refine3d_jax import metric_writers, metrics, parallel, resume, stopping, visualize
from refine3d_jax import workdir as workdir_lib
from refine3d_jax.models import Refine3DNet, create_model
from refine3d_jax.train_state import TrainState, create_train_state


def ema_update(ema: Any, params: Any, decay: float, step: jax.Array) -> Any:
  """ema <- d ema + (1 - d) params, d = min(decay, (1 + step) / (10 + step)): the
  warm-up of TensorFlow's ExponentialMovingAverage, so early steps are not dragged
  towards the initial weights."""
  step = step.astype(jnp.float32)
  d = jnp.minimum(decay, (1.0 + step) / (10.0 + step))
  return jax.tree.map(lambda e, p: (d * e + (1.0 - d) * p).astype(e.dtype), ema, params)


def views_for(stage: jtso.Stage, config: ml_collections.ConfigDict) -> int:
  """Views per example the data pipeline must deliver in `stage`."""
  return config.train.num_views if stage.multi else config.train.single_views


def single_view_batch(
  images: jax.Array, mask: jax.Array, voxels: jax.Array, k: int
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """k single-view examples per object: images [B, n, ...] -> [B * k, 1, ...].

  Object b's i-th example is its view i mod n_b (n_b = its real views, the first ones,
  as the pipeline pads), so a padded slot never becomes an example: an object with fewer
  than k real views repeats them. k = 1 is view 0, as before the option existed.
  """
  real = jnp.maximum(mask.sum(axis=1, keepdims=True), 1)  # [B, 1]
  index = jnp.arange(k)[None, :] % real  # [B, k]
  picked = jnp.take_along_axis(
    images, index.reshape(index.shape + (1,) * (images.ndim - 2)), axis=1
  )
  flat = picked.reshape((-1, 1) + images.shape[2:])
  return flat, jnp.ones(flat.shape[:2], bool), jnp.repeat(voxels, k, axis=0)


def loss_fn(params, batch_stats, model: Refine3DNet, images, mask, voxels):
  """Reconstruction loss of one batch in train mode -> (loss, (terms, new batch_stats))."""
  outputs, updates = model.apply(
    {'params': params, 'batch_stats': batch_stats},
    images,
    mask,
    train=True,
    mutable=['batch_stats'],
  )
  loss, terms = losses.reconstruction_loss(outputs, voxels)
  return loss, (terms, updates['batch_stats'])


def train_step(
  state: TrainState,
  batch: dict[str, jax.Array],
  *,
  model: Refine3DNet,
  tx: optax.GradientTransformation,
  stage: jtso.Stage,
  lr_fn,
  lr_scale: dict[str, float],
  single_views: int = 1,
  ema_decay: float = 0.0,
) -> tuple[TrainState, dict[str, jax.Array]]:
  """One JTSO step of `stage`: the losses it needs, routed gradients, Adam on its groups.

  The single-view loss is over `single_views` views per object (`single_view_batch`).
  With both losses (stage 3), BatchNorm keeps the statistics of the multi-view pass.
  A state with ema_params moves them towards the new params (`ema_update`).
  """
  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
  run = lambda images, mask, voxels: grad_fn(
    state.params, state.batch_stats, model, images, mask, voxels
  )
  out = {}
  single = multi = None
  batch_stats = state.batch_stats
  if stage.single:
    (loss, (terms, batch_stats)), single = run(
      *single_view_batch(batch['images'], batch['mask'], batch['voxels'], single_views)
    )
    out.update(loss_single=loss, coarse_single=terms['coarse'], refined_single=terms['refined'])
  if stage.multi:
    (loss, (terms, batch_stats)), multi = run(batch['images'], batch['mask'], batch['voxels'])
    out.update(loss_multi=loss, coarse_multi=terms['coarse'], refined_multi=terms['refined'])
  grads = jtso.route_gradients(stage, single, multi)
  lr = lr_fn(state.step)
  params, opt_state, rates = jtso.apply_updates(
    tx, stage, state.params, state.opt_state, grads, lr, lr_scale
  )
  out.update({f'lr_{g}': rates[g] for g in jtso.GROUPS})
  out['grad_norm'] = optax.tree.norm(grads)
  ema = (
    None
    if state.ema_params is None
    else ema_update(state.ema_params, params, ema_decay, state.step)
  )
  new_state = state.replace(
    step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state, ema_params=ema
  )
  return new_state, out


def eval_step(
  variables: dict[str, Any],
  batch: dict[str, jax.Array],
  *,
  model: Refine3DNet,
  thresholds: tuple[float, ...],
  view_counts: tuple[int, ...],
) -> dict[str, Any]:
  """Eval-mode forward of one batch: `valid`, `label` and `voxels` passed through (so that
  hosts gather them with the outputs) and, for each n of `view_counts`, under
  `result['views'][str(n)]`, per output `coarse` and `refined` its probabilities and
  per-example IoU `iou_<output>` [B, T] at each threshold.

  The views are encoded once and each count n reconstructs from the first n of them (views
  past n masked out, exactly as if absent): the first-n protocol's nesting, so 1..20 views
  cost 20 encodings per object, not 1 + 2 + ... + 20 (one count per call for the random
  protocol, see view_passes)."""
  result = {k: batch[k] for k in ('valid', 'label', 'voxels')}

  def scored(outputs):
    out = {}
    for name in ('coarse', 'refined'):
      out[f'iou_{name}'] = metrics.iou(outputs[name], batch['voxels'], thresholds)
      out[name] = outputs[name]
    return out

  features = model.apply(variables, batch['images'], method=Refine3DNet.encode)
  first = jnp.arange(features.shape[1])
  result['views'] = {
    str(n): scored(
      model.apply(
        variables,
        features,
        batch['mask'] & (first < n),
        train=False,
        method=Refine3DNet.reconstruct,
      )
    )
    for n in view_counts
  }
  return result


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
    functools.partial(eval_step, model=model, thresholds=eval_loop.validation_thresholds(config)),
    static_argnames='view_counts',
  )
  return Programs(model, tx, steps, eval_fn)


def make_train_steps(
  config: ml_collections.ConfigDict, model: Refine3DNet, tx: optax.GradientTransformation, lr_fn
) -> dict[str, Any]:
  """{stage name: jitted step}, state buffers donated."""
  lr_scale = dict(config.train.lr_scale)
  return {
    name: jax.jit(
      functools.partial(
        train_step,
        model=model,
        tx=tx,
        stage=stage,
        lr_fn=lr_fn,
        lr_scale=lr_scale,
        single_views=config.train.single_views,
        ema_decay=config.train.ema_decay,
      ),
      donate_argnums=0,
    )
    for name, stage in jtso.STAGES.items()
  }


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
  steps_per_epoch = config.train.steps_per_epoch or input_pipeline.steps_per_epoch(
    config, len(train_source), jax.process_count()
  )
  num_steps = config.train.num_steps or config.train.num_epochs * steps_per_epoch
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
        state, step_metrics = steps[stage.name](
          state,
          parallel.shard_batch(
            input_pipeline.model_inputs(next(data), config.model.volume_size), mesh
          ),
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
    raise stopping.Interrupted(stopped_by, int(state.step))
  return state
