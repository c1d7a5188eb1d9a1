"""Checkpoints of a training run: the TrainState, the data iterator, metrics and config.

  ckpt = Checkpointer(workdir, keep=3, best_metric='val_iou')
  state = ckpt.restore(state, data_iterator) if ckpt.latest_step() is not None else state
  ckpt.save(step, state, data_iterator, metrics={'val_iou': 0.61, 'stage': 'ref'},
            config=config)
  ckpt.close()                                  # waits for the last (async) save
  config_dict = restore_config(workdir)         # the saved config, as a dict

One orbax step directory `<workdir>/checkpoints/<step>/` holds the items
  state    the TrainState pytree (StandardSave / StandardRestore)
  data     the grain iterator state (grain's orbax handler: one JSON file per process)
  config   the resolved experiment config (JSON)
  metrics  the step's metrics (orbax's own metrics item, JSON)
Orbax writes each step into `<step>.orbax-checkpoint-tmp-<timestamp>` and renames it when
complete, so a half-written checkpoint (a kill or a full disk mid-save) is never listed,
restored or counted; a writer removes such leftovers when it opens the directory. A save
that fails raises CheckpointSaveError naming the step, the directory and the last complete
checkpoint, which stays intact.

Retention (the last `keep` checkpoints, plus the best by `metrics[best_metric]`):
retention.py. A trained run restored for use (evaluate, predict): trained.py.
"""

import dataclasses
import json
import os
import uuid
from typing import Any, Mapping

from absl import logging
from etils import epath
import grain
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from refine3d_jax import errors, retention
from refine3d_jax.train_state import TrainState

SUBDIR = 'checkpoints'


def checkpoint_dir(workdir: str) -> epath.Path:
  """`<workdir>/checkpoints` as an absolute path (orbax's tensorstore writer refuses
  relative ones, and `python main.py` defaults to the relative `runs/<preset>`)."""
  return epath.Path(os.path.abspath(os.path.expanduser(workdir))) / SUBDIR


def _json_ready(tree: Any) -> Any:
  """numpy / jax scalars and arrays -> Python numbers and lists (for JSON)."""

  def convert(x):
    if isinstance(x, (np.ndarray, np.generic, jax.Array)):
      return np.asarray(x).tolist()
    return x

  return jax.tree.map(convert, tree)


def _config_dict(config: ml_collections.ConfigDict | Mapping[str, Any]) -> dict[str, Any]:
  if isinstance(config, ml_collections.ConfigDict):
    return json.loads(config.to_json_best_effort())
  return json.loads(json.dumps(_json_ready(dict(config))))


def _saved_tree(state: Any) -> Any:
  """A TrainState as the dict of its fields that are not None (others unchanged): the tree
  a checkpoint holds, the same with and without the optional fields (e.g. ema_params),
  so checkpoints written before a field existed still restore."""
  if not isinstance(state, TrainState):
    return state
  return {
    f.name: getattr(state, f.name)
    for f in dataclasses.fields(state)
    if getattr(state, f.name) is not None
  }


def _abstract(template: Any) -> Any:
  """The template's leaves as ShapeDtypeStructs, keeping each array's sharding; abstract
  leaves without one get the default device's."""
  default = jax.sharding.SingleDeviceSharding(jax.devices()[0])

  def leaf(x):
    sharding = getattr(x, 'sharding', None) or default
    return jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=sharding)

  return jax.tree.map(leaf, template)


def _ensure_writable(directory: epath.Path) -> None:
  """Creates `directory` and writes a probe file; raises PermissionError naming it."""
  probe = directory / f'.write_probe_{uuid.uuid4().hex}'
  try:
    directory.mkdir(parents=True, exist_ok=True)
    probe.write_text('')
    probe.unlink()
  except OSError as e:
    raise errors.NotWritableError(
      f'checkpoint directory {directory} is not writable (workdir = {directory.parent}): {e}'
    ) from e


class CheckpointSaveError(errors.UserError, OSError):
  """A checkpoint could not be written (disk full, directory gone, ...); the previous
  checkpoints are intact."""


def _reason(error: BaseException) -> str:
  """One line on why a save failed, from orbax's or tensorstore's long message."""
  text = f'{type(error).__name__}: {error}'
  if 'No space left on device' in text or getattr(error, 'errno', None) == 28:
    return 'the disk is full (No space left on device)'
  return text.splitlines()[0][:400]


class Checkpointer:
  """A thin wrapper over one `ocp.CheckpointManager` at `<workdir>/checkpoints`.

  keep: how many of the latest checkpoints to keep (None = all); best_metric: also keep
  the checkpoint with the highest `metrics[best_metric]` (None = no best tracking);
  read_only: restore only (evaluation, prediction): nothing is created, saved or deleted.
  Raises PermissionError naming the directory when it cannot be written, and
  FileNotFoundError when a read-only one does not exist.
  """

  def __init__(
    self,
    workdir: str,
    keep: int | None = 3,
    best_metric: str | None = 'val_iou',
    read_only: bool = False,
  ):
    if keep is not None and keep < 1:
      raise ValueError(f'keep must be >= 1 or None, got {keep}')
    self.directory = checkpoint_dir(workdir)
    self.best_metric = best_metric
    if read_only:
      if not self.directory.is_dir():
        raise errors.NotFoundError(f'no checkpoints in {workdir} ({self.directory} does not exist)')
    else:
      _ensure_writable(self.directory)
    self._manager = retention.manager(
      self.directory, None if read_only else keep, best_metric, read_only=read_only
    )
    self._pending: int | None = None  # the step of the save in flight, if any
    self._failed: CheckpointSaveError | None = None

  def _save_failed(self, step: int, error: BaseException) -> CheckpointSaveError:
    self._failed = CheckpointSaveError(
      f'saving checkpoint {step} in {self.directory} failed: {_reason(error)}. The last '
      f'complete checkpoint, step {self.latest_step()}, is intact; fix the cause and '
      'rerun the same command to resume from it.'
    )
    self._pending = None
    return self._failed

  def save(
    self,
    step: int,
    state: TrainState,
    data_iterator: grain.DatasetIterator | None = None,
    metrics: Mapping[str, Any] | None = None,
    config: ml_collections.ConfigDict | Mapping[str, Any] | None = None,
    force: bool = False,
  ) -> bool:
    """Starts saving checkpoint `step` (asynchronously: `wait()` or `close()` before
    exit). The iterator's state is read now, before save returns. Returns whether a
    checkpoint was started (orbax's save policy may skip a step unless `force`)."""
    items = {'state': ocp.args.StandardSave(_saved_tree(state))}
    if data_iterator is not None:
      items['data'] = grain.checkpoint.CheckpointSave(data_iterator)
    if config is not None:
      items['config'] = ocp.args.JsonSave(_config_dict(config))
    metrics = None if metrics is None else _json_ready(dict(metrics))
    self.wait()  # surfaces a failure of the previous (async) save as CheckpointSaveError
    try:
      started = self._manager.save(
        int(step), args=ocp.args.Composite(**items), metrics=metrics, force=force
      )
    except Exception as e:  # pylint: disable=broad-except
      raise self._save_failed(int(step), e) from e
    if started:
      self._pending = int(step)
    return started

  def restore(
    self,
    state_template: Any,
    data_iterator: grain.DatasetIterator | None = None,
    step: int | None = None,
  ) -> TrainState:
    """The TrainState of checkpoint `step` (default: the latest), in the structure and
    shardings of `state_template` (real arrays or jax.ShapeDtypeStructs). Sets
    `data_iterator`'s state from the checkpoint when given."""
    self.wait()
    step = self.latest_step() if step is None else int(step)
    if step is None:
      raise errors.NotFoundError(f'no checkpoint in {self.directory}')
    if step not in self.all_steps():
      raise errors.NotFoundError(
        f'no checkpoint {step} in {self.directory}; it has {self.all_steps()}'
      )
    items = {'state': ocp.args.StandardRestore(_abstract(_saved_tree(state_template)))}
    if data_iterator is not None:
      if not (self._step_dir(step) / 'data').exists():
        raise ValueError(
          f'checkpoint {self._step_dir(step)} has no data iterator state '
          '(it was saved without data_iterator)'
        )
      items['data'] = grain.checkpoint.CheckpointRestore(data_iterator)
    state = self._manager.restore(step, args=ocp.args.Composite(**items)).state
    return TrainState(**state) if isinstance(state_template, TrainState) else state

  def metrics(self, step: int) -> dict[str, Any] | None:
    """The metrics saved with checkpoint `step` (None if none; needs best_metric)."""
    return self._manager.metrics(step)

  def latest_step(self) -> int | None:
    """The latest committed step, or None."""
    return self._manager.latest_step()

  def best_step(self) -> int | None:
    """The kept step with the highest finite `metrics[best_metric]`, or None."""
    if not self.best_metric:
      return None
    steps = self.all_steps()
    best = retention.best_index([self.metrics(s) for s in steps], self.best_metric)
    return None if best is None else steps[best]

  def all_steps(self) -> list[int]:
    """All committed steps, ascending."""
    return sorted(self._manager.all_steps())

  def wait(self) -> None:
    """Blocks until the pending save (and its retention pass) is finished; raises
    CheckpointSaveError if it failed (and again on later calls)."""
    if self._failed is not None:
      raise self._failed
    try:
      self._manager.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except
      raise self._save_failed(self._pending, e) from e
    self._pending = None

  def close(self, raise_errors: bool = True) -> None:
    """Waits for pending saves, then releases the manager; raises CheckpointSaveError if
    a save failed (only logs it with raise_errors=False: when another error is already on
    its way up)."""
    try:
      self.wait()
    except CheckpointSaveError as e:
      if raise_errors:
        raise
      logging.error('%s', e)
    finally:
      try:
        self._manager.close()
      except Exception:  # pylint: disable=broad-except
        if self._failed is None:
          raise

  def __enter__(self) -> 'Checkpointer':
    return self

  def __exit__(self, exc_type, *exc) -> None:
    self.close(raise_errors=exc_type is None)

  def _step_dir(self, step: int) -> epath.Path:
    return self.directory / str(step)


def restore_config(workdir: str, step: int | None = None) -> dict[str, Any]:
  """The config dict saved with checkpoint `step` (default: the latest one that has a
  config) in `<workdir>/checkpoints`; read-only. `ml_collections.ConfigDict(d)` rebuilds
  a ConfigDict (tuples come back as lists)."""
  directory = checkpoint_dir(workdir)
  if not directory.exists():
    raise errors.NotFoundError(f'no checkpoints in {workdir} ({directory} does not exist)')
  manager = retention.manager(directory, keep=None, best_metric=None, read_only=True)
  try:
    steps = sorted(manager.all_steps(), reverse=True)
    if step is not None:
      steps = [int(step)] if int(step) in steps else []
    for s in steps:
      if (directory / str(s) / 'config').exists():
        return manager.restore(s, args=ocp.args.Composite(config=ocp.args.JsonRestore())).config
  finally:
    manager.close()
  which = 'any checkpoint' if step is None else f'checkpoint {step}'
  raise errors.NotFoundError(f'no config saved with {which} in {directory}')
