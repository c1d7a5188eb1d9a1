r"""The ablation baseline: Refine3DNet trained end to end (no JTSO stages).

Every parameter group learns from the multi-view loss from the first step; everything
else is configs/jtso.py's preset (`quick` default, `paper`, `tiny`).
  python main.py --config=configs/end_to_end.py --workdir=runs/end_to_end_quick
  python main.py --config=configs/end_to_end.py:paper --workdir=runs/end_to_end_paper
"""

import ml_collections

from configs import jtso


def get_config(preset: str = 'quick') -> ml_collections.ConfigDict:
  config = jtso.get_config(preset)
  config.train.schedule = 'end_to_end'
  return config
