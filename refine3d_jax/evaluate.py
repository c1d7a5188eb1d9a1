r"""Evaluation of a trained workdir on a split, for 1 to 20 views, under a named protocol.

  python -m refine3d_jax.evaluate --workdir=runs/quick [--checkpoint=best|latest|STEP]
      [--split=test] [--config=configs/jtso.py:quick] [--config.eval.view_counts=(1,3)]

Restores the best checkpoint (by validation IoU; the latest when none has one) with the
config saved beside it (`--config` replaces it, e.g. to change `eval.*` or `data.*`), runs
the split data-parallel over every device, and writes `<workdir>/eval/` (`--out`):

  results.json             every number below (schema: refine3d_jax/results.py)
  table_views.md / .csv    IoU (best of the threshold set and at each threshold, sample-
                           weighted and class-mean) and F-score@1% against views
  table_per_category.md / .csv   per-category IoU and F-score, refined and coarse
  table_protocols.md / .csv      refined IoU in each named protocol (protocols.py) per count
  iou_vs_views.png         refined and coarse IoU against views

Protocols (recorded in results.json and in every caption): `data.eval_views` 'first_n'
(views 00..n-1, Pix2Vox and later) or 'random' (seeded by `data.eval_seed`); IoU at each
of `eval.thresholds` (plus the protocols' thresholds) and at the best of them, averaged
over objects (sample-weighted: Pix2Vox, UMIFormer, LRGT) and over categories (class-mean:
3D-RETR); F-Score@1% of the volume thresholded at `eval.threshold`
(refine3d_jax/metrics.py). Both the decoder's coarse volume and the refiner's output are
scored. As main.py, the command re-executes itself with glibc's malloc tuned
(refine3d_jax/hostmem.py): an isolated step ran 1.04-1.07x (paper preset, batch 4 x 3
views) and 1.08-1.15x (quick, batch 16 x 20 views) faster with huge pages on a 2-core AMD
EPYC Zen 5 (BENCHMARKS.md, "the VM takes freed memory back"; the whole quick-preset
command took 67-89 s either way, within that machine's noise).
"""

if __name__ == '__main__':  # first: glibc reads its tunables when a process starts
  from refine3d_jax import hostmem

  hostmem.tune_malloc()

import functools
import json
import os
import resource
import time
from typing import Any, Sequence

from absl import app, flags, logging
import jax
import jax.numpy as jnp
import ml_collections
from ml_collections import config_flags
import numpy as np
import tensorflow_datasets as tfds
import tqdm

from refine3d_jax import cli, eval_loop, eval_tables, input_pipeline, metrics, parallel
from refine3d_jax import protocols as protocols_lib
from refine3d_jax import steps, summary, timing, trained
from refine3d_jax.models import SUBTREES, Refine3DNet
from refine3d_jax.protocols import OUTPUTS


def category_names(data: ml_collections.ConfigDict) -> list[str]:
  """The dataset's category names, in label order."""
  path = input_pipeline.dataset_dir(data.dataset, data.builder_config, data.data_dir)
  return list(tfds.builder_from_directory(path).info.features['label'].names)


def score(
  outputs: dict[str, np.ndarray], names: Sequence[str], thresholds: Sequence[float]
) -> dict[str, Any]:
  """Per-output IoU and F-score summaries of one view count, from the valid examples'
  `iou_<output>` [N, T], `fscore_<output>` [N] and `label` [N] (see `batch_scores`)."""
  result = {}
  labels = outputs['label']
  for name in OUTPUTS:
    iou = metrics.summarize(outputs[f'iou_{name}'], labels, names)
    best = {
      avg: dict(zip(('value', 'threshold'), metrics.best_of(iou[avg], thresholds)))
      for avg in ('sample_weighted', 'class_mean')
    }
    fs = metrics.summarize(outputs[f'fscore_{name}'], labels, names)
    result[name] = {
      'iou': {
        'sample_weighted': iou['sample_weighted'],
        'class_mean': iou['class_mean'],
        'per_category': iou['per_category'],
        'best': best,
      },
      'fscore': {
        'sample_weighted': fs['sample_weighted'],
        'class_mean': fs['class_mean'],
        'per_category': fs['per_category'],
      },
    }
  return result


def batch_scores(
  out: dict[str, Any],
  counts: Sequence[int],
  fscore_threshold: float,
  fscore_distance: float,
  fscore: bool = True,
) -> dict[int, dict[str, np.ndarray]]:
  """{n: per-example numbers of count n} of one batch's valid rows, from steps.eval_step's
  `out` with `view_counts=counts`: `iou_<output>`, `fscore_<output>` (F-Score of the volume
  thresholded at `fscore_threshold`; each target's surface is sampled once for all counts
  and outputs, and the volumes are dropped here, so memory does not grow with the split)
  and `label`. `fscore=False`: F-scores are NaN (not computed)."""
  keep = out['valid']
  keys = [(n, name) for n in counts for name in OUTPUTS]
  targets = out['voxels'][keep]
  if fscore:
    volumes = {key: out['views'][str(key[0])][key[1]][keep] >= fscore_threshold for key in keys}
    fs = np.array(
      [
        metrics.fscore_many([volumes[key][i] for key in keys], target, fscore_distance)
        for i, target in enumerate(targets)
      ],
      np.float64,
    )
    fs = fs.reshape(len(targets), len(keys))
  else:
    fs = np.full((len(targets), len(keys)), np.nan)
  result = {}
  for n in counts:
    result[n] = {'label': out['label'][keep]}
    for name in OUTPUTS:
      result[n][f'iou_{name}'] = out['views'][str(n)][f'iou_{name}'][keep]
      result[n][f'fscore_{name}'] = fs[:, keys.index((n, name))]
  return result


def evaluate(
  config: ml_collections.ConfigDict,
  model: Refine3DNet,
  variables: dict[str, Any],
  split: str = 'test',
  progress: bool = True,
  fscore: bool = True,
) -> dict[str, Any]:
  """Scores of `variables` on `split` for every count of `config.eval.view_counts`:
  {'names', 'counts', 'views': {n: score(...)}, 'num_objects'}. Data-parallel over every
  device of every host (each host reads its shard; the outputs are gathered). Under the
  first-n protocol one pass encodes the largest count's views once and scores every count
  from them (steps.eval_step); the random protocol needs one pass per count. IoUs are at
  `eval_thresholds(config)`; `fscore=False` skips the F-scores (they read as NaN)."""
  mesh = parallel.make_mesh()
  variables = parallel.replicate(variables, mesh)
  thresholds = eval_thresholds(config)
  step_fn = jax.jit(
    functools.partial(steps.eval_step, model=model, thresholds=thresholds),
    static_argnames='view_counts',
    compiler_options=parallel.single_device_options() if mesh.size == 1 else None,
  )
  source = input_pipeline.open_source(config.data, split)
  names = category_names(config.data)
  fscore_args = float(config.eval.threshold), float(config.eval.fscore_distance)
  counts = tuple(int(n) for n in config.eval.view_counts)
  per_host = input_pipeline.per_host_batch(config.train.batch_size, jax.process_count())
  num_batches = -(-len(source) // (per_host * jax.process_count()))
  bar = tqdm.tqdm(
    total=num_batches * len(eval_loop.view_passes(config, counts)),
    desc=f'evaluate {split}',
    disable=not progress or jax.process_index() != 0,
  )
  gathered = {n: [] for n in counts}
  for pass_counts, batch, out in eval_loop.eval_outputs(
    config, split, step_fn, variables, mesh, source, counts
  ):
    bar.set_postfix(views=batch['images'].shape[1], refresh=False)
    for n, scores in batch_scores(out, pass_counts, *fscore_args, fscore).items():
      gathered[n].append(scores)
    bar.update()
  bar.close()
  by_views = {}
  for n in counts:
    outputs = {k: np.concatenate([g[k] for g in gathered[n]]) for k in gathered[n][0]}
    by_views[str(n)] = score(outputs, names, thresholds)
  labels = outputs['label']
  present = sorted(set(labels.tolist()))
  return dict(
    categories=[names[i] for i in present],
    counts={names[i]: int(np.sum(labels == i)) for i in present},
    num_objects=int(len(labels)),
    view_counts=list(counts),
    views=by_views,
  )


def eval_thresholds(config: ml_collections.ConfigDict) -> tuple[float, ...]:
  """config.eval.thresholds plus every threshold a protocol needs, sorted."""
  return tuple(sorted({float(t) for t in config.eval.thresholds} | set(protocols_lib.THRESHOLDS)))


def measure_cost(
  config: ml_collections.ConfigDict, model: Refine3DNet, variables: dict[str, Any], repeats: int = 5
) -> dict[str, Any]:
  """Parameters per subtree, forward time per object with 1 and 20 views and training-mode
  forward+backward time with 1 view (batch of 1, median of `repeats` after compilation
  and 3 untimed calls, first device), and peak memory (device statistics where the backend
  has them, else the process's peak RSS)."""
  params = variables['params']
  s = config.model.image_size
  device = jax.devices()[0]
  variables = jax.device_put(variables, device)
  voxels = jnp.zeros((1,) + (config.model.volume_size,) * 3, bool)

  def timed(fn, *args):  # compiled, then 3 untimed calls, as bench's latency
    jax.block_until_ready(fn(*args))
    return timing.median_time(lambda: fn(*args), repeats, warm=3) * 1e3

  options = parallel.single_device_options()
  forward = jax.jit(
    lambda v, x: model.apply(v, x, train=False)['refined'], compiler_options=options
  )
  backward = jax.jit(
    jax.grad(
      lambda p, x: steps.loss_fn(
        p, variables['batch_stats'], model, x, jnp.ones(x.shape[:2], bool), voxels
      )[0]
    ),
    compiler_options=options,
  )
  images = {n: jnp.zeros((1, n, s, s, 3), jnp.float32) for n in (1, 20)}
  result = dict(
    device=timing.device_name(device),
    params={
      **{k: summary.count_params(params[k]) for k in SUBTREES},
      'total': summary.count_params(params),
    },
    forward_ms_per_object={str(n): timed(forward, variables, x) for n, x in images.items()},
    backward_ms_per_object={'1': timed(backward, variables['params'], images[1])},
  )
  stats = device.memory_stats() if hasattr(device, 'memory_stats') else None
  if stats and 'peak_bytes_in_use' in stats:
    result['peak_memory_mb'] = stats['peak_bytes_in_use'] / 2**20
    result['memory_kind'] = 'device peak bytes in use'
  else:
    result['peak_memory_mb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result['memory_kind'] = 'process peak RSS (host)'
  return result


def run(
  workdir: str,
  which: str = 'best',
  split: str = 'test',
  out_dir: str | None = None,
  progress: bool = True,
  config: ml_collections.ConfigDict | None = None,
) -> dict[str, Any]:
  """Restores checkpoint `which` of `workdir` (with `config`, default the saved one),
  evaluates it (and, for `protocols`' val_selected, the validation split without
  F-scores), measures the cost and writes everything; returns results."""
  start = time.perf_counter()
  config, model, variables, step = trained.restore_trained(workdir, which, config)
  scores = evaluate(config, model, variables, split, progress)
  thresholds = list(eval_thresholds(config))
  if split == 'validation':
    validation = scores
  elif 'validation' in input_pipeline.split_names(config.data):
    validation = evaluate(config, model, variables, 'validation', progress, fscore=False)
  else:
    validation = None
  results = dict(
    dataset=config.data.dataset,
    builder_config=config.data.builder_config,
    split=split,
    synthetic=config.data.dataset == 'synthetic_shapes',
    checkpoint=dict(workdir=os.path.abspath(workdir), step=int(step), which=str(which)),
    protocol=dict(
      views=config.data.eval_views, seed=int(config.data.eval_seed), image=config.data.protocol
    ),
    thresholds=thresholds,
    fscore=dict(
      threshold=float(config.eval.threshold), distance=float(config.eval.fscore_distance)
    ),
    **scores,
    protocols=protocols_lib.report(scores, thresholds, validation),
  )
  if config.eval.measure_cost:
    results['cost'] = measure_cost(config, model, variables)
  results['config'] = json.loads(config.to_json_best_effort())
  results['seconds'] = time.perf_counter() - start
  if jax.process_index() == 0:
    out_dir = out_dir or os.path.join(workdir, 'eval')
    print(eval_tables.write_evaluation(results, out_dir))
    logging.info('Wrote %s', out_dir)
  return results


def main(argv: Sequence[str]) -> None:
  cli.no_arguments(argv)
  parallel.initialize()
  try:
    trained.parse_which(_CHECKPOINT.value)
  except ValueError as e:
    raise app.UsageError(f'--{e}') from None
  cli.check_local(_WORKDIR.value, '--workdir')
  cli.check_local(_OUT.value, '--out')
  run(_WORKDIR.value, _CHECKPOINT.value, _SPLIT.value, _OUT.value, config=_CONFIG.value)


if __name__ == '__main__':
  # Flags are defined only when run as a program, so importing this module (predict,
  # notebooks) defines none.
  _CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Experiment config (default: the one saved in the workdir).', lock_config=True
  )
  _WORKDIR = flags.DEFINE_string('workdir', None, 'Training workdir to evaluate.', required=True)
  _CHECKPOINT = flags.DEFINE_string('checkpoint', 'best', "'best', 'latest' or a step number.")
  _SPLIT = flags.DEFINE_string('split', 'test', 'Split to evaluate.')
  _OUT = flags.DEFINE_string('out', None, 'Output folder (default: <workdir>/eval).')
  cli.run(main)
