"""Shared by the paper-table scripts: the peers' published numbers, flags, running a script.

A results.json is what `refine3d_jax/evaluate.py` writes to `<workdir>/eval/results.json`;
refine3d_jax/results.py owns its schema (`load_results`, accessors), the captions and the
text helpers, refine3d_jax/report.py the markdown, CSV and document writing. Here: what
only the scripts need. `run_script` loads the runs, prints the markdown and writes
`<name>.md` and `<name>.csv` (and a PNG). Markdown cells without a source are '-'; CSV
cells without one are empty.
"""

import os
from typing import Iterable, Optional, Sequence

from absl import flags

from refine3d_jax import report
from refine3d_jax.results import ResultsError, check_comparable, load_results

PROTOCOL = '../shared/PROTOCOL.md'
STANDARD_VIEWS = (1, 2, 3, 4, 5, 8, 12, 16, 20)
RUN_COLORS = ['black', 'firebrick', 'navy', 'darkgreen']  # ours; the peers get tab20


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


def published_notes(methods: Iterable[str]) -> list[str]:
  return [f"{m} (published, {PROTOCOL}): {PUBLISHED_NOTES[m]}." for m in methods]


def output_dir(out: Optional[str], paths: Sequence[str]) -> str:
  out = out or os.path.dirname(os.path.abspath(paths[0]))
  os.makedirs(out, exist_ok=True)
  return out


def write_outputs(out_dir: str, name: str, markdown: str, columns: Sequence[str],
                  rows: Iterable[dict]) -> list[str]:
  """Print the markdown; write `<name>.md` and `<name>.csv` into out_dir; their paths."""
  print(markdown)
  return report.write_table(os.path.join(out_dir, name), markdown, columns, rows)
