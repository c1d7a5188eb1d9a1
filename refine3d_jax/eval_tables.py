"""evaluate's tables of one results.json and the files it writes (`write_evaluation`).

The tables: IoU and F-Score per view count (`views_table`), per category (`category_table`)
and, when the run has them, per named protocol (`protocols_table`, `protocols_text`). Each is
captioned by `results.eval_caption`; results.py owns the schema they read.
"""

import os
from typing import Any

from refine3d_jax import plots, report
from refine3d_jax.protocols import OUTPUTS
from refine3d_jax.results import eval_caption


def views_table(results: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
  """(header, rows): one row per output and view count."""
  ts = results['thresholds']
  header = (
    ['output', 'views', 'IoU best', 'best t', 'IoU best class-mean', 'best t class-mean']
    + [f'IoU t={t}' for t in ts]
    + ['F-Score@1%', 'F-Score@1% class-mean']
  )
  rows = []
  for name in OUTPUTS:
    for n in results['view_counts']:
      r = results['views'][str(n)][name]
      best = r['iou']['best']
      rows.append(
        [
          name,
          n,
          best['sample_weighted']['value'],
          best['sample_weighted']['threshold'],
          best['class_mean']['value'],
          best['class_mean']['threshold'],
          *r['iou']['sample_weighted'],
          r['fscore']['sample_weighted'],
          r['fscore']['class_mean'],
        ]
      )
  return header, rows


def category_table(results: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
  """(header, rows): per category, refined IoU for each view count at that count's best
  threshold (sample-weighted), coarse IoU and F-Score@1% for the first count."""
  counts, first = results['view_counts'], str(results['view_counts'][0])
  best_index = lambda n, name: results['thresholds'].index(
    results['views'][str(n)][name]['iou']['best']['sample_weighted']['threshold']
  )
  header = (
    ['category', 'objects']
    + [f'IoU {n}v' for n in counts]
    + [f'coarse IoU {first}v', f'F-Score@1% {first}v']
  )

  def row(label, objects, pick):
    return (
      [label, objects]
      + [pick(results['views'][str(n)]['refined']['iou'])[best_index(n, 'refined')] for n in counts]
      + [
        pick(results['views'][first]['coarse']['iou'])[best_index(first, 'coarse')],
        pick(results['views'][first]['refined']['fscore']),
      ]
    )

  rows = [
    row(c, results['counts'][c], lambda r, c=c: r['per_category'][c]) for c in results['categories']
  ]
  for label, key in (
    ('mean (sample-weighted)', 'sample_weighted'),
    ('mean (class-mean)', 'class_mean'),
  ):
    rows.append(row(label, results['num_objects'], lambda r, key=key: r[key]))
  return header, rows


def protocols_table(results: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
  """(header, rows): refined IoU in each protocol (and its threshold) per view count."""
  names = [n for n, p in results['protocols'].items() if p['views'] is not None]
  header = ['views'] + [h for n in names for h in (n, f'{n} t')]
  rows = [
    [n]
    + [
      x
      for name in names
      for x in (
        results['protocols'][name]['views'][str(n)]['refined']['iou'],
        results['protocols'][name]['views'][str(n)]['refined']['threshold'],
      )
    ]
    for n in results['view_counts']
  ]
  return header, rows


def protocols_text(results: dict[str, Any]) -> str:
  """Each protocol's note, and why it gives no numbers where it does not."""
  return ' '.join(
    f'{name}: {p["note"]}' + (f' (not given: {p["missing"]})' if p['views'] is None else '') + '.'
    for name, p in results['protocols'].items()
  )


def write_evaluation(results: dict[str, Any], out_dir: str) -> str:
  """evaluate's outputs into `out_dir`: results.json, table_views, table_per_category and
  (with `protocols`) table_protocols (.md + full-precision .csv), iou_vs_views.png;
  returns the tables' markdown."""
  report.write_json(os.path.join(out_dir, 'results.json'), results)
  tables = [
    ('table_views', 'IoU and F-Score against views. ', views_table),
    ('table_per_category', 'Per-category IoU (refined unless marked). ', category_table),
  ]
  if 'protocols' in results:
    tables.append(
      (
        'table_protocols',
        'Refined IoU in each named protocol, and the threshold '
        f'it used. {protocols_text(results)} ',
        protocols_table,
      )
    )
  texts = []
  for stem, what, build in tables:
    header, rows = build(results)
    texts.append(report.markdown_table(header, rows, caption=what + eval_caption(results)))
    report.write_table(os.path.join(out_dir, stem), texts[-1], header, rows, digits=None)
  plots.plot_views(results, os.path.join(out_dir, 'iou_vs_views.png'))
  return '\n'.join(texts)
