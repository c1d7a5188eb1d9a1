"""results.json: its schema, loading and checks, accessors and captions.

`evaluate` writes `<workdir>/eval/results.json` (`eval_tables.write_evaluation`); the
experiments' scripts read it (`load_results`). Its keys (`n`: a view count as a string,
`output`: one of protocols.OUTPUTS, `avg`: one of AVERAGING, `[T]`: one value per threshold):

  dataset, builder_config, split   the data evaluated; synthetic: True for synthetic_shapes
  checkpoint                       {workdir (absolute), step, which: best|latest|STEP}
  protocol                         {views: first_n|random, seed, image: data.protocol}
  thresholds                       the IoU thresholds evaluated, sorted
  fscore                           {threshold: occupancy threshold, distance: of the side}
  categories, counts, num_objects  the categories present, objects of each, all objects
  view_counts                      the view counts evaluated (ints)
  views.n.output.iou               {sample_weighted [T], class_mean [T], per_category
                                    {category: [T]}, best {avg: {value, threshold}}}
  views.n.output.fscore            {sample_weighted, class_mean, per_category {category}}
  protocols (optional)             protocols.report: per name {note, averaging, views:
                                    {n: {output: {iou, threshold}}} or None and missing}
  cost (optional)                  evaluate.measure_cost: {device, params {encoder,
                                    attention, decoder, refiner, total},
                                    forward_ms_per_object {n}, backward_ms_per_object {n},
                                    peak_memory_mb and memory_kind (optional)}
  config, seconds                  the resolved config; the evaluation's wall time

`validate` checks every key the readers use and names the file and the missing key.
Captions state the data, split, view protocol, thresholds, averaging and checkpoint.
"""

import json
import os
from typing import Any, Sequence

from refine3d_jax import errors
from refine3d_jax.protocols import OUTPUTS

SYNTHETIC_WARNING = 'SYNTHETIC data, not ShapeNet: not comparable with published numbers'
AVERAGING = {
  'sample_weighted': 'sample-weighted mean over all test objects',
  'class_mean': 'class-mean (unweighted mean of the per-category means)',
}
AVERAGING_SHORT = {'sample_weighted': 'sample-weighted', 'class_mean': 'class mean'}
_REQUIRED = (
  'dataset',
  'builder_config',
  'split',
  'synthetic',
  'num_objects',
  'checkpoint.step',
  'checkpoint.which',
  'checkpoint.workdir',
  'protocol.views',
  'protocol.seed',
  'protocol.image',
  'thresholds',
  'fscore.threshold',
  'fscore.distance',
  'categories',
  'counts',
  'view_counts',
  'views',
)
_COST = (
  'device',
  'params.encoder',
  'params.attention',
  'params.decoder',
  'params.refiner',
  'params.total',
  'forward_ms_per_object',
  'backward_ms_per_object',
)
# What two runs must share to stand in one table.
_SETUP_KEYS = (
  'dataset',
  'builder_config',
  'split',
  'synthetic',
  'num_objects',
  'protocol',
  'thresholds',
  'fscore',
  'categories',
)


class ResultsError(errors.UserError, ValueError):
  """A results.json that lacks a key the scripts read, or runs that cannot share a table."""


def _get(tree: Any, path: str, keys: Sequence[str]) -> Any:
  node = tree
  for i, key in enumerate(keys):
    if not isinstance(node, dict) or key not in node:
      raise ResultsError(f"{path}: missing key '{'.'.join(keys[: i + 1])}'")
    node = node[key]
  return node


def _require(tree: dict, path: str, dotted: str, length: int | None = None) -> Any:
  value = _get(tree, path, dotted.split('.'))
  if length is not None and (not isinstance(value, list) or len(value) != length):
    got = len(value) if isinstance(value, list) else type(value).__name__
    raise ResultsError(
      f"{path}: '{dotted}' must be a list of {length} values (one per threshold), got {got}"
    )
  return value


def validate(results: dict, path: str) -> dict:
  """`results` if it has every key the scripts read; else ResultsError naming path and key."""
  for key in _REQUIRED:
    _require(results, path, key)
  num_t = len(results['thresholds'])
  for c in results['categories']:
    _require(results, path, f'counts.{c}')
  for n in results['view_counts']:
    for output in OUTPUTS:
      base = f'views.{n}.{output}'
      for avg in AVERAGING:
        _require(results, path, f'{base}.iou.{avg}', num_t)
        _require(results, path, f'{base}.iou.best.{avg}.value')
        _require(results, path, f'{base}.iou.best.{avg}.threshold')
        _require(results, path, f'{base}.fscore.{avg}')
      for c in results['categories']:
        _require(results, path, f'{base}.iou.per_category.{c}', num_t)
        _require(results, path, f'{base}.fscore.per_category.{c}')
  if 'cost' in results:  # optional as a whole; peak_memory_mb optional inside it
    for key in _COST:
      _require(results, path, f'cost.{key}')
  return results


def load_results(path: str) -> dict:
  """The validated results.json at `path`, with its path under '_path'."""
  try:
    with open(path) as f:
      results = json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise ResultsError(f'{path}: cannot read results.json: {e}') from e
  if not isinstance(results, dict):
    raise ResultsError(f'{path}: not a JSON object')
  return {**validate(results, path), '_path': path}


def check_comparable(runs: Sequence[dict]) -> None:
  """Raise ResultsError unless all runs were evaluated on the same data the same way."""
  for run in runs[1:]:
    for key in _SETUP_KEYS:
      if run[key] != runs[0][key]:
        raise ResultsError(
          f"{run['_path']} and {runs[0]['_path']} differ in '{key}' ({run[key]!r} vs "
          f'{runs[0][key]!r}): one table cannot compare them'
        )


def require_views(run: dict, views: int) -> None:
  """ResultsError unless the run evaluated `views` views."""
  if views not in run['view_counts']:
    raise ResultsError(
      f'{run["_path"]}: no {views}-view results (view_counts: {run["view_counts"]})'
    )


def config_value(run: dict, dotted: str) -> Any:
  """A value of the run's training config, nested (`train: {schedule}`) or a flat key."""
  config = _require(run, run['_path'], 'config')
  if dotted in config:
    return config[dotted]
  try:
    return _get(config, run['_path'], dotted.split('.'))
  except ResultsError:
    raise ResultsError(f"{run['_path']}: missing key 'config.{dotted}'") from None


def threshold_index(run: dict, threshold: float) -> int:
  """The index of `threshold` in the run's thresholds; ResultsError when not evaluated."""
  for i, t in enumerate(run['thresholds']):
    if abs(t - threshold) < 1e-9:
      return i
  raise ResultsError(
    f'{run["_path"]}: threshold {threshold} was not evaluated (thresholds: {run["thresholds"]})'
  )


def iou(
  run: dict,
  views: int,
  output: str = 'refined',
  averaging: str = 'sample_weighted',
  threshold: float | None = None,
) -> tuple[float | None, float | None]:
  """(IoU, threshold): at `threshold`, or the best of the set when None; (None, None) for a
  view count the run did not evaluate."""
  if views not in run['view_counts']:
    return None, None
  section = run['views'][str(views)][output]['iou']
  if threshold is None:
    best = section['best'][averaging]
    return best['value'], best['threshold']
  return section[averaging][threshold_index(run, threshold)], threshold


def fscore(
  run: dict, views: int, output: str = 'refined', averaging: str = 'sample_weighted'
) -> float | None:
  """The F-score; None for a view count the run did not evaluate."""
  if views not in run['view_counts']:
    return None
  return run['views'][str(views)][output]['fscore'][averaging]


def short_path(path: str, parts: int = 2) -> str:
  """The last `parts` components of `path`, for captions: committed tables should not
  carry the absolute path of the machine they were made on (results.json keeps it)."""
  return '/'.join(os.path.normpath(path).split(os.sep)[-parts:])


def views_text(protocol: dict) -> str:
  """The view protocol in words."""
  return {
    'first_n': 'first n views (00..n-1)',
    'random': f'n random views (seed {protocol["seed"]})',
  }.get(protocol['views'], protocol['views'])


def thresholds_text(run: dict) -> str:
  return '{' + ', '.join(f'{t:g}' for t in run['thresholds']) + '}'


def iou_threshold_text(run: dict, threshold: float | None) -> str:
  if threshold is None:
    return f'best of {thresholds_text(run)} per cell (chosen thresholds in the CSV)'
  return f't = {threshold:g}, one of the evaluated set {thresholds_text(run)}'


def dataset_text(run: dict) -> str:
  name = {
    'shapenet_r2n2': 'ShapeNet (3D-R2N2 renderings, 32³ voxels)',
    'shapenet_vox': 'ShapeNet shapes (ShapeNetVox32 grids rendered by refine3d_jax)',
    'synthetic_shapes': 'synthetic shapes',
  }.get(run['dataset'], run['dataset'])
  config = f", builder config '{run['builder_config']}'" if run['builder_config'] else ''
  return f'{name} (`{run["dataset"]}`{config})'


def checkpoint_text(runs: Sequence[dict]) -> str:
  return '; '.join(
    f'{r["_label"]}: step {r["checkpoint"]["step"]} ({r["checkpoint"]["which"]} '
    f'checkpoint of `{short_path(r["checkpoint"]["workdir"])}`)'
    for r in runs
  )


def caption(runs: Sequence[dict], title: str, *, threshold: str, averaging: str) -> str:
  """The caption of a table of labelled runs: what, data, split, views, threshold,
  averaging, step."""
  r = runs[0]
  parts = [title]
  if r['synthetic']:
    parts.append(f'**{SYNTHETIC_WARNING}.**')
  parts += [
    f'Data: {dataset_text(r)}, split `{r["split"]}`, {r["num_objects"]} objects.',
    f'Views: {views_text(r["protocol"])}, `{r["protocol"]["views"]}`; images '
    f'`{r["protocol"]["image"]}`.',
    f'Threshold: {threshold}.',
    f'Averaging: {averaging}.',
    f'Checkpoint: {checkpoint_text(runs)}.',
  ]
  return ' '.join(parts)


def eval_caption(results: dict[str, Any]) -> str:
  """The caption of evaluate's own tables: how one run's numbers were made."""
  p, config = results['protocol'], results['builder_config']
  data = f'{results["dataset"]}{"/" + config if config else ""}'
  if results['synthetic']:
    data += f' ({SYNTHETIC_WARNING})'
  return (
    f'{data}, {results["split"]} split, {results["num_objects"]} objects; '
    f'{views_text(p)}, images {p["image"]}; IoU thresholds {results["thresholds"]} '
    f'(best = the best of the set per view count); F-Score@'
    f'{results["fscore"]["distance"]:.0%} at t = {results["fscore"]["threshold"]}; '
    f'checkpoint step {results["checkpoint"]["step"]} ({results["checkpoint"]["which"]}) '
    f'of {short_path(results["checkpoint"]["workdir"])}.'
  )


def figure_title(runs: Sequence[dict], what: str) -> str:
  r = runs[0]
  title = f'{what}\n{r["dataset"]}, {r["split"]}, {r["protocol"]["views"]} views'
  return title + ('\n' + SYNTHETIC_WARNING if r['synthetic'] else '')
