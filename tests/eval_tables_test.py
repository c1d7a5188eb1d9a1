"""evaluate's tables and files, on tests/fixtures/eval/results.json."""

import json
import os

from refine3d_jax import eval_tables
from tests.results_test import fixture


def test_tables_of_one_run():
  run = fixture()
  header, rows = eval_tables.views_table(run)
  assert header[:3] == ['output', 'views', 'IoU best'] and len(rows) == 2 * len(run['view_counts'])
  header, rows = eval_tables.category_table(run)
  assert [r[0] for r in rows] == [*run['categories'], 'mean (sample-weighted)', 'mean (class-mean)']
  assert len(header) == len(rows[0]) == 4 + len(run['view_counts'])


def test_checked_in_fixture_renders(tmp_path):
  """tests/fixtures/eval/results.json (made by evaluate on a tiny model, see its README)
  still renders: the experiments scripts' tests read it."""
  text = eval_tables.write_evaluation(fixture(), str(tmp_path))
  assert 'IoU best' in text and os.path.exists(tmp_path / 'iou_vs_views.png')
  with open(tmp_path / 'results.json') as f:
    assert json.load(f) == fixture()
  assert not os.path.exists(tmp_path / 'table_protocols.md')  # the fixture has none


def test_protocols_table_and_notes(tmp_path):
  from refine3d_jax import protocols  # pylint: disable=import-outside-toplevel

  run = fixture()
  run['protocols'] = protocols.of_results(run)
  header, rows = eval_tables.protocols_table(run)
  assert header == ['views', 'pix2vox', 'pix2vox t', 'paper', 'paper t', 'retr', 'retr t']
  assert [r[0] for r in rows] == run['view_counts']
  assert '(not given: the dataset has no validation split' in eval_tables.protocols_text(run)
  eval_tables.write_evaluation(run, str(tmp_path))
  with open(tmp_path / 'table_protocols.md') as f:
    assert f.read().startswith('Refined IoU in each named protocol')
