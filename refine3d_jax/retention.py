"""Which checkpoints a run keeps: the last `keep`, plus the one with the highest finite
`metrics[best_metric]` (the earliest on ties); a checkpoint without that metric never
counts as best.

  manager = retention.manager(directory, keep=3, best_metric='val_iou')  # orbax's manager
  steps[best_index([metrics(s) for s in steps], 'val_iou')]             # the best step

checkpoint.Checkpointer saves and restores through `manager`; orbax applies the policy
(LatestN, KeepBest) after each save.
"""

import dataclasses
import math
from typing import Any, Mapping, Sequence

from etils import epath
import orbax.checkpoint as ocp


def metric_value(metrics: Mapping[str, Any] | None, name: str) -> float | None:
  """`metrics[name]` as a float, or None when absent, not a number or not finite."""
  value = (metrics or {}).get(name)
  try:
    value = float(value)
  except (TypeError, ValueError):
    return None
  return value if math.isfinite(value) else None


def best_index(metrics: Sequence[Mapping[str, Any] | None], name: str) -> int | None:
  """Index of the highest finite `m[name]` in `metrics` (the first on ties), or None."""
  scored = [(v, -i) for i, m in enumerate(metrics) if (v := metric_value(m, name)) is not None]
  return -max(scored)[1] if scored else None


@dataclasses.dataclass
class KeepBest(ocp.checkpoint_managers.PreservationPolicy):
  """Preserves the one checkpoint with the highest finite `metrics[metric]` (earliest on
  ties); none when no checkpoint has it. (orbax's BestN ranks checkpoints whose metrics
  lack the key too, through whatever its metric function returns for them.)"""

  metric: str

  def should_preserve(self, checkpoints: Sequence[Any], *, context: Any = None) -> Sequence[bool]:
    del context
    best = best_index([c.metrics for c in checkpoints], self.metric)
    return [i == best for i in range(len(checkpoints))]


def manager(
  directory: epath.Path, keep: int | None, best_metric: str | None, read_only: bool = False
) -> ocp.CheckpointManager:
  """orbax's manager of `directory` keeping the last `keep` (None = all) and the best by
  `best_metric` (None = no best); read_only: creates, cleans and deletes nothing."""
  policies = [ocp.checkpoint_managers.LatestN(keep)]
  best_fn = None
  if best_metric:
    policies.append(KeepBest(best_metric))
    # best_fn only makes orbax write and reload the metrics item; ranking is KeepBest's.
    best_fn = lambda m: metric_value(m, best_metric) or -math.inf
  options = ocp.CheckpointManagerOptions(
    best_fn=best_fn,
    best_mode='max',
    read_only=read_only,
    create=not read_only,
    cleanup_tmp_directories=not read_only,
    preservation_policy=(
      None if read_only else ocp.checkpoint_managers.AnyPreservationPolicy(policies)
    ),
  )
  return ocp.CheckpointManager(directory, options=options)
