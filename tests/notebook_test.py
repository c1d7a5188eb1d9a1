"""notebooks/refine3d_jax.ipynb runs top to bottom, as CI runs it: REFINE3D_NOTEBOOK=tiny
(tiny preset and dataset, a few steps) on CPU, in a real kernel (nbclient)."""

import os

import nbclient
import nbformat
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, 'notebooks', 'refine3d_jax.ipynb')


def _text(output) -> str:
  if output.get('output_type') == 'stream':
    return output.get('text', '')
  return str(output.get('data', {}).get('text/plain', '')) + output.get('evalue', '')


@pytest.mark.slow
def test_notebook_runs_top_to_bottom(tmp_path, monkeypatch):
  monkeypatch.setenv('REFINE3D_NOTEBOOK', 'tiny')
  monkeypatch.setenv('REFINE3D_NOTEBOOK_OUT', str(tmp_path))
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  assert not any(c.get('outputs') for c in notebook.cells if c.cell_type == 'code'), (
    'commit the notebook without outputs'
  )
  # Opened where it lies, as a user of a clone would: its first cells move to the root.
  nbclient.NotebookClient(
    notebook,
    timeout=600,
    kernel_name='python3',
    resources={'metadata': {'path': os.path.dirname(NOTEBOOK)}},
  ).execute()  # raises CellExecutionError on the first failing cell
  # A failing shell command (`!python ...`) does not fail its cell: its one-line error does.
  for cell in notebook.cells:
    for output in cell.get('outputs', []):
      text = _text(output)
      assert 'Traceback' not in text and '\nerror: ' not in '\n' + text, (cell.source, text)
  recon = tmp_path / 'reconstruction'
  assert (recon / 'preview.png').stat().st_size > 1000
  assert (recon / 'mesh.obj').exists() and (recon / 'model.binvox').exists()
  assert (tmp_path / 'run' / 'eval' / 'results.json').exists()
