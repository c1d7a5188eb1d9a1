r"""Table 3: parameters, peak memory and forward/backward time per object, beside published cost.

  python experiments/table3_cost.py --results=runs/paper/eval/results.json \
      [--out=DIR] [--labels=ours]

Prints the markdown table and writes `table3_cost.md` and `.csv` into --out (default: the
directory of the first results file). Ours comes from results.json's `cost` (one row per
timed view count, on the device it names); the peers' rows are PROTOCOL.md's "Cost figures
published", every one labelled "published". A results.json without `cost` gives a table
that says so, not an error.
"""

import os
import sys


sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from experiments import common  # pylint: disable=g-import-not-at-top,wrong-import-position
from refine3d_jax import cli, report, results  # pylint: disable=g-import-not-at-top,wrong-import-position

NAME = 'table3_cost'
common.define_flags()
SUBTREES = ('encoder', 'attention', 'decoder', 'refiner')
COLUMNS = [
  'method',
  'source',
  'device',
  'views',
  'params',
  *(f'params_{s}' for s in SUBTREES),
  'peak_memory_mb',
  'forward_ms',
  'backward_ms',
  'per_object',
  'training',
]
PUBLISHED_DEVICE = 'GPU (as published)'


def our_rows(run: dict) -> list[dict]:
  """One row per view count timed (forward or backward); [] when there is no `cost`."""
  cost = run.get('cost')
  if cost is None:
    return []
  forward, backward = cost['forward_ms_per_object'], cost['backward_ms_per_object']
  params = {
    'params': cost['params']['total'],
    **{f'params_{s}': cost['params'][s] for s in SUBTREES},
  }
  return [
    {
      'method': run['_label'],
      'source': 'ours',
      'device': cost['device'],
      'views': n,
      **params,
      'peak_memory_mb': cost.get('peak_memory_mb'),
      'forward_ms': forward.get(str(n)),
      'backward_ms': backward.get(str(n)),
      'per_object': 'yes',
    }
    for n in sorted({int(k) for k in (*forward, *backward)})
  ]


def peer_rows() -> list[dict]:
  return [
    {
      **row,
      'method': f'{row["method"]} (published)',
      'source': 'published',
      'device': PUBLISHED_DEVICE,
      'params': round(row['params_m'] * 1e6),
    }
    for row in common.PUBLISHED_COST
  ]


def _params(row: dict) -> str:
  """Published counts as transcribed (millions), ours in millions or in full when small."""
  if 'params_m' in row:
    return f'{row["params_m"]:g}M'
  n = row.get('params')
  if n is None:
    return '-'
  return f'{n / 1e6:.2f}M' if n >= 1e5 else f'{n:,}'


def _cell(value, digits: int) -> str:
  """Published integers as given, our floats to `digits` decimals, '-' when absent."""
  if isinstance(value, (int, str)):
    return str(value)
  return report.fmt(value, digits)


def notes_for(runs: list[dict]) -> list[str]:
  notes = []
  for run in runs:
    cost = run.get('cost')
    if cost is None:
      notes.append(
        f'{run["_label"]}: `{run["_path"]}` has no `cost` section: our parameters, '
        'memory and times were not measured by this evaluation.'
      )
      continue
    notes.append(
      f'{run["_label"]}: parameters '
      + ', '.join(f'{s} {cost["params"][s]:,}' for s in (*SUBTREES, 'total'))
      + '.'
    )
    if cost.get('peak_memory_mb') is None:
      notes.append(f'{run["_label"]}: peak memory not measured (no `cost.peak_memory_mb`).')
  notes += [
    f'Published rows: {common.PROTOCOL}, "Cost figures published" (Pix2Vox\'s table, GPU); '
    "'-' where it gives no figure. It states neither the batch size nor the view count of "
    'the published times, so they need not be per object.',
    "Refine3DNet (published): 143M parameters as the paper states; its Table 3's forward "
    'times for 3D-R2N2 and Pix2Vox are their backward times (known error), not used here.',
    'Ours: times per object as evaluate measured them, on the device named; training '
    "time is not in results.json ('-').",
  ]
  return notes


def build(runs: list[dict]) -> tuple[str, list[str], list[dict]]:
  """(markdown, CSV columns, CSV rows)."""
  rows = []
  for run in runs:
    rows += our_rows(run) or [{'method': run['_label'], 'source': 'ours (no cost in results)'}]
  rows += peer_rows()
  table = report.markdown_table(
    [
      'method',
      'source',
      'device',
      'views',
      'params',
      'peak memory (MB)',
      'forward (ms)',
      'backward (ms)',
      'training',
    ],
    [
      [
        r['method'],
        r['source'],
        r.get('device', '-'),
        r.get('views', '-'),
        _params(r),
        _cell(r.get('peak_memory_mb'), 1),
        _cell(r.get('forward_ms'), 2),
        _cell(r.get('backward_ms'), 2),
        r.get('training', '-'),
      ]
      for r in rows
    ],
  )
  devices = '; '.join(
    f'{r["_label"]}: {r["cost"]["device"]}' if 'cost' in r else f'{r["_label"]}: not measured'
    for r in runs
  )
  cap = results.caption(
    runs,
    f'**Table 3.** Model size, peak memory and time per object. Device: {devices}.',
    threshold='not applicable (cost of the forward and backward passes)',
    averaging='times per object of the views given in the views column',
  )
  return report.document((cap, table, notes_for(runs))), COLUMNS, rows


def main(argv):
  del argv
  common.run_script(NAME, build)


if __name__ == '__main__':
  cli.run(main)
