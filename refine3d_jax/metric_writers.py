"""Metric logging without TensorFlow: `workdir/metrics.jsonl` plus TensorBoard events.

  writer = MetricWriter(workdir, enabled=jax.process_index() == 0)
  writer.rewind(restored_step)            # on resume: drop the lines logged after it
  writer.write_scalars(step, {'loss': 0.3, 'iou@0.3': 0.61})
  writer.write_image(step, 'eval/reconstructions', grid)   # uint8 [H, W, 3]
  writer.close()
  read_metrics(workdir)  # [{'step': 100, 'loss': 0.3, 'iou@0.3': 0.61}, ...]

metrics.jsonl has one JSON object per line, `step` first; it is flushed after every line, so
a crash loses at most the line being written (read_metrics skips a torn last line).
NaN policy: non-finite scalars (nan, inf, -inf) are written as JSON `null` (read back as
None), so the file is always strict JSON; TensorBoard gets the real non-finite value.
TensorBoard events go to `workdir/tensorboard/` (tensorboardX, no TensorFlow).
"""

import itertools
import json
import math
import os
from typing import Any, Mapping

import numpy as np

METRICS_FILE = 'metrics.jsonl'
TENSORBOARD_DIR = 'tensorboard'
_writer_ids = itertools.count()


def _scalar(value: Any) -> int | float:
  """A python int or float from a python, numpy or jax scalar (anything `float()` takes)."""
  if isinstance(value, (bool, np.bool_)):
    return int(value)
  if isinstance(value, (int, np.integer)):
    return int(value)
  if getattr(value, 'shape', ()) != ():
    raise ValueError(f'scalars only; got an array of shape {value.shape}')
  if np.issubdtype(getattr(value, 'dtype', np.float64), np.integer):
    return int(value)
  return float(value)


def _json_value(value: int | float) -> int | float | None:
  return value if isinstance(value, int) or math.isfinite(value) else None


def read_metrics(workdir: str) -> list[dict[str, Any]]:
  """Every record of `workdir/metrics.jsonl`, in order ([] when there is none yet). A torn
  last line (a crash mid-write) is skipped; a bad line elsewhere raises ValueError."""
  path = os.path.join(workdir, METRICS_FILE)
  if not os.path.exists(path):
    return []
  with open(path) as f:
    lines = f.read().split('\n')
  records = []
  for i, line in enumerate(lines):
    if not line.strip():
      continue
    try:
      records.append(json.loads(line))
    except json.JSONDecodeError as e:
      if i == len(lines) - 1:  # last line without a newline: torn by a crash
        break
      raise ValueError(f'{path}:{i + 1}: not JSON: {line[:80]!r}') from e
  return records


class MetricWriter:
  """Writes scalars to metrics.jsonl and TensorBoard, images to TensorBoard.

  Only one process should write: pass `enabled=jax.process_index() == 0`; a disabled writer
  accepts every call and touches no file.
  """

  def __init__(self, workdir: str, enabled: bool = True):
    self.workdir = workdir
    self.enabled = enabled
    self.path = os.path.join(workdir, METRICS_FILE)
    self._file = None
    self._tb = None
    self._purge_step: int | None = None
    if enabled:
      os.makedirs(workdir, exist_ok=True)

  def _jsonl(self):
    if self._file is None:
      self._file = open(self.path, 'a')
    return self._file

  def _tensorboard(self):
    if self._tb is None:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top

      # A unique suffix: tensorboardX names files by the second, and a second writer
      # within the same second (after rewind) would truncate the first one's file.
      suffix = f'.{os.getpid()}.{next(_writer_ids)}'
      self._tb = SummaryWriter(
        os.path.join(self.workdir, TENSORBOARD_DIR),
        purge_step=self._purge_step,
        filename_suffix=suffix,
      )
    return self._tb

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    """Appends `{"step": step, **scalars}` to metrics.jsonl (flushed) and to TensorBoard.
    Values: python/numpy/jax scalars; non-finite floats become null in the JSON line."""
    if not self.enabled:
      return
    if 'step' in scalars:
      raise ValueError("'step' is a reserved key")
    step = int(step)
    values = {k: _scalar(v) for k, v in scalars.items()}
    line = json.dumps(
      {'step': step, **{k: _json_value(v) for k, v in values.items()}}, allow_nan=False
    )
    f = self._jsonl()
    f.write(line + '\n')
    f.flush()
    tb = self._tensorboard()
    for k, v in values.items():
      tb.add_scalar(k, v, step)
    tb.flush()

  def write_image(self, step: int, name: str, image: np.ndarray) -> None:
    """Writes a uint8 `[H, W, 3]` image to TensorBoard under the tag `name`."""
    if not self.enabled:
      return
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
      raise ValueError(f'image must be uint8 [H, W, 3]; got {image.dtype} {image.shape}')
    tb = self._tensorboard()
    tb.add_image(name, image, int(step), dataformats='HWC')
    tb.flush()

  def rewind(self, step: int) -> None:
    """Keeps only the metrics.jsonl records with step <= `step` (atomically: temp file +
    rename) and hides TensorBoard events after `step` (a purge_step marker in the next event
    file). Call on resume from a checkpoint at `step`, before writing anything new."""
    if not self.enabled:
      return
    self.close()
    self._purge_step = int(step) + 1
    kept = [r for r in read_metrics(self.workdir) if r['step'] <= step]
    if not os.path.exists(self.path):
      return
    tmp = self.path + '.tmp'
    with open(tmp, 'w') as f:
      for r in kept:
        f.write(json.dumps(r, allow_nan=False) + '\n')
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, self.path)

  def flush(self) -> None:
    if self._file is not None:
      self._file.flush()
    if self._tb is not None:
      self._tb.flush()

  def close(self) -> None:
    """Flushes and closes both outputs; a later write reopens them."""
    if self._file is not None:
      self._file.close()
      self._file = None
    if self._tb is not None:
      self._tb.close()
      self._tb = None

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()
