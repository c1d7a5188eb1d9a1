r"""Table 1: single-view IoU per category (refined output), ours beside the peers' means.

  python experiments/table1_per_category.py --results=runs/paper/eval/results.json \
      [--out=DIR] [--labels=ours]

Prints the markdown table and writes `table1_per_category.md` and `.csv` into --out
(default: the directory of the first results file). Per results file one row at the best
threshold of the set (chosen on the sample-weighted mean, every column at that threshold),
then one row per evaluated threshold. PROTOCOL.md publishes no per-category numbers, only
1-view means: the peers' rows have their mean and '-' elsewhere.
"""

import os
import sys


sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from experiments import common  # pylint: disable=g-import-not-at-top,wrong-import-position
from refine3d_jax import cli, report, results  # pylint: disable=g-import-not-at-top,wrong-import-position
from refine3d_jax import protocols as protocols_lib  # pylint: disable=g-import-not-at-top,wrong-import-position

NAME = 'table1_per_category'
common.define_flags()


def our_rows(run: dict) -> list[dict]:
  """The best-threshold row, then one row per threshold, of one run (1 view, refined)."""
  results.require_views(run, 1)
  section = run['views']['1']['refined']['iou']
  _, best_t = results.iou(run, 1)
  # which protocols of the literature read their 1-view number off each fixed row
  readers = {}
  for name, p in protocols_lib.of_results(run).items():
    if p['views'] is not None and p['views']['1']['refined']['threshold'] is not None:
      column = 'mean' if p['averaging'] == 'sample_weighted' else 'class mean'
      readers.setdefault(p['views']['1']['refined']['threshold'], []).append(f'{name} ({column})')
  rows = []
  for selection, t in [('best', best_t)] + [('fixed', t) for t in run['thresholds']]:
    i = results.threshold_index(run, t)
    label = (
      f'{run["_label"]}, best t = {t:g}' if selection == 'best' else (f'{run["_label"]}, t = {t:g}')
    )
    rows.append(
      {
        'method': label,
        'source': 'ours',
        'threshold': t,
        'selection': selection,
        'protocol': ', '.join(readers.get(t, [])) if selection == 'fixed' else '',
        **{c: section['per_category'][c][i] for c in run['categories']},
        'mean': section['sample_weighted'][i],
        'class_mean': section['class_mean'][i],
      }
    )
  return rows


def peer_rows() -> list[dict]:
  return [
    {
      'method': f'{m} (published)',
      'source': 'published',
      'mean': values[1],
      'protocol': protocols_lib.PEERS.get(m) or 'not stated',
    }
    for m, values in common.PUBLISHED_IOU.items()
    if 1 in values
  ]


def build(runs: list[dict]) -> tuple[str, list[str], list[dict]]:
  """(markdown, CSV columns, CSV rows)."""
  cats = runs[0]['categories']
  rows = [row for run in runs for row in our_rows(run)] + peer_rows()
  columns = ['method', 'source', 'threshold', 'selection', 'protocol', *cats, 'mean', 'class_mean']
  header = [
    'method',
    'protocol',
    *(f'{c} ({runs[0]["counts"][c]})' for c in cats),
    'mean',
    'class mean',
  ]
  table = report.markdown_table(
    header,
    [
      [
        r['method'],
        r['protocol'],
        *(report.fmt(r.get(c)) for c in cats),
        report.fmt(r.get('mean')),
        report.fmt(r.get('class_mean')),
      ]
      for r in rows
    ],
  )
  cap = results.caption(
    runs,
    '**Table 1.** Single-view IoU per category, refined output.',
    threshold=(
      f'best of {results.thresholds_text(runs[0])}, chosen on the sample-weighted '
      'mean, every column at that threshold; then each threshold of the set'
    ),
    averaging=(
      'per category: mean over its test objects (count in the header); mean: '
      'sample-weighted over all test objects; class mean: unweighted mean of the '
      'category means'
    ),
  )
  without_1v = [m for m, v in common.PUBLISHED_IOU.items() if 1 not in v]
  notes = [
    f'Peers: {common.PROTOCOL} publishes no per-category IoU, only the 1-view mean, '
    "which is in the mean column; every other peer cell is '-' (no source).",
    "Protocol: a peer's is the one it was measured in; on our rows, the protocols "
    'that read their 1-view number off that row, and from which column '
    '(refine3d_jax/protocols.py). Compare a peer with the row of its protocol.',
    f'Not listed (no published 1-view IoU): {", ".join(without_1v)}.',
  ]
  notes += common.published_notes(m for m, v in common.PUBLISHED_IOU.items() if 1 in v)
  if runs[0]['synthetic']:
    notes.insert(0, f"{results.SYNTHETIC_WARNING}: the peers' rows are ShapeNet numbers.")
  return report.document((cap, table, notes)), columns, rows


def main(argv):
  del argv
  common.run_script(NAME, build)


if __name__ == '__main__':
  cli.run(main)
