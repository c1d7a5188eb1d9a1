"""Shared by the paper-table scripts: the peers' published numbers, flags, running a script.

A results.json is what `refine3d_jax/evaluate.py` writes to `<workdir>/eval/results.json`;
refine3d_jax/results.py owns its schema (`load_results`, accessors), the captions and the
text helpers, refine3d_jax/report.py the markdown, CSV and document writing. Here: what
only the scripts need. `run_script` loads the runs, prints the markdown and writes
`<name>.md` and `<name>.csv` (and a PNG). Markdown cells without a source are '-'; CSV
cells without one are empty.
"""

import os
from typing import Iterable, Sequence

from absl import flags

from refine3d_jax import report
from refine3d_jax.results import ResultsError, check_comparable, load_results

PROTOCOL = '../shared/PROTOCOL.md'
STANDARD_VIEWS = (1, 2, 3, 4, 5, 8, 12, 16, 20)
RUN_COLORS = ['black', 'firebrick', 'navy', 'darkgreen']  # ours; the peers get tab20


def _transcribed(table: str) -> dict[str, dict[int, float]]:
  """{method: {views: value}} of a table of rows `method cell...`, one cell per view count
  of STANDARD_VIEWS ('-': none published)."""
  rows = [line.split() for line in table.strip().splitlines()]
  return {
    method: {n: float(c) for n, c in zip(STANDARD_VIEWS, cells) if c != '-'}
    for method, *cells in rows
  }


# Transcribed from ../shared/PROTOCOL.md, "Best published results (mean IoU, / F-Score@1%
# where reported)", the IoU before the '/' and the F-score after it; view counts:
#             1    2    3    4    5    8    12   16   20
PUBLISHED_IOU = _transcribed("""
3D-R2N2     .560 .603 .617 .625 .634 .635 .636 .636 .636
AttSets     .642 .662 .670 .675 .677 .685 .688 .692 .693
Pix2Vox-A   .661 .686 .693 .697 .699 .702 .704 -    -
Pix2Vox++/A .670 .695 .704 .708 .711 .715 .717 .718 .719
EVolT       -    -    -    .609 -    .698 .720 .729 .735
3D-RETR     .680 .701 .716 .725 .736 .739 .747 .755 .757
UMIFormer   .680 .738 .752 .757 .761 .766 .768 .770 .770
LRGT        .696 .746 .759 .765 .769 .774 .777 .778 .779
LRGT+       .585 .715 .748 .763 .772 .783 .789 .791 .792
Refine3DNet .689 -    .698 -    .706 .713 .721 -    .733
""")
# Row "Refine3DNet (paper, t=0.25)": also the paper's 15 and 18 views, from the note under
# PROTOCOL.md's table.
PUBLISHED_IOU['Refine3DNet'] = dict(
  sorted({**PUBLISHED_IOU['Refine3DNet'], 15: 0.727, 18: 0.730}.items())
)
PUBLISHED_FSCORE = _transcribed("""
Pix2Vox++/A .436 .452 .455 .457 .458 .459 .460 .461 .462
EVolT       -    -    -    .358 -    .448 .475 .486 .492
UMIFormer   .428 .492 .507 .513 .517 .521 .523 .525 .525
LRGT        .446 .501 .515 .521 .526 .531 .534 .535 .535
LRGT+       .338 .462 .499 .516 .527 .540 .547 .550 .551
""")
# How each row was measured, as far as PROTOCOL.md ("Evaluation protocols", notes) says.
_FIRST_N_BEST = 'sample-weighted mean at the best of several thresholds; first n views'
PUBLISHED_NOTES = {
  '3D-R2N2': 'after its paper as quoted by later work; averaging not stated in PROTOCOL.md',
  'AttSets': (
    'after its paper as quoted by later work; its single-view score averages all 24 views'
  ),
  'Pix2Vox-A': (
    'sample-weighted mean at the best of t = 0.2/0.3/0.4/0.5; first n views '
    '(its released weights reproduce its per-class table at t = 0.3)'
  ),
  'Pix2Vox++/A': 'averaging and views not stated in PROTOCOL.md',
  'EVolT': 'averaging and views not stated in PROTOCOL.md; no 1- to 3- or 5-view values',
  '3D-RETR': 'unweighted mean of class means at t = 0.5; first n views',
  'UMIFormer': _FIRST_N_BEST,
  'LRGT': _FIRST_N_BEST,
  'LRGT+': 'averaging and views not stated in PROTOCOL.md',
  'Refine3DNet': (
    'the paper, at t = 0.25; it also lists 15 and 18 views (.727, .730); '
    'its own Table 2 peer rows have known errors and are not used here'
  ),
}
# Transcribed from ../shared/PROTOCOL.md, "Cost figures published (Pix2Vox's table, GPU)".
# PROTOCOL.md states neither the batch size nor the view count of the times.
PUBLISHED_COST = [
  {'method': '3D-R2N2', 'params_m': 35.97, 'peak_memory_mb': 1407},
  {'method': 'Pix2Vox-F', 'params_m': 7.41, 'peak_memory_mb': 673, 'forward_ms': 9.25},
  {'method': 'Pix2Vox-A', 'params_m': 114.24, 'peak_memory_mb': 2729},
  {'method': 'EVolT', 'params_m': 29.03},
  {
    'method': 'Refine3DNet',
    'params_m': 143,
    'peak_memory_mb': 2900,
    'backward_ms': 78,
    'training': '24 h',
  },  # 143M "as stated" by the paper
]


def define_flags(
  labels_help: str = 'Comma-separated row labels, one per results file '
  '(default: "ours", or workdir@step when several).',
):
  """The flags every script takes: --results, --out, --labels (run_script reads them)."""
  return (
    flags.DEFINE_list('results', None, 'results.json file(s) written by evaluate.', required=True),
    flags.DEFINE_string(
      'out', None, 'Output directory (default: the directory of the first results file).'
    ),
    flags.DEFINE_list('labels', None, labels_help),
  )


def define_threshold_flag():
  """--threshold: one IoU threshold of the evaluated set instead of the best of the set."""
  return flags.DEFINE_float(
    'threshold',
    None,
    'IoU at this threshold, one of those evaluated '
    '(default: the best of the evaluated set, per cell).',
  )


def default_labels(runs: Sequence[dict]) -> list[str]:
  if len(runs) == 1:
    return ['ours']
  return [
    f'ours: {os.path.basename(os.path.normpath(r["checkpoint"]["workdir"]))}'
    f'@{r["checkpoint"]["step"]}'
    for r in runs
  ]


def load_runs(
  paths: Sequence[str], labels: Sequence[str] | None = None, default=default_labels
) -> list[dict]:
  """Validated, mutually comparable runs, each with its row label under '_label'."""
  if not paths:
    raise ResultsError('no results.json given (--results)')
  runs = [load_results(p) for p in paths]
  check_comparable(runs)
  if labels is not None and len(labels) != len(runs):
    raise ResultsError(f'{len(labels)} labels for {len(runs)} results files')
  labels = list(labels) if labels is not None else default(runs)
  if len(set(labels)) < len(labels):
    raise ResultsError(
      f'{", ".join(paths)}: rows would share a label ({labels}); name them with --labels'
    )
  return [{**r, '_label': label} for r, label in zip(runs, labels)]


def run_script(name: str, build, plot=None, default=default_labels, **options) -> None:
  """Load the runs of --results (labelled by --labels, else `default`), print
  build(runs)'s markdown, write `<name>.md/.csv` into --out and plot's PNG.

  build(runs, **options) -> (markdown, CSV columns, CSV rows); plot(runs, out_dir,
  **options) -> PNG path. A wrong results file raises ResultsError (a UserError: cli.run
  prints its one line).
  """
  paths = flags.FLAGS.results
  runs = load_runs(paths, flags.FLAGS.labels, default)
  markdown, columns, rows = build(runs, **options)
  out_dir = output_dir(flags.FLAGS.out, paths)
  written = write_outputs(out_dir, name, markdown, columns, rows)
  if plot is not None:
    written.append(plot(runs, out_dir, **options))
  for path in written:
    print(f'wrote {path}')


def published_notes(methods: Iterable[str]) -> list[str]:
  return [f'{m} (published, {PROTOCOL}): {PUBLISHED_NOTES[m]}.' for m in methods]


def output_dir(out: str | None, paths: Sequence[str]) -> str:
  out = out or os.path.dirname(os.path.abspath(paths[0]))
  os.makedirs(out, exist_ok=True)
  return out


def write_outputs(
  out_dir: str, name: str, markdown: str, columns: Sequence[str], rows: Iterable[dict]
) -> list[str]:
  """Print the markdown; write `<name>.md` and `<name>.csv` into out_dir; their paths."""
  print(markdown)
  return report.write_table(os.path.join(out_dir, name), markdown, columns, rows)
