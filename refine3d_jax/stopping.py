"""How a training run stops early, and what it leaves behind.

  with stop_requests() as received:               # SIGTERM / SIGINT collected, not fatal
    ...                                           # each step:
    scalars = finite_scalars(metrics, done, stage, checkpoints, workdir)
    if agreed_stop(received, done, config): ...   # save, then raise errors.Interrupted

A signal stops the run after the step in flight, with a checkpoint of it (every host
agrees first: a save is collective); a non-finite loss stops it before anything is logged
or saved, so the last checkpoint stays the last good one.
"""

import contextlib
import signal
import threading

import jax
from jax.experimental import multihost_utils
import numpy as np

from refine3d_jax import checkpoint, errors, jtso, parallel


@contextlib.contextmanager
def stop_requests():
  """Collects SIGTERM / SIGINT into the yielded list instead of dying at once, so the loop
  can finish its step and save (handlers only in the main thread; restored on exit)."""
  received: list[int] = []
  if threading.current_thread() is not threading.main_thread():
    yield received
    return
  previous = {
    s: signal.signal(s, lambda signum, frame: received.append(signum))
    for s in (signal.SIGTERM, signal.SIGINT)
  }
  try:
    yield received
  finally:
    for s, handler in previous.items():
      signal.signal(s, handler)


def agreed_stop(received: list[int], done: int, config) -> bool:
  """Whether to stop after step `done`: at once with one process; with several, all
  processes agree at logging steps (a save is collective: a host stopping alone hangs)."""
  if jax.process_count() == 1:
    return bool(received)
  if done % config.train.log_every_steps:
    return False
  return bool(np.any(multihost_utils.process_allgather(np.array(bool(received)))))


def finite_scalars(
  step_metrics, done: int, stage: jtso.Stage, checkpoints, workdir: str
) -> dict[str, float]:
  """The step's metrics as floats; NonFiniteLossError naming the step, stage and last
  good checkpoint when one is not finite."""
  scalars = {k: float(v) for k, v in parallel.to_host(step_metrics).items()}
  if not all(np.isfinite(v) for v in scalars.values()):
    with contextlib.suppress(checkpoint.CheckpointSaveError):
      checkpoints.wait()  # the save in flight is of a good state: let it finish first
    raise errors.NonFiniteLossError(
      f'non-finite loss at step {done} (stage {stage.index}, {stage.name}): {scalars}; '
      f'the last good checkpoint is step {checkpoints.latest_step()} in {workdir}'
    )
  return scalars
