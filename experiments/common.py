"""Shared by the paper-table scripts: results.json loading, captions, tables, published numbers.

A results.json is what `refine3d_jax/evaluate.py` writes to `<workdir>/eval/results.json`.
`load_results` checks every key the scripts read and names the file and the missing key;
`caption` states the dataset, split, view protocol, threshold(s), averaging and checkpoint
step; `write_outputs` prints the markdown and writes `<name>.md` and `<name>.csv`.
Markdown cells without a source are '-'; CSV cells without one are empty.
"""

import csv
import json
import os
from typing import Any, Iterable, Optional, Sequence

from absl import flags

from refine3d_jax import errors, report
from refine3d_jax.protocols import OUTPUTS

PROTOCOL = '../shared/PROTOCOL.md'
STANDARD_VIEWS = (1, 2, 3, 4, 5, 8, 12, 16, 20)
SYNTHETIC_WARNING = 'SYNTHETIC data, not ShapeNet: not comparable with published numbers'
RUN_COLORS = ['black', 'firebrick', 'navy', 'darkgreen']  # ours; the peers get tab20
AVERAGING = {'sample_weighted': 'sample-weighted mean over all test objects',
             'class_mean': 'class-mean (unweighted mean of the per-category means)'}
AVERAGING_SHORT = {'sample_weighted': 'sample-weighted', 'class_mean': 'class mean'}

# Transcribed from ../shared/PROTOCOL.md, "Best published results (mean IoU, / F-Score@1%
# where reported)": {method: {views: value}}. A view count absent from a row is '-' there.
PUBLISHED_IOU = {
    '3D-R2N2': {1: .560, 2: .603, 3: .617, 4: .625, 5: .634, 8: .635, 12: .636, 16: .636,
                20: .636},
    'AttSets': {1: .642, 2: .662, 3: .670, 4: .675, 5: .677, 8: .685, 12: .688, 16: .692,
                20: .693},
    'Pix2Vox-A': {1: .661, 2: .686, 3: .693, 4: .697, 5: .699, 8: .702, 12: .704},
    'Pix2Vox++/A': {1: .670, 2: .695, 3: .704, 4: .708, 5: .711, 8: .715, 12: .717, 16: .718,
                    20: .719},
    'EVolT': {4: .609, 8: .698, 12: .720, 16: .729, 20: .735},
    '3D-RETR': {1: .680, 2: .701, 3: .716, 4: .725, 5: .736, 8: .739, 12: .747, 16: .755,
                20: .757},
    'UMIFormer': {1: .680, 2: .738, 3: .752, 4: .757, 5: .761, 8: .766, 12: .768, 16: .770,
                  20: .770},
    'LRGT': {1: .696, 2: .746, 3: .759, 4: .765, 5: .769, 8: .774, 12: .777, 16: .778,
             20: .779},
    'LRGT+': {1: .585, 2: .715, 3: .748, 4: .763, 5: .772, 8: .783, 12: .789, 16: .791,
              20: .792},
    # Row "Refine3DNet (paper, t=0.25)": the paper's own view counts, 15 and 18 from the
    # note under PROTOCOL.md's table.
    'Refine3DNet': {1: .689, 3: .698, 5: .706, 8: .713, 12: .721, 15: .727, 18: .730,
                    20: .733},
}
PUBLISHED_FSCORE = {
    'Pix2Vox++/A': {1: .436, 2: .452, 3: .455, 4: .457, 5: .458, 8: .459, 12: .460, 16: .461,
                    20: .462},
    'EVolT': {4: .358, 8: .448, 12: .475, 16: .486, 20: .492},
    'UMIFormer': {1: .428, 2: .492, 3: .507, 4: .513, 5: .517, 8: .521, 12: .523, 16: .525,
                  20: .525},
    'LRGT': {1: .446, 2: .501, 3: .515, 4: .521, 5: .526, 8: .531, 12: .534, 16: .535,
             20: .535},
    'LRGT+': {1: .338, 2: .462, 3: .499, 4: .516, 5: .527, 8: .540, 12: .547, 16: .550,
              20: .551},
}
# How each row was measured, as far as PROTOCOL.md ("Evaluation protocols", notes) says.
_FIRST_N_BEST = 'sample-weighted mean at the best of several thresholds; first n views'
PUBLISHED_NOTES = {
    '3D-R2N2': 'after its paper as quoted by later work; averaging not stated in PROTOCOL.md',
    'AttSets': ('after its paper as quoted by later work; its single-view score averages all '
                '24 views'),
    'Pix2Vox-A': ('sample-weighted mean at the best of t = 0.2/0.3/0.4/0.5; first n views '
                  '(its released weights reproduce its per-class table at t = 0.3)'),
    'Pix2Vox++/A': 'averaging and views not stated in PROTOCOL.md',
    'EVolT': 'averaging and views not stated in PROTOCOL.md; no 1- to 3- or 5-view values',
    '3D-RETR': 'unweighted mean of class means at t = 0.5; first n views',
    'UMIFormer': _FIRST_N_BEST,
    'LRGT': _FIRST_N_BEST,
    'LRGT+': 'averaging and views not stated in PROTOCOL.md',
    'Refine3DNet': ('the paper, at t = 0.25; it also lists 15 and 18 views (.727, .730); '
                    'its own Table 2 peer rows have known errors and are not used here'),
}
# Transcribed from ../shared/PROTOCOL.md, "Cost figures published (Pix2Vox's table, GPU)".
# PROTOCOL.md states neither the batch size nor the view count of the times.
PUBLISHED_COST = [
    {'method': '3D-R2N2', 'params_m': 35.97, 'peak_memory_mb': 1407},
    {'method': 'Pix2Vox-F', 'params_m': 7.41, 'peak_memory_mb': 673, 'forward_ms': 9.25},
    {'method': 'Pix2Vox-A', 'params_m': 114.24, 'peak_memory_mb': 2729},
    {'method': 'EVolT', 'params_m': 29.03},
    {'method': 'Refine3DNet', 'params_m': 143, 'peak_memory_mb': 2900, 'backward_ms': 78,
     'training': '24 h'},  # 143M "as stated" by the paper
]


class ResultsError(errors.UserError, ValueError):
  """A results.json that lacks a key the scripts read, or runs that cannot share a table."""


def define_flags(labels_help: str = 'Comma-separated row labels, one per results file '
                 '(default: "ours", or workdir@step when several).'):
  """The flags every script takes: (--results, --out, --labels) holders."""
  return (flags.DEFINE_list('results', None, 'results.json file(s) written by evaluate.',
                            required=True),
          flags.DEFINE_string('out', None, 'Output directory (default: the directory of the '
                              'first results file).'),
          flags.DEFINE_list('labels', None, labels_help))


def define_threshold_flag():
  """--threshold: one IoU threshold of the evaluated set instead of the best of the set."""
  return flags.DEFINE_float('threshold', None, 'IoU at this threshold, one of those evaluated '
                            '(default: the best of the evaluated set, per cell).')


def _get(tree: Any, path: str, keys: Sequence[str]) -> Any:
  node = tree
  for i, key in enumerate(keys):
    if not isinstance(node, dict) or key not in node:
      raise ResultsError(f"{path}: missing key '{'.'.join(keys[:i + 1])}'")
    node = node[key]
  return node


def _require(tree: dict, path: str, dotted: str, length: Optional[int] = None) -> Any:
  value = _get(tree, path, dotted.split('.'))
  if length is not None and (not isinstance(value, list) or len(value) != length):
    got = len(value) if isinstance(value, list) else type(value).__name__
    raise ResultsError(f"{path}: '{dotted}' must be a list of {length} values (one per "
                       f'threshold), got {got}')
  return value


def validate(results: dict, path: str) -> dict:
  """`results` if it has every key the scripts read; else ResultsError naming path and key."""
  for key in ('dataset', 'builder_config', 'split', 'synthetic', 'num_objects',
              'checkpoint.step', 'checkpoint.which', 'checkpoint.workdir', 'protocol.views',
              'protocol.seed', 'protocol.image', 'thresholds', 'fscore.threshold',
              'fscore.distance', 'categories', 'counts', 'view_counts', 'views'):
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
    for key in ('device', 'params.encoder', 'params.attention', 'params.decoder',
                'params.refiner', 'params.total', 'forward_ms_per_object',
                'backward_ms_per_object'):
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


_SETUP_KEYS = ('dataset', 'builder_config', 'split', 'synthetic', 'num_objects', 'protocol',
               'thresholds', 'fscore', 'categories')


def check_comparable(runs: Sequence[dict]) -> None:
  """Raise ResultsError unless all runs were evaluated on the same data the same way."""
  for run in runs[1:]:
    for key in _SETUP_KEYS:
      if run[key] != runs[0][key]:
        raise ResultsError(
            f"{run['_path']} and {runs[0]['_path']} differ in '{key}' ({run[key]!r} vs "
            f'{runs[0][key]!r}): one table cannot compare them')


def default_labels(runs: Sequence[dict]) -> list[str]:
  if len(runs) == 1:
    return ['ours']
  return [f"ours: {os.path.basename(os.path.normpath(r['checkpoint']['workdir']))}"
          f"@{r['checkpoint']['step']}" for r in runs]


def load_runs(paths: Sequence[str], labels: Optional[Sequence[str]] = None,
              default=default_labels) -> list[dict]:
  """Validated, mutually comparable runs, each with its row label under '_label'."""
  if not paths:
    raise ResultsError('no results.json given (--results)')
  runs = [load_results(p) for p in paths]
  check_comparable(runs)
  if labels is not None and len(labels) != len(runs):
    raise ResultsError(f'{len(labels)} labels for {len(runs)} results files')
  labels = list(labels) if labels is not None else default(runs)
  if len(set(labels)) < len(labels):
    raise ResultsError(f"{', '.join(paths)}: rows would share a label ({labels}); name "
                       'them with --labels')
  return [{**r, '_label': label} for r, label in zip(runs, labels)]


def require_views(run: dict, views: int) -> None:
  if views not in run['view_counts']:
    raise ResultsError(f"{run['_path']}: no {views}-view results (view_counts: "
                       f"{run['view_counts']})")


def run_script(name: str, build, paths: Sequence[str], out: Optional[str],
               labels: Optional[Sequence[str]] = None, plot=None,
               default=default_labels) -> None:
  """Load the runs, print build(runs)'s markdown, write `<name>.md/.csv` and plot's PNG.

  build(runs) -> (markdown, CSV columns, CSV rows); plot(runs, out_dir) -> PNG path. A
  wrong results file exits with the error's message, no traceback.
  """
  try:
    runs = load_runs(paths, labels, default)
    markdown, columns, rows = build(runs)
  except ResultsError as e:
    raise SystemExit(f'error: {e}') from e
  out_dir = output_dir(out, paths)
  written = write_outputs(out_dir, name, markdown, columns, rows)
  if plot is not None:
    written.append(plot(runs, out_dir))
  for path in written:
    print(f'wrote {path}')


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
  for i, t in enumerate(run['thresholds']):
    if abs(t - threshold) < 1e-9:
      return i
  raise ResultsError(f"{run['_path']}: threshold {threshold} was not evaluated "
                     f"(thresholds: {run['thresholds']})")


def iou(run: dict, views: int, output: str = 'refined', averaging: str = 'sample_weighted',
        threshold: Optional[float] = None) -> tuple[Optional[float], Optional[float]]:
  """(IoU, threshold): at `threshold`, or the best of the set when None; (None, None) for a
  view count the run did not evaluate."""
  if views not in run['view_counts']:
    return None, None
  section = run['views'][str(views)][output]['iou']
  if threshold is None:
    best = section['best'][averaging]
    return best['value'], best['threshold']
  return section[averaging][threshold_index(run, threshold)], threshold


def fscore(run: dict, views: int, output: str = 'refined',
           averaging: str = 'sample_weighted') -> Optional[float]:
  if views not in run['view_counts']:
    return None
  return run['views'][str(views)][output]['fscore'][averaging]


def fmt(value: Optional[float], digits: int = 3) -> str:
  """A markdown cell: the value to `digits` decimals, '-' when there is none."""
  return '-' if value is None else f'{value:.{digits}f}'


def csv_value(value: Any) -> Any:
  """A CSV cell: floats to 6 decimals, '' when there is none."""
  if value is None:
    return ''
  return round(value, 6) if isinstance(value, float) else value


def thresholds_text(run: dict) -> str:
  return '{' + ', '.join(f'{t:g}' for t in run['thresholds']) + '}'


def iou_threshold_text(run: dict, threshold: Optional[float]) -> str:
  if threshold is None:
    return f'best of {thresholds_text(run)} per cell (chosen thresholds in the CSV)'
  return f't = {threshold:g}, one of the evaluated set {thresholds_text(run)}'


def dataset_text(run: dict) -> str:
  name = {'shapenet_r2n2': 'ShapeNet (3D-R2N2 renderings, 32³ voxels)',
          'shapenet_vox': 'ShapeNet shapes (ShapeNetVox32 grids rendered by refine3d_jax)',
          'synthetic_shapes': 'synthetic shapes'}.get(run['dataset'], run['dataset'])
  config = f", builder config '{run['builder_config']}'" if run['builder_config'] else ''
  return f"{name} (`{run['dataset']}`{config})"


def protocol_text(run: dict) -> str:
  p = run['protocol']
  views = {'first_n': 'first n views (00..n-1)',
           'random': f"n random views (seed {p['seed']})"}.get(p['views'], p['views'])
  return f"{views}, `{p['views']}`; images `{p['image']}`"


def checkpoint_text(runs: Sequence[dict]) -> str:
  parts = [f"{r['_label']}: step {r['checkpoint']['step']} ({r['checkpoint']['which']} "
           f"checkpoint of `{report.short_path(r['checkpoint']['workdir'])}`)" for r in runs]
  return '; '.join(parts)


def caption(runs: Sequence[dict], title: str, *, threshold: str, averaging: str) -> str:
  """The caption every table carries: what, data, split, views, threshold, averaging, step."""
  r = runs[0]
  parts = [title]
  if r['synthetic']:
    parts.append(f'**{SYNTHETIC_WARNING}.**')
  parts += [f"Data: {dataset_text(r)}, split `{r['split']}`, {r['num_objects']} objects.",
            f'Views: {protocol_text(r)}.',
            f'Threshold: {threshold}.',
            f'Averaging: {averaging}.',
            f'Checkpoint: {checkpoint_text(runs)}.']
  return ' '.join(parts)


def figure_title(runs: Sequence[dict], what: str) -> str:
  r = runs[0]
  title = f"{what}\n{r['dataset']}, {r['split']}, {r['protocol']['views']} views"
  return title + ('\n' + SYNTHETIC_WARNING if r['synthetic'] else '')


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
  return report.markdown_table(header, list(rows)).rstrip('\n')


def document(*sections: tuple[str, str, Sequence[str]]) -> str:
  """Markdown of (caption, table, notes) sections, notes as a list under each table."""
  out = []
  for cap, table, notes in sections:
    out += [cap, '', table, '']
    if notes:
      out += [f'- {n}' for n in notes] + ['']
  return '\n'.join(out)


def published_notes(methods: Iterable[str]) -> list[str]:
  return [f"{m} (published, {PROTOCOL}): {PUBLISHED_NOTES[m]}." for m in methods]


def output_dir(out: Optional[str], paths: Sequence[str]) -> str:
  out = out or os.path.dirname(os.path.abspath(paths[0]))
  os.makedirs(out, exist_ok=True)
  return out


def write_csv(path: str, columns: Sequence[str], rows: Iterable[dict]) -> None:
  with report.atomic_write(path) as f:
    writer = csv.DictWriter(f, fieldnames=list(columns))
    writer.writeheader()
    for row in rows:
      writer.writerow({k: csv_value(row.get(k)) for k in columns})


def write_outputs(out_dir: str, name: str, markdown: str, columns: Sequence[str],
                  rows: Iterable[dict]) -> list[str]:
  """Print the markdown; write `<name>.md` and `<name>.csv` into out_dir; their paths."""
  print(markdown)
  md, table = os.path.join(out_dir, name + '.md'), os.path.join(out_dir, name + '.csv')
  with report.atomic_write(md) as f:
    f.write(markdown)
  write_csv(table, columns, rows)
  return [md, table]


def finish_figure(fig, ax, out_dir: str, name: str) -> str:
  """Grid and legend on `ax`, then `<out_dir>/<name>.png`; closes the figure, returns the path."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  path = save_figure(fig, out_dir, name)
  plt.close(fig)
  return path


def save_figure(fig, out_dir: str, name: str) -> str:
  path = os.path.join(out_dir, name + '.png')
  report.save_figure(fig, path)
  return path
