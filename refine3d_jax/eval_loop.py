"""The one evaluation loop, of validation during training and of the evaluate command.

  for counts, batch, out in eval_outputs(config, 'test', step_fn, variables, mesh, source,
                                         (1, 3)):
    ...  # out: the eval step's outputs (steps.eval_step) of every host, `valid` = real rows

Under the first-n protocol one pass loads the largest view count and scores every count
from the first n of its views; the random protocol draws views afresh, one pass per count
(view_passes). `validate` is the training run's use: the IoU for each of eval.val_views
and a picture of the first reconstructions.
"""

from typing import Any

import ml_collections
import numpy as np

from refine3d_jax import input_pipeline, parallel, visualize
from refine3d_jax.train_state import TrainState, variables_of


def view_passes(
  config: ml_collections.ConfigDict, counts: tuple[int, ...]
) -> list[tuple[int, tuple[int, ...]]]:
  """[(views to load, view counts scored from them)]: one pass with the largest count
  under the first-n protocol (count n uses the first n views), one pass per count
  otherwise (random views are drawn afresh for each count)."""
  counts = tuple(int(n) for n in counts)
  if config.data.eval_views == 'first_n':
    return [(max(counts), counts)]
  return [(n, (n,)) for n in counts]


def validation_thresholds(config: ml_collections.ConfigDict) -> tuple[float, ...]:
  """eval.threshold first, then the other eval.thresholds."""
  t = float(config.eval.threshold)
  return (t, *(float(x) for x in config.eval.thresholds if float(x) != t))


def eval_outputs(
  config: ml_collections.ConfigDict,
  split: str,
  step_fn,
  variables,
  mesh,
  source,
  counts,
  max_examples: int = 0,
):
  """The one evaluation loop, of validation and of `evaluate`: for each pass of
  view_passes(config, counts), yields (the pass's counts, this host's input batch, the
  eval step's outputs of every host via parallel.to_host, `valid` marking real rows).
  A pass stops once `max_examples` (> 0) rows were seen."""
  for num_views, pass_counts in view_passes(config, counts):
    seen = 0
    for batch in input_pipeline.eval_dataset(config, split, num_views, source=source):
      inputs = eval_inputs(batch, config.model.volume_size)
      out = parallel.to_host(
        step_fn(variables, parallel.shard_batch(inputs, mesh), view_counts=pass_counts)
      )
      yield pass_counts, batch, out
      seen += len(out['valid'])
      if max_examples and seen >= max_examples:
        break


def validate(state: TrainState, config, step_fn, mesh, source) -> tuple[dict, Any]:
  """Validation IoU (refined and coarse, t = eval.threshold) for each of eval.val_views,
  the refined IoU at the best of eval.thresholds (`val_iou_best_<n>v`: a dip at t alone
  is a shift of calibration, not of shape), and a picture of the first few
  reconstructions with the first view count."""
  counts = tuple(int(n) for n in config.eval.val_views)
  refined, coarse, picture = {n: [] for n in counts}, {n: [] for n in counts}, None
  for pass_counts, batch, result in eval_outputs(
    config,
    'validation',
    step_fn,
    variables_of(state),
    mesh,
    source,
    counts,
    config.eval.max_examples,
  ):
    for n in pass_counts:  # IoU [valid rows, validation_thresholds]
      r = result['views'][str(n)]
      refined[n].append(r['iou_refined'][result['valid']])
      coarse[n].append(r['iou_coarse'][result['valid']])
    if picture is None:
      # this host's views; its rows come first among the gathered results (process 0)
      n, k = counts[0], min(config.eval.num_images, len(batch['images']))
      images = batch['images'][:k, :n] * np.asarray(config.data.std) + np.asarray(config.data.mean)
      picture = visualize.reconstruction_grid(
        images, result['views'][str(n)]['refined'][:k], result['voxels'][:k], config.eval.threshold
      )
  out = {}
  for n in counts:  # column 0 is eval.threshold
    iou = np.concatenate(refined[n]).mean(axis=0)
    out[f'val_iou_{n}v'] = float(iou[0])
    out[f'val_iou_coarse_{n}v'] = float(np.concatenate(coarse[n])[:, 0].mean())
    out[f'val_iou_best_{n}v'] = float(iou.max())
  out['val_iou'] = float(np.mean([out[f'val_iou_{n}v'] for n in counts]))
  return out, picture


def eval_inputs(batch: dict, volume_size: int) -> dict:
  """input_pipeline.model_inputs plus what steps.eval_step passes through: `valid` and
  `label`."""
  return {
    **input_pipeline.model_inputs(batch, volume_size),
    'valid': batch['valid'],
    'label': batch['label'],
  }
