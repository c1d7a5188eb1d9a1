r"""Figure 7: IoU of the coarse (decoder) and refined (refiner) volumes against the views.

  python experiments/figure7_refiner.py --results=runs/paper/eval/results.json \
      [--out=DIR] [--labels=ours] [--threshold=0.3]

Prints the markdown table and writes `figure7_refiner.md`, `.csv` and `.png` into --out
(default: the directory of the first results file). IoU at the best threshold of the
evaluated set per cell, or at --threshold; sample-weighted and class-mean; F-Score@1% of
both volumes beside. PROTOCOL.md publishes no coarse/refined numbers to compare with.
"""

import os
import sys

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from experiments import common  # pylint: disable=g-import-not-at-top,wrong-import-position
from refine3d_jax import cli, plots, report, results  # pylint: disable=g-import-not-at-top,wrong-import-position

NAME = 'figure7_refiner'
common.define_flags()
_THRESHOLD = common.define_threshold_flag()
COLUMNS = [
  'method',
  'views',
  'averaging',
  'coarse_iou',
  'coarse_threshold',
  'refined_iou',
  'refined_threshold',
  'gain',
  'coarse_fscore',
  'refined_fscore',
  'fscore_threshold',
]


def rows_of(run: dict, threshold) -> list[dict]:
  """Per view count and averaging: coarse and refined IoU (and thresholds), gain, F-scores."""
  rows = []
  for n in sorted(run['view_counts']):
    for avg in results.AVERAGING:
      coarse, t_coarse = results.iou(run, n, 'coarse', avg, threshold)
      refined, t_refined = results.iou(run, n, 'refined', avg, threshold)
      rows.append(
        {
          'method': run['_label'],
          'views': n,
          'averaging': avg,
          'coarse_iou': coarse,
          'coarse_threshold': t_coarse,
          'refined_iou': refined,
          'refined_threshold': t_refined,
          'gain': None if None in (refined, coarse) else refined - coarse,
          'coarse_fscore': results.fscore(run, n, 'coarse', avg),
          'refined_fscore': results.fscore(run, n, 'refined', avg),
          'fscore_threshold': run['fscore']['threshold'],
        }
      )
  return rows


def build(runs: list[dict], threshold=None) -> tuple[str, list[str], list[dict]]:
  """(markdown, CSV columns, CSV rows)."""
  rows = [r for run in runs for r in rows_of(run, threshold)]
  by_key = {(r['method'], r['views'], r['averaging']): r for r in rows}
  table_rows = []
  for run in runs:
    for n in sorted(run['view_counts']):
      sw, cm = by_key[run['_label'], n, 'sample_weighted'], by_key[run['_label'], n, 'class_mean']
      table_rows.append(
        [
          run['_label'],
          n,
          *(report.fmt(sw[k]) for k in ('coarse_iou', 'refined_iou', 'gain')),
          *(report.fmt(cm[k]) for k in ('coarse_iou', 'refined_iou', 'gain')),
          report.fmt(sw['coarse_fscore']),
          report.fmt(sw['refined_fscore']),
        ]
      )
  table = report.markdown_table(
    [
      'method',
      'views',
      'coarse',
      'refined',
      'gain',
      'coarse (class mean)',
      'refined (class mean)',
      'gain (class mean)',
      'F coarse',
      'F refined',
    ],
    table_rows,
  )
  f = runs[0]['fscore']
  cap = results.caption(
    runs,
    '**Figure 7.** IoU of the coarse and the refined volume against the number of '
    'views; gain = refined - coarse.',
    threshold=(
      f'IoU: {results.iou_threshold_text(runs[0], threshold)}; F-Score@'
      f'{f["distance"]:.0%}: t = {f["threshold"]:g}'
    ),
    averaging=(
      'coarse, refined, gain and F: sample-weighted over all test objects; '
      '"(class mean)": unweighted mean of the category means'
    ),
  )
  notes = [f'{common.PROTOCOL} publishes no coarse/refined IoU: nothing published to compare.']
  return report.document((cap, table, notes)), COLUMNS, rows


def plot(runs: list[dict], out_dir: str, threshold=None) -> str:
  """Coarse (dashed) and refined (solid) IoU against views, one panel per averaging."""
  fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
  for ax, (avg, what) in zip(axes, results.AVERAGING_SHORT.items()):
    for run, color in zip(runs, common.RUN_COLORS * len(runs)):
      ns = sorted(run['view_counts'])
      for output, ls, mfc in (('refined', '-', color), ('coarse', '--', 'none')):
        ax.plot(
          ns,
          [results.iou(run, n, output, avg, threshold)[0] for n in ns],
          ls=ls,
          marker='o',
          mfc=mfc,
          color=color,
          label=f'{run["_label"]}, {output}',
        )
    ax.set(
      xlabel='views', xticks=sorted(set().union(*(r['view_counts'] for r in runs))), title=what
    )
    ax.grid(alpha=0.3)
  t = 'best t' if threshold is None else f't = {threshold:g}'
  axes[0].set_ylabel(f'IoU ({t})')
  axes[0].legend(fontsize=8)
  fig.suptitle(
    results.figure_title(runs, 'Coarse and refined IoU against the number of views'), fontsize=10
  )
  fig.tight_layout()
  path = plots.save_png(fig, out_dir, NAME)
  plt.close(fig)
  return path


def main(argv):
  del argv
  common.run_script(NAME, build, plot, threshold=_THRESHOLD.value)


if __name__ == '__main__':
  cli.run(main)
