r"""Ablation: JTSO against end-to-end training, single-view and multi-view IoU of each.

  python experiments/ablation_jtso.py \
      --results=runs/jtso/eval/results.json,runs/end_to_end/eval/results.json \
      [--out=DIR] [--labels=JTSO,end-to-end] [--threshold=0.3]

Prints the markdown table and writes `ablation_jtso.md`, `.csv` and `.png` into --out
(default: the directory of the first results file). Row labels are each file's
`config.train.schedule` unless --labels is given. Refined output; IoU at the best threshold
of the evaluated set per cell, or at --threshold; sample-weighted and class-mean; with two
files, a difference row (first - second). Both files must come from the same evaluation
(dataset, split, views, thresholds). PROTOCOL.md publishes no ablation numbers.
"""

import os
import sys

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from experiments import common  # pylint: disable=g-import-not-at-top,wrong-import-position
from refine3d_jax import cli, plots, report, results  # pylint: disable=g-import-not-at-top,wrong-import-position

NAME = 'ablation_jtso'
common.define_flags(
  'Comma-separated row labels, one per results file (default: config.train.schedule).'
)
_THRESHOLD = common.define_threshold_flag()


def schedule_labels(runs: list[dict]) -> list[str]:
  """Each run's config.train.schedule; ResultsError naming the file and key when absent."""
  return [str(results.config_value(r, 'train.schedule')) for r in runs]


def view_columns(runs: list[dict]) -> list[int]:
  return sorted(set().union(*(r['view_counts'] for r in runs)))


def rows_of(run: dict, views: list[int], threshold) -> list[dict]:
  rows = []
  for avg in results.AVERAGING:
    cells = {n: results.iou(run, n, 'refined', avg, threshold) for n in views}
    rows.append(
      {
        'method': run['_label'],
        'schedule': _schedule(run),
        'step': run['checkpoint']['step'],
        'averaging': avg,
        **{f'views_{n}': v for n, (v, _) in cells.items()},
        **{f't_{n}': t for n, (_, t) in cells.items()},
      }
    )
  return rows


def _schedule(run: dict):
  try:
    return results.config_value(run, 'train.schedule')
  except results.ResultsError:
    return None


def difference_rows(rows: list[dict], views: list[int]) -> list[dict]:
  """first - second run, per averaging, where both evaluated the view count."""
  out = []
  for avg in results.AVERAGING:
    a, b = [r for r in rows if r['averaging'] == avg]
    out.append(
      {
        'method': f'{a["method"]} - {b["method"]}',
        'averaging': avg,
        **{
          f'views_{n}': (
            None
            if a[f'views_{n}'] is None or b[f'views_{n}'] is None
            else a[f'views_{n}'] - b[f'views_{n}']
          )
          for n in views
        },
      }
    )
  return out


def build(runs: list[dict], threshold=None) -> tuple[str, list[str], list[dict]]:
  """(markdown, CSV columns, CSV rows)."""
  views = view_columns(runs)
  rows = [r for run in runs for r in rows_of(run, views, threshold)]
  if len(runs) == 2:
    rows += difference_rows(rows, views)
  table = report.markdown_table(
    [
      'method',
      'schedule',
      'step',
      'averaging',
      *(f'{n} view' + ('s' if n > 1 else '') for n in views),
    ],
    [
      [
        r['method'],
        r.get('schedule') or '-',
        r.get('step', '-'),
        results.AVERAGING_SHORT[r['averaging']],
        *(report.fmt(r[f'views_{n}']) for n in views),
      ]
      for r in rows
    ],
  )
  cap = results.caption(
    runs,
    '**Ablation.** JTSO against end-to-end training: single-view and multi-view IoU, '
    'refined output.',
    threshold=results.iou_threshold_text(runs[0], threshold),
    averaging=(
      'per row: sample-weighted over all test objects, or class mean (unweighted '
      'mean of the category means)'
    ),
  )
  notes = [
    f"'-': view count not evaluated for that run. {common.PROTOCOL} publishes no ablation numbers."
  ]
  columns = [
    'method',
    'schedule',
    'step',
    'averaging',
    *(f'views_{n}' for n in views),
    *(f't_{n}' for n in views),
  ]
  return report.document((cap, table, notes)), columns, rows


def plot(runs: list[dict], out_dir: str, threshold=None) -> str:
  """IoU against views per run: sample-weighted (solid) and class mean (dashed)."""
  fig, ax = plt.subplots(figsize=(7, 4))
  for run, color in zip(runs, common.RUN_COLORS * len(runs)):
    ns = sorted(run['view_counts'])
    for avg, ls in (('sample_weighted', '-'), ('class_mean', '--')):
      ax.plot(
        ns,
        [results.iou(run, n, 'refined', avg, threshold)[0] for n in ns],
        ls=ls,
        marker='o',
        color=color,
        label=f'{run["_label"]} ({results.AVERAGING_SHORT[avg]})',
      )
  t = 'best t' if threshold is None else f't = {threshold:g}'
  ax.set(
    xlabel='views',
    ylabel=f'IoU, refined ({t})',
    xticks=view_columns(runs),
    title=results.figure_title(runs, 'JTSO ablation: IoU against the number of views'),
  )
  return plots.finish_figure(fig, ax, out_dir, NAME)


def main(argv):
  del argv
  common.run_script(NAME, build, plot, default=schedule_labels, threshold=_THRESHOLD.value)


if __name__ == '__main__':
  cli.run(main)
