r"""The views benchmark: IoU against views for JTSO, end-to-end and each fusion, over seeds.

Trains (or resumes, or reuses when finished) one workdir per row and seed, evaluates it on
the test split at the view counts below, and writes the table, the CSV and the plot of
every finished run in --runs_dir (whatever --rows and --seeds this call names):

  python experiments/views_benchmark.py --dataset=shapenet_vox --data_dir=DIR \
      --runs_dir=runs/views_chairs --out=docs/benchmarks/chairs [--seeds=0,1] \
      [--rows=jtso,end_to_end,attsets,mean] [--preset=quick] [--set=KEY=VALUE,...]

Each row is `python main.py` with the preset and the row's overrides (below), then
`python -m refine3d_jax.evaluate` on its best checkpoint (by validation IoU); the wall time
of each is recorded in `<workdir>/wall_seconds.json`; the evaluated view counts are set
at training time (`eval.view_counts`), so `evaluate --workdir=W` alone gives them. A
row's cell is the mean over the seeds (each seed in the CSV), refined output,
sample-weighted over the test objects, at `--threshold`. `--set` adds config overrides
to every row (e.g. `data.min_views=1`).
"""

import glob
import json
import os
import platform
import subprocess
import sys
import time

from absl import flags
import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from experiments import common  # pylint: disable=g-import-not-at-top,wrong-import-position
from refine3d_jax import cli, errors, parallel, plots, report, results  # pylint: disable=g-import-not-at-top,wrong-import-position

NAME = 'views_benchmark'
VIEWS = (1, 2, 3, 5, 8, 12, 20)
# Row -> (config file, overrides). Every row trains the same steps on the same data.
ROWS = {
  'jtso': ('configs/jtso.py', {}),
  'end_to_end': ('configs/end_to_end.py', {}),
  'attsets': ('configs/jtso.py', {'model.fusion': 'attsets'}),
  'mean': ('configs/jtso.py', {'model.fusion': 'mean'}),
  # JTSO's stages 1 and 2, then end to end (every group on the multi-view loss) from k2.
  'jtso_joint': ('configs/jtso.py', {'train.schedule': 'jtso_joint'}),
  # The paper preset's model options (configs/jtso.py, README "The paper preset") at the
  # quick widths; the bottleneck keeps the paper's 4:1 (8192 -> 2048): 1024 -> 256 here.
  'paper_options': (
    'configs/jtso.py',
    {
      'model.attention_block': 'plain',
      'model.decoder_shortcuts': 'conv',
      'model.refiner_up_activation': 'relu',
      'model.refiner_bottleneck': '256',
      'model.refiner_bn_momentum': '0.99',
    },
  ),
}
LABELS = {
  'jtso': 'JTSO, self-attention',
  'end_to_end': 'end-to-end, self-attention',
  'attsets': 'JTSO, AttSets pooling',
  'mean': 'JTSO, mean of views',
  'jtso_joint': 'JTSO stages 1-2, then end to end',
  'paper_options': "JTSO, the paper's model options",
}

_DATASET = flags.DEFINE_string('dataset', 'shapenet_vox', 'config.data.dataset')
_BUILDER_CONFIG = flags.DEFINE_string('builder_config', '', 'config.data.builder_config')
_DATA_DIR = flags.DEFINE_string('data_dir', '~/tensorflow_datasets', 'config.data.data_dir')
_RUNS_DIR = flags.DEFINE_string(
  'runs_dir', None, 'Workdirs go here, one per row and seed.', required=True
)
_OUT = flags.DEFINE_string('out', None, 'Table and plot folder (default: --runs_dir).')
_SEEDS = flags.DEFINE_list('seeds', ['0', '1'], 'config.seed of each run.')
_ROWS = flags.DEFINE_list('rows', list(ROWS), f'Rows, of {list(ROWS)}.')
_PRESET = flags.DEFINE_string('preset', 'quick', 'Preset of the config files.')
_SET = flags.DEFINE_list('set', [], 'KEY=VALUE config overrides for every row.')
_THRESHOLD = flags.DEFINE_float('threshold', 0.3, 'IoU threshold (one of eval.thresholds).')
_REPORT_ONLY = flags.DEFINE_bool('report_only', False, 'Only tabulate finished workdirs.')


def workdir(row: str, seed: str) -> str:
  return os.path.join(_RUNS_DIR.value, f'{row}_seed{seed}')


def _overrides(row: str, seed: str) -> list[str]:
  config, row_set = ROWS[row]
  sets = {
    'seed': seed,
    'data.dataset': _DATASET.value,
    'data.builder_config': _BUILDER_CONFIG.value,
    'data.data_dir': _DATA_DIR.value,
    'eval.view_counts': f'({",".join(map(str, VIEWS))})',
    'eval.measure_cost': 'False',
    **dict(kv.split('=', 1) for kv in _SET.value),
    **row_set,
  }
  return [f'--config={config}:{_PRESET.value}', *(f'--config.{k}={v}' for k, v in sets.items())]


def run_row(row: str, seed: str) -> None:
  """Trains and evaluates one workdir unless its results exist (or --report_only)."""
  w = workdir(row, seed)
  if os.path.exists(os.path.join(w, 'eval', 'results.json')) or _REPORT_ONLY.value:
    return
  env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
  seconds = {}
  for name, cmd in (
    ('train', [sys.executable, 'main.py', *_overrides(row, seed), f'--workdir={w}']),
    ('evaluate', [sys.executable, '-m', 'refine3d_jax.evaluate', f'--workdir={w}']),
  ):
    print('+', ' '.join(cmd), flush=True)
    start = time.time()
    subprocess.run(cmd, cwd=ROOT, env=env, check=True)
    seconds[name] = time.time() - start
  # A resumed run's 'train' counts only this call's part; metrics.jsonl has every step's time.
  with open(os.path.join(w, 'wall_seconds.json'), 'w') as f:
    json.dump({**seconds, 'machine': _cpu_name(), 'cpus': parallel.usable_cores()}, f)


def finished() -> dict[str, list[tuple[int, str]]]:
  """{row: (seed, results.json) of each finished seed} of every row in --runs_dir, in ROWS order
  and by seed: the table covers every finished run, not only this call's --rows/--seeds."""
  out = {}
  for row in ROWS:
    found = []
    for path in glob.glob(os.path.join(_RUNS_DIR.value, f'{row}_seed*', 'eval', 'results.json')):
      seed = path.split(os.sep)[-3][len(f'{row}_seed') :]
      if seed.isdigit():
        found.append((int(seed), path))
    if found:
      out[row] = sorted(found)
  return out


def _cpu_name() -> str:
  try:
    with open('/proc/cpuinfo') as f:
      return next(l.split(':', 1)[1].strip() for l in f if l.startswith('model name'))
  except (OSError, StopIteration):
    return platform.processor() or platform.machine()


def view_counts(by_row: dict[str, list[dict]]) -> list[int]:
  """The view counts every run evaluated (VIEWS when they ran through this script)."""
  runs = [r for rs in by_row.values() for r in rs]
  return sorted(set.intersection(*(set(r['view_counts']) for r in runs)))


def cells(runs: list[dict], views: list[int], threshold: float) -> dict[int, list[float]]:
  """views -> the runs' IoUs (refined, sample-weighted) at `threshold`."""
  return {
    n: [results.iou(r, n, 'refined', 'sample_weighted', threshold)[0] for r in runs] for n in views
  }


def build(by_row: dict[str, list[dict]], threshold: float):
  """(markdown, CSV columns, CSV rows) of the rows' seed means, with the 5-1 view gain."""
  views = view_counts(by_row)
  gain = (5, 1) if {1, 5} <= set(views) else (views[-1], views[0])
  header = [
    'method',
    'seeds',
    *(f'{n} view' + ('s' if n > 1 else '') for n in views),
    f'{gain[0]} - {gain[1]}',
  ]
  table, csv_rows = [], []
  for row, runs in by_row.items():
    c = cells(runs, views, threshold)
    means = {n: float(np.mean(v)) for n, v in c.items()}
    table.append(
      [
        LABELS[row],
        len(runs),
        *(report.fmt(means[n]) for n in views),
        f'{means[gain[0]] - means[gain[1]]:+.3f}',
      ]
    )
    for i, run in enumerate(runs):
      csv_rows.append(
        {
          'method': row,
          'seed': results.config_value(run, 'seed'),
          'step': run['checkpoint']['step'],
          **{f'views_{n}': c[n][i] for n in views},
        }
      )
  every = [r for runs in by_row.values() for r in runs]
  cap = results.caption(
    every,
    '**Views benchmark.** IoU against the number of views, mean over seeds, refined output.',
    threshold=f't = {threshold:g}',
    averaging='sample-weighted mean over all test objects',
  )
  notes = ['Every row trains the same steps on the same data; each seed is a row of the CSV.']
  columns = ['method', 'seed', 'step', *(f'views_{n}' for n in views)]
  return report.document((cap, report.markdown_table(header, table), notes)), columns, csv_rows


def plot(by_row: dict[str, list[dict]], out_dir: str, threshold: float) -> str:
  """IoU against views per row: seed mean, bars from the lowest to the highest seed."""
  views = view_counts(by_row)
  fig, ax = plt.subplots(figsize=(7, 4))
  for (row, runs), color in zip(by_row.items(), common.RUN_COLORS * 2):
    c = cells(runs, views, threshold)
    mean = np.array([np.mean(c[n]) for n in views])
    lo, hi = (np.array([f(c[n]) for n in views]) for f in (np.min, np.max))
    ax.errorbar(
      views,
      mean,
      yerr=[mean - lo, hi - mean],
      marker='o',
      color=color,
      capsize=3,
      label=f'{LABELS[row]} ({len(runs)} seeds)',
    )
  ax.set(
    xlabel='views',
    ylabel=f'IoU, refined (t = {threshold:g})',
    xticks=views,
    title=results.figure_title(next(iter(by_row.values())), 'IoU against views'),
  )
  return plots.finish_figure(fig, ax, out_dir, NAME)


def main(argv):
  del argv
  unknown = sorted(set(_ROWS.value) - set(ROWS))
  if unknown:
    raise errors.UserError(f'--rows: unknown {unknown}; choose from {list(ROWS)}')
  for row in _ROWS.value:
    for seed in _SEEDS.value:
      run_row(row, seed)
  done = finished()
  by_row = {
    row: common.load_runs([p for _, p in runs], [f'{row}_seed{s}' for s, _ in runs])
    for row, runs in done.items()
  }
  if not by_row:
    raise results.ResultsError(f'no finished run in {_RUNS_DIR.value}')
  markdown, columns, rows = build(by_row, _THRESHOLD.value)
  out_dir = _OUT.value or _RUNS_DIR.value
  os.makedirs(out_dir, exist_ok=True)
  for path in [
    *common.write_outputs(out_dir, NAME, markdown, columns, rows),
    plot(by_row, out_dir, _THRESHOLD.value),
  ]:
    print(f'wrote {path}')


if __name__ == '__main__':
  cli.run(main)
