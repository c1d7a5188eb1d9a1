r"""Table 2: IoU and F-Score@1% against the number of views, ours beside the published rows.

  python experiments/table2_views.py --results=runs/paper/eval/results.json \
      [--out=DIR] [--labels=ours]

Prints two markdown tables (IoU; F-score) and writes `table2_views.md`, `.csv` and `.png`
(IoU against views) into --out (default: the directory of the first results file). Columns
are the standard view counts 1, 2, 3, 4, 5, 8, 12, 16, 20 plus any other count evaluated;
ours is '-' where that count was not evaluated. Ours: refined output, IoU in each protocol
of the literature (refine3d_jax/protocols.py: pix2vox, paper, retr, and val_selected where
results.json has it), F-score sample-weighted and class-mean; peers: every row of
PROTOCOL.md's "Best published results", each with the protocol to read ours in.
"""

import os
import sys

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from experiments import common  # pylint: disable=g-import-not-at-top,wrong-import-position
from refine3d_jax import cli, plots, report, results  # pylint: disable=g-import-not-at-top,wrong-import-position
from refine3d_jax import protocols as protocols_lib  # pylint: disable=g-import-not-at-top,wrong-import-position

NAME = 'table2_views'
common.define_flags()


def view_columns(runs: list[dict]) -> list[int]:
  return sorted(set(common.STANDARD_VIEWS).union(*(r['view_counts'] for r in runs)))


def our_rows(run: dict, views: list[int], metric: str) -> list[dict]:
  """Rows of one run. IoU: one row per protocol of the literature (refine3d_jax/protocols.py)
  with its chosen threshold per view count; F-score: one row per averaging."""
  rows = []
  if metric == 'iou':
    for name, p in protocols_lib.of_results(run).items():
      if p['views'] is None:
        continue
      cells = {
        n: (
          (p['views'][str(n)]['refined']['iou'], p['views'][str(n)]['refined']['threshold'])
          if n in run['view_counts']
          else (None, None)
        )
        for n in views
      }
      rows.append(
        {
          'metric': metric,
          'method': f'{run["_label"]} ({name})',
          'source': 'ours',
          'protocol': name,
          'averaging': p['averaging'],
          'threshold': f'protocol {name}',
          **{f'views_{n}': v for n, (v, _) in cells.items()},
          **{f't_{n}': t for n, (_, t) in cells.items()},
        }
      )
    return rows
  for avg in results.AVERAGING:
    t = run['fscore']['threshold']
    cells = {
      n: (results.fscore(run, n, averaging=avg), t if n in run['view_counts'] else None)
      for n in views
    }
    threshold = f'{t:g} (distance {run["fscore"]["distance"]:g})'
    rows.append(
      {
        'metric': metric,
        'method': f'{run["_label"]} ({results.AVERAGING_SHORT[avg]})',
        'source': 'ours',
        'protocol': '',
        'averaging': avg,
        'threshold': threshold,
        **{f'views_{n}': v for n, (v, _) in cells.items()},
        **{f't_{n}': t for n, (_, t) in cells.items()},
      }
    )
  return rows


def peer_protocol(method: str) -> str:
  """The protocol to read ours in beside a peer's row."""
  name = protocols_lib.PEERS.get(method)
  return name or 'not stated (see pix2vox)'


def peer_rows(published: dict, views: list[int], metric: str) -> list[dict]:
  return [
    {
      'metric': metric,
      'method': f'{m} (published)',
      'source': 'published',
      'protocol': peer_protocol(m) if metric == 'iou' else '',
      **{f'views_{n}': values.get(n) for n in views},
    }
    for m, values in published.items()
  ]


def section(runs, views, metric, published, title, threshold):
  rows = [r for run in runs for r in our_rows(run, views, metric)]
  rows += peer_rows(published, views, metric)
  if metric == 'iou':
    table = report.markdown_table(
      ['method', 'protocol', *(str(n) for n in views)],
      [[r['method'], r['protocol'], *(report.fmt(r[f'views_{n}']) for n in views)] for r in rows],
    )
  else:
    table = report.markdown_table(
      ['method', *(str(n) for n in views)],
      [[r['method'], *(report.fmt(r[f'views_{n}']) for n in views)] for r in rows],
    )
  cap = results.caption(
    runs,
    title,
    threshold=threshold,
    averaging=(
      "ours: as each row's protocol says (IoU), or sample-weighted over all test objects and "
      'class mean (F-score); peers: as each note says'
    ),
  )
  notes = [f"'-': not evaluated (ours) or not published in {common.PROTOCOL} (peers)."]
  if runs[0]['synthetic']:
    notes.insert(0, f"{results.SYNTHETIC_WARNING}: the peers' rows are ShapeNet numbers.")
  return (cap, table, notes), rows


def build(runs: list[dict]) -> tuple[str, list[str], list[dict]]:
  """(markdown, CSV columns, CSV rows) of the IoU and F-score tables."""
  views = view_columns(runs)
  iou_section, iou_rows = section(
    runs,
    views,
    'iou',
    common.PUBLISHED_IOU,
    '**Table 2a.** IoU against the number of views, refined output; ours in each '
    'protocol of the literature, each peer beside the protocol it was measured in.',
    f"ours: each row's protocol, from the evaluated {results.thresholds_text(runs[0])} "
    '(chosen thresholds in the notes)',
  )
  iou_section[2].extend(
    f'Protocol {name}: {p.note}.' for name, p in protocols_lib.PROTOCOLS.items()
  )
  for row in (r for r in iou_rows if r['source'] == 'ours'):
    chosen = ', '.join(f'{n}v: {row[f"t_{n}"]:g}' for n in views if row[f't_{n}'] is not None)
    iou_section[2].append(f'{row["method"]}: thresholds {chosen}.')
  iou_section[2].extend(common.published_notes(common.PUBLISHED_IOU))
  f = runs[0]['fscore']
  f_section, f_rows = section(
    runs,
    views,
    'fscore',
    common.PUBLISHED_FSCORE,
    f'**Table 2b.** F-Score@{f["distance"]:.0%} against the number of views, refined output.',
    f'ours: occupancy at t = {f["threshold"]:g}, points within {f["distance"]:g} of the side',
  )
  without_f = [m for m in common.PUBLISHED_IOU if m not in common.PUBLISHED_FSCORE]
  f_section[2].append(
    f'No published F-score in {common.PROTOCOL} for {", ".join(without_f)}; '
    'peer notes under Table 2a.'
  )
  columns = [
    'metric',
    'method',
    'source',
    'protocol',
    'averaging',
    'threshold',
    *(f'views_{n}' for n in views),
    *(f't_{n}' for n in views),
  ]
  return report.document(iou_section, f_section), columns, iou_rows + f_rows


def plot(runs: list[dict], out_dir: str) -> str:
  """IoU against views: ours (both averagings) over the published rows."""
  views = view_columns(runs)
  fig, ax = plt.subplots(figsize=(8, 5))
  for i, (m, values) in enumerate(common.PUBLISHED_IOU.items()):
    ns = sorted(values)
    ax.plot(
      ns,
      [values[n] for n in ns],
      lw=1,
      ls=':',
      marker='.',
      color=plt.cm.tab20(i),
      label=f'{m} (published)',
    )
  for run, color in zip(runs, common.RUN_COLORS * len(runs)):
    prots = protocols_lib.of_results(run)
    for name, ls, marker in (('pix2vox', '-', 'o'), ('paper', '--', 's')):
      if prots[name]['views'] is None:
        continue
      ns = sorted(run['view_counts'])
      ax.plot(
        ns,
        [prots[name]['views'][str(n)]['refined']['iou'] for n in ns],
        lw=2,
        ls=ls,
        marker=marker,
        color=color,
        label=f'{run["_label"]} (protocol {name})',
      )
  ax.set(
    xlabel='views',
    ylabel='IoU (refined)',
    xticks=views,
    title=results.figure_title(runs, 'IoU against the number of views'),
  )
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7, ncol=2)
  path = plots.save_png(fig, out_dir, NAME)
  plt.close(fig)
  return path


def main(argv):
  del argv
  common.run_script(NAME, build, plot)


if __name__ == '__main__':
  cli.run(main)
