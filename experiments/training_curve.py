r"""Validation IoU against wall-clock minutes of a training run, from its metrics.jsonl.

  python experiments/training_curve.py --workdir=runs/jtso_quick --out=docs/quick_curve.png

Writes the PNG (one line per validation view count, refined and coarse, stage changes
marked) and prints the same points as a markdown table. Minutes count from the first
logged step (start-up, data build and the first compilation come before it).
"""

import os
import sys

from absl import flags
import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from refine3d_jax import cli, metric_writers  # pylint: disable=g-import-not-at-top,wrong-import-position

_WORKDIR = flags.DEFINE_string('workdir', None, 'Training workdir.', required=True)
_OUT = flags.DEFINE_string('out', None, 'PNG to write (default: <workdir>/iou_curve.png).')


def curve(records: list[dict]) -> tuple[list[dict], list[tuple[float, int]]]:
  """(validation points with 'minutes', [(minutes, stage) where the stage changes])."""
  timed = [r for r in records if r.get('wall_time') is not None]
  if not timed:
    raise ValueError('no timed entries in metrics.jsonl (written by train.py)')
  t0 = timed[0]['wall_time']
  points = [{**r, 'minutes': (r['wall_time'] - t0) / 60} for r in timed if 'val_iou' in r]
  changes, stage = [], None
  for r in timed:
    if r.get('stage') is not None and r['stage'] != stage:
      stage = r['stage']
      changes.append(((r['wall_time'] - t0) / 60, stage))
  return points, changes


def main(argv):
  del argv
  records = metric_writers.read_metrics(_WORKDIR.value)
  points, changes = curve(records)
  views = sorted(
    {
      int(k[len('val_iou_') : -1])
      for p in points
      for k in p
      if k.startswith('val_iou_') and k[len('val_iou_') : -1].isdigit()
    }
  )
  fig, ax = plt.subplots(figsize=(7, 4))
  for n in views:
    xs = [p['minutes'] for p in points]
    ax.plot(xs, [p[f'val_iou_{n}v'] for p in points], marker='o', label=f'refined, {n} view(s)')
    ax.plot(
      xs,
      [p[f'val_iou_coarse_{n}v'] for p in points],
      ls='--',
      alpha=0.6,
      label=f'coarse, {n} view(s)',
    )
  for minutes, stage in changes:
    ax.axvline(minutes, color='grey', lw=0.8)
    ax.text(minutes, 0.02, f' stage {stage}', color='grey', fontsize=8)
  ax.set(
    xlabel='minutes since the first logged step',
    ylabel='validation IoU (t = 0.3)',
    ylim=(0, 1),
    title=os.path.basename(os.path.normpath(_WORKDIR.value)),
  )
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  out = _OUT.value or os.path.join(_WORKDIR.value, 'iou_curve.png')
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  fig.savefig(out, dpi=120, bbox_inches='tight')
  print('| step | minutes | ' + ' | '.join(f'IoU {n}v' for n in views) + ' |')
  print('|---|---|' + '---|' * len(views))
  for p in points:
    print(
      f'| {p["step"]} | {p["minutes"]:.1f} | '
      + ' | '.join(f'{p[f"val_iou_{n}v"]:.3f}' for n in views)
      + ' |'
    )
  print(f'wrote {out}')


if __name__ == '__main__':
  cli.run(main)
