"""Figures of results.json: evaluate's IoU against views, and the PNG ending of every figure.

matplotlib is imported when a figure is drawn, not with this module.
"""

import os
from typing import Any

from refine3d_jax import report
from refine3d_jax.protocols import OUTPUTS


def plot_views(results: dict[str, Any], path: str) -> None:
  """iou_vs_views.png: refined and coarse IoU (best threshold, sample-weighted)."""
  import matplotlib  # pylint: disable=import-outside-toplevel

  matplotlib.use('Agg')
  from matplotlib.figure import Figure  # pylint: disable=import-outside-toplevel

  fig = Figure(figsize=(6, 3.8))
  ax = fig.subplots()
  counts = results['view_counts']
  for name, style in zip(OUTPUTS, ('-o', '--s')):
    ax.plot(
      counts,
      [results['views'][str(n)][name]['iou']['best']['sample_weighted']['value'] for n in counts],
      style,
      label=name,
    )
  ax.set(
    xlabel='views',
    ylabel='IoU (best threshold, sample-weighted)',
    title=f'{results["dataset"]} {results["split"]}'
    + (' (synthetic)' if results['synthetic'] else ''),
  )
  ax.set_xticks(counts)
  ax.grid(alpha=0.3)
  ax.legend()
  report.save_figure(fig, path)


def save_png(fig: Any, out_dir: str, name: str) -> str:
  """`<out_dir>/<name>.png` (atomically); returns its path."""
  path = os.path.join(out_dir, name + '.png')
  report.save_figure(fig, path)
  return path


def finish_figure(fig: Any, ax: Any, out_dir: str, name: str) -> str:
  """Grid and legend on `ax`, then `<out_dir>/<name>.png`; closes the figure, returns the path."""
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  path = save_png(fig, out_dir, name)
  plt.close(fig)
  return path
