"""The literature's evaluation protocols: how each peer turns per-threshold IoUs into the
one number it publishes (../shared/PROTOCOL.md), so that ours can stand beside each peer
in that peer's own protocol. Pure python over results.json's structure."""

from typing import Any, NamedTuple, Sequence

# The two reconstructions in results.json (and every tool that reads the model's outputs).
OUTPUTS = ('refined', 'coarse')


class Protocol(NamedTuple):
  """How one peer publishes: `averaging` (results' AVERAGING), the `thresholds` it may pick
  from (None: every evaluated one), where it `pick`s (`split`: the best on the evaluated
  split itself; `validation`: the best on the validation split, then applied to the
  evaluated split), and a `note` for the reader."""

  averaging: str
  thresholds: tuple[float, ...] | None
  pick: str
  note: str


# Each is reported in results.json's `protocols`.
PROTOCOLS = {
  'pix2vox': Protocol(
    'sample_weighted',
    (0.2, 0.3, 0.4, 0.5),
    'split',
    'Pix2Vox, UMIFormer, LRGT: sample-weighted mean, the best '
    'of t = 0.2/0.3/0.4/0.5 on the evaluated split, per view count',
  ),
  'paper': Protocol(
    'class_mean',
    (0.25,),
    'split',
    "Refine3DNet's paper: class mean at t = 0.25 (its Overall 0.689 is the "
    'class mean of its Table 1 row)',
  ),
  'retr': Protocol(
    'class_mean',
    (0.5,),
    'split',
    '3D-RETR: class mean (unweighted mean of the category means) at t = 0.5',
  ),
  'val_selected': Protocol(
    'sample_weighted',
    None,
    'validation',
    'ours, the clean number: per view count, the threshold of the '
    'best sample-weighted validation IoU, applied to this split',
  ),
}
THRESHOLDS = (0.2, 0.25, 0.3, 0.4, 0.5)  # every threshold a protocol may use
# Which protocol each published row of PROTOCOL.md was measured in; None: not stated there
# (tables then show ours in `pix2vox`, the most common, and say so).
PEERS = {
  '3D-R2N2': None,
  'AttSets': None,
  'Pix2Vox-A': 'pix2vox',
  'Pix2Vox++/A': None,
  'EVolT': None,
  '3D-RETR': 'retr',
  'UMIFormer': 'pix2vox',
  'LRGT': 'pix2vox',
  'LRGT+': None,
  'Refine3DNet': 'paper',
}


def report(
  scores: dict[str, Any], thresholds: Sequence[float], validation: dict[str, Any] | None
) -> dict[str, Any]:
  """results.json's `protocols`: for each of PROTOCOLS, its note and, per view count and
  output, {'iou', 'threshold'} (ties go to the lowest threshold). `validation` is
  `evaluate`'s scores on the validation split (None: no validation split, and
  `val_selected` says so instead of giving numbers; a protocol whose thresholds were not
  all evaluated says which instead)."""
  thresholds = [float(t) for t in thresholds]
  out = {}
  for name, spec in PROTOCOLS.items():
    entry = {'note': spec.note, 'averaging': spec.averaging}
    if spec.pick == 'validation' and validation is None:
      out[name] = {
        **entry,
        'views': None,
        'missing': 'the dataset has no validation split to pick the threshold on',
      }
      continue
    allowed = spec.thresholds or thresholds
    absent = [t for t in allowed if t not in thresholds]
    if absent:
      out[name] = {**entry, 'views': None, 'missing': f'threshold(s) {absent} not evaluated'}
      continue
    views = {}
    for n, by_output in scores['views'].items():
      views[n] = {}
      for output in OUTPUTS:
        ious = by_output[output]['iou'][spec.averaging]
        picker = (
          validation['views'][n][output]['iou'][spec.averaging]
          if spec.pick == 'validation'
          else ious
        )
        i = max((thresholds.index(t) for t in allowed), key=lambda j: (picker[j], -thresholds[j]))
        views[n][output] = {'iou': ious[i], 'threshold': thresholds[i]}
    out[name] = {**entry, 'views': views}
  return out


def of_results(results: dict[str, Any]) -> dict[str, Any]:
  """results.json's `protocols`, or, for a results.json written before it had them, the
  ones its per-threshold IoUs give (all but val_selected)."""
  return results.get('protocols') or report(results, results['thresholds'], None)
