"""A trained run restored for use (evaluate, predict, a notebook) from its checkpoints:

  trained = restore_trained(workdir, 'best')    # (config, model, variables, step)
  config = load_config(workdir)                 # the saved config, completed and checked

`which` is 'best' (by validation IoU), 'latest' or a step number (`parse_which`).
"""

from typing import Any, NamedTuple

from absl import logging
import jax
import ml_collections

from refine3d_jax import checkpoint, configlib, errors, jtso
from refine3d_jax.models import Refine3DNet, create_model
from refine3d_jax.train_state import create_train_state, variables_of

WHICH = ('best', 'latest')


def parse_which(which: str | int) -> str | int:
  """'best', 'latest' or a step number (as an int); ValueError naming the value otherwise."""
  text = str(which)
  if text in WHICH:
    return text
  if text.isdigit():
    return int(text)
  raise ValueError(f"checkpoint must be 'best', 'latest' or a step number, got {which!r}")


def load_config(workdir: str, step: int | None = None) -> ml_collections.ConfigDict:
  """The config saved with checkpoint `step` (default: the latest with one) of `workdir`,
  keys added to the code since then taking the values that keep its meaning; checked."""
  config, filled = configlib.with_added_keys(
    ml_collections.ConfigDict(checkpoint.restore_config(workdir, step))
  )
  if filled:
    logging.info(
      '%s: config saved without %s; using %s',
      workdir,
      filled,
      {k: configlib.ADDED_KEYS[k] for k in filled},
    )
  configlib.validate(config)
  return config


class Trained(NamedTuple):
  """A trained run restored for use: its config, model, variables (the averaged weights of
  a run with train.ema_decay > 0) and the checkpoint's step."""

  config: ml_collections.ConfigDict
  model: Refine3DNet
  variables: dict[str, Any]
  step: int


def restore_trained(
  workdir: str, which: str | int = 'best', config: ml_collections.ConfigDict | None = None
) -> Trained:
  """Checkpoint `which` ('best', 'latest' or a step) of a training workdir, with `config`
  or else the config saved beside it. 'best' (by validation IoU) falls back to the latest
  when no checkpoint has one. Raises FileNotFoundError naming the workdir and what is
  missing, ValueError for a bad `which`."""
  which = parse_which(which)
  directory = checkpoint.checkpoint_dir(workdir)
  if not directory.is_dir():
    raise errors.NotFoundError(
      f'{workdir}: no checkpoints ({directory} does not exist); '
      f'train first: python main.py --workdir={workdir}'
    )
  with checkpoint.Checkpointer(workdir, keep=None, read_only=True) as ckpt:
    if which == 'best':
      step = ckpt.best_step()
      step = ckpt.latest_step() if step is None else step
    elif which == 'latest':
      step = ckpt.latest_step()
    else:  # said here: orbax would only say that it has no config
      step = which
      if step not in ckpt.all_steps():
        raise errors.NotFoundError(
          f'{workdir}: no checkpoint {step}; it has steps {ckpt.all_steps()}'
        )
    if step is None:
      raise errors.NotFoundError(
        f'{workdir}: no checkpoint in {ckpt.directory}; train first, '
        f'e.g. python main.py --workdir={workdir}'
      )
    if config is None:
      try:
        config = load_config(workdir, step if isinstance(which, int) else None)
      except FileNotFoundError as e:
        raise errors.NotFoundError(f'{workdir}: {e}') from None
    else:
      configlib.validate(config)
    model = create_model(config.model)
    template = jax.eval_shape(lambda: create_train_state(config, model, jtso.optimizer(config)))
    state = ckpt.restore(template, step=step)
  return Trained(config, model, variables_of(state), int(step))
