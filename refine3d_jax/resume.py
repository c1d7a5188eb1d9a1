"""Whether a workdir's checkpoint may be resumed by a config: always the same model (the
state's structure), and the same run unless fine-tuning (workdir.RUN_KEYS: preset,
schedule, dataset).

  check_compatible(workdir, checkpoints.latest_step(), config, fine_tune)  # or raises
"""

import ml_collections

from refine3d_jax import checkpoint, configlib, errors
from refine3d_jax import workdir as workdir_lib


class IncompatibleCheckpointError(errors.UserError, ValueError):
  """The workdir's checkpoint was trained with another model config, or (unless
  fine-tuning) another preset, schedule or dataset."""


def check_compatible(
  workdir: str, step: int, config: ml_collections.ConfigDict, fine_tune: bool = False
) -> None:
  """Raises IncompatibleCheckpointError listing the model keys, and unless `fine_tune`
  the run keys (workdir.RUN_KEYS), that differ from checkpoint `step`'s config (a
  checkpoint saved without a config is not checked)."""
  try:
    saved = ml_collections.ConfigDict(checkpoint.restore_config(workdir, step))
  except FileNotFoundError:
    return
  diffs = configlib.model_differences(saved, config)
  saved_ema = float(configlib.with_added_keys(saved)[0].train.ema_decay)
  if (saved_ema > 0) != (config.train.ema_decay > 0):  # the state's structure differs
    diffs.append(
      f'train.ema_decay: saved {saved_ema!r}, now {config.train.ema_decay!r} '
      '(a moving average of the weights is kept only when > 0)'
    )
  if diffs:
    raise IncompatibleCheckpointError(
      f'{workdir} holds a checkpoint (step {step}) of another model; '
      f'{"; ".join(diffs)}. Use another --workdir, or the saved values.'
    )
  diffs = [] if fine_tune else workdir_lib.run_differences(saved, config)
  if diffs:
    raise IncompatibleCheckpointError(
      f'{workdir} holds a checkpoint (step {step}) of another run; {"; ".join(diffs)}. '
      'Use another --workdir, or pass --fine_tune to resume it on purpose.'
    )
