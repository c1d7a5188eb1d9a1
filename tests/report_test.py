"""refine3d_jax.report: atomic files, table cells, markdown and CSV tables, documents."""

import csv
import os

import pytest

from refine3d_jax import report


def test_atomic_write_leaves_nothing_behind_on_failure(tmp_path):
  path = tmp_path / 'sub' / 'a.txt'
  with report.atomic_write(str(path)) as f:
    f.write('one')
  with pytest.raises(RuntimeError):
    with report.atomic_write(str(path)) as f:
      f.write('two')
      raise RuntimeError('boom')
  assert path.read_text() == 'one' and os.listdir(path.parent) == ['a.txt']


def test_cells():
  assert [report.fmt(v) for v in (None, 0.5, 3, 'x')] == ['-', '0.500', '3', 'x']
  assert report.fmt(1.23456, 2) == '1.23'
  assert [report.csv_value(v) for v in (None, 1 / 3, 3, 'x')] == ['', 0.333333, 3, 'x']
  assert report.csv_value(1 / 3, None) == 1 / 3


def test_markdown_table_and_document():
  table = report.markdown_table(['a', 'b'], iter([[1, 0.5], ['x', None]]), caption='Cap.')
  assert table == 'Cap.\n\n| a | b |\n|---|---|\n| 1 | 0.500 |\n| x | - |\n'
  doc = report.document(
    ('Cap.', report.markdown_table(['a'], [[1]]), ['note']), ('Two.', '| b |', [])
  )
  assert doc == 'Cap.\n\n| a |\n|---|\n| 1 |\n\n- note\n\nTwo.\n\n| b |\n'


def test_write_table_md_and_csv(tmp_path):
  stem = str(tmp_path / 't')
  paths = report.write_table(stem, '# md\n', ['a', 'b'], [{'a': 1 / 3}, [None, 'x']])
  assert paths == [stem + '.md', stem + '.csv']
  assert (tmp_path / 't.md').read_text() == '# md\n'
  with open(stem + '.csv', newline='') as f:
    assert list(csv.reader(f)) == [['a', 'b'], ['0.333333', ''], ['', 'x']]
  report.write_table(stem, '', ['a'], [[1 / 3]], digits=None)
  with open(stem + '.csv', newline='') as f:
    assert float(list(csv.reader(f))[1][0]) == 1 / 3
