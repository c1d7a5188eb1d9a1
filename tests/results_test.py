"""results.json on tests/fixtures/eval/results.json: schema checks, accessors, captions."""

import copy
import json
import os

import pytest

from refine3d_jax import plots, results

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(ROOT, 'tests', 'fixtures', 'eval', 'results.json')


def fixture() -> dict:
  with open(FIXTURE) as f:
    return json.load(f)


def drop(tree: dict, dotted: str) -> dict:
  """A deep copy of `tree` without the key at the dotted path."""
  tree = copy.deepcopy(tree)
  *parents, last = dotted.split('.')
  node = tree
  for key in parents:
    node = node[key]
  del node[last]
  return tree


def write(path, tree: dict) -> str:
  with open(path, 'w') as f:
    json.dump(tree, f)
  return str(path)


def test_fixture_follows_the_schema():
  run = results.load_results(FIXTURE)
  assert len(run['categories']) >= 2 and run['view_counts'] and run['_path'] == FIXTURE


def _missing_keys() -> list[str]:
  run = fixture()
  n, cat = run['view_counts'][-1], run['categories'][-1]
  return [
    'split',
    'checkpoint.step',
    'protocol.views',
    f'counts.{cat}',
    f'views.{n}',
    f'views.{n}.coarse.iou.best',
    f'views.{n}.refined.iou.per_category.{cat}',
    f'views.{n}.refined.fscore.class_mean',
    'cost.params.total',
  ]


@pytest.mark.parametrize('key', _missing_keys())
def test_missing_key_names_file_and_key(tmp_path, key):
  path = write(tmp_path / 'results.json', drop(fixture(), key))
  with pytest.raises(results.ResultsError) as e:
    results.load_results(path)
  assert str(e.value) == f"{path}: missing key '{key}'"


def test_cost_is_optional_and_unreadable_files_are_results_errors(tmp_path):
  assert 'cost' not in results.validate(drop(fixture(), 'cost'), 'x.json')
  with pytest.raises(results.ResultsError, match='cannot read results.json'):
    results.load_results(str(tmp_path / 'absent.json'))
  with pytest.raises(results.ResultsError, match='not a JSON object'):
    results.load_results(write(tmp_path / 'list.json', []))


def test_wrong_length_per_threshold_list():
  run = fixture()
  n = run['view_counts'][0]
  run['views'][str(n)]['refined']['iou']['sample_weighted'].pop()
  with pytest.raises(
    results.ResultsError, match=f"'views.{n}.refined.iou.sample_weighted' must be a list of"
  ):
    results.validate(run, 'x.json')


def test_runs_of_different_evaluations_are_not_comparable():
  a = {**fixture(), '_path': 'a.json'}
  results.check_comparable([a, {**a, '_path': 'b.json'}])
  with pytest.raises(results.ResultsError, match="b.json and a.json differ in 'split'"):
    results.check_comparable([a, {**a, 'split': 'val', '_path': 'b.json'}])


def test_accessors():
  run = {**fixture(), '_path': 'x.json'}
  n, ts = run['view_counts'][0], run['thresholds']
  section = run['views'][str(n)]['refined']['iou']
  best = section['best']['class_mean']
  assert results.iou(run, n, averaging='class_mean') == (best['value'], best['threshold'])
  assert results.iou(run, n, 'coarse', threshold=ts[1]) == (
    run['views'][str(n)]['coarse']['iou']['sample_weighted'][1],
    ts[1],
  )
  assert results.iou(run, 99) == (None, None) and results.fscore(run, 99) is None
  assert results.fscore(run, n) == run['views'][str(n)]['refined']['fscore']['sample_weighted']
  assert results.threshold_index(run, ts[-1] + 1e-12) == len(ts) - 1
  with pytest.raises(results.ResultsError, match='threshold 0.123 was not evaluated'):
    results.threshold_index(run, 0.123)
  with pytest.raises(results.ResultsError, match='no 99-view results'):
    results.require_views(run, 99)
  assert results.config_value(run, 'train.schedule') == run['config']['train']['schedule']
  assert results.config_value({**run, 'config': {'a.b': 1}}, 'a.b') == 1
  with pytest.raises(results.ResultsError, match="x.json: missing key 'config.train.nope'"):
    results.config_value(run, 'train.nope')


def test_captions_carry_no_absolute_path(tmp_path):
  run = fixture()
  run['checkpoint']['workdir'] = str(tmp_path / 'runs' / 'quick')
  text = results.eval_caption(run)
  assert str(tmp_path) not in text and text.endswith(' of runs/quick.')
  assert 'SYNTHETIC' in text and 'first n views (00..n-1)' in text
  labelled = results.caption([{**run, '_label': 'ours'}], 'Title.', threshold='t', averaging='a')
  assert str(tmp_path) not in labelled
  assert labelled.startswith(f'Title. **{results.SYNTHETIC_WARNING}.** Data: synthetic shapes')
  assert labelled.endswith('Checkpoint: ours: step 4 (best checkpoint of `runs/quick`).')


def test_views_text_names_the_protocol():
  assert results.views_text({'views': 'random', 'seed': 3}) == 'n random views (seed 3)'
  assert results.views_text({'views': 'first_n', 'seed': 0}) == 'first n views (00..n-1)'


def test_figures_are_written_and_closed(tmp_path):
  import matplotlib  # pylint: disable=import-outside-toplevel

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  fig, ax = plt.subplots()
  ax.plot([1, 2], [0.5, 0.6], label='x')
  path = plots.finish_figure(fig, ax, str(tmp_path), 'f')
  assert path == str(tmp_path / 'f.png') and os.path.getsize(path) > 0
  assert not plt.fignum_exists(fig.number)
  fig, _ = plt.subplots()
  assert os.path.getsize(plots.save_png(fig, str(tmp_path), 'g')) > 0
  plt.close(fig)
