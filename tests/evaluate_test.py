"""The evaluate command on a tiny trained workdir: files, numbers, protocols, errors."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from refine3d_jax import eval_loop, evaluate, input_pipeline, protocols
from refine3d_jax import trained as trained_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def trained(tiny_workdir):
  """conftest's tiny workdir (synthetic_shapes/tiny: 5 test objects, one per category)."""
  return tiny_workdir


@pytest.fixture(scope='module')
def results(trained):
  config = trained_lib.load_config(trained)  # the config saved with the checkpoint
  config.eval.view_counts = (1, 3)
  return evaluate.run(trained, progress=False, config=config), trained


def test_writes_every_file_with_the_protocol(results):
  res, workdir = results
  out = os.path.join(workdir, 'eval')
  for name in (
    'results.json',
    'table_views.md',
    'table_views.csv',
    'table_per_category.md',
    'table_per_category.csv',
    'iou_vs_views.png',
  ):
    assert os.path.getsize(os.path.join(out, name)) > 0, name
  assert not [f for f in os.listdir(out) if f.endswith('.tmp')]
  with open(os.path.join(out, 'results.json')) as f:
    assert json.load(f) == json.loads(json.dumps(res))
  assert res['protocol'] == {'views': 'first_n', 'seed': 0, 'image': 'r2n2_127'}
  assert res['thresholds'] == [0.2, 0.25, 0.3, 0.4, 0.5]
  assert res['checkpoint']['step'] == 2 and res['checkpoint']['which'] == 'best'
  for name in ('table_views.md', 'table_per_category.md'):
    with open(os.path.join(out, name)) as f:
      text = f.read()
    assert 'SYNTHETIC' in text and 'first n views' in text and '0.25' in text, text


def test_numbers_are_consistent(results):
  res, _ = results
  assert res['num_objects'] == 5 and len(res['categories']) == 5
  assert set(res['counts'].values()) == {1}
  assert res['view_counts'] == [1, 3] and set(res['views']) == {'1', '3'}
  for n in ('1', '3'):
    for output in ('refined', 'coarse'):
      r = res['views'][n][output]
      sw, cm = r['iou']['sample_weighted'], r['iou']['class_mean']
      assert len(sw) == 5 and all(0 <= x <= 1 for x in sw)
      # one object per category: both averages agree
      np.testing.assert_allclose(sw, cm, atol=1e-6)
      best = r['iou']['best']['sample_weighted']
      assert best['value'] == max(sw)
      assert best['threshold'] == res['thresholds'][int(np.argmax(sw))]
      per_cat = np.array([r['iou']['per_category'][c] for c in res['categories']])
      np.testing.assert_allclose(per_cat.mean(axis=0), sw, atol=1e-6)
      assert 0 <= r['fscore']['sample_weighted'] <= 1
  cost = res['cost']
  assert cost['params']['total'] == sum(
    cost['params'][k] for k in ('encoder', 'attention', 'decoder', 'refiner')
  )
  assert cost['forward_ms_per_object']['1'] > 0 and cost['backward_ms_per_object']['1'] > 0


def test_iou_matches_a_direct_computation(results, tiny_data_dir):
  """The sample-weighted IoU of 3 views equals numpy IoU of the model's own outputs on
  views 0, 1, 2 of each test object (first_n)."""
  res, workdir = results
  config, model, variables, _ = trained_lib.restore_trained(workdir)
  ious = []
  for batch in input_pipeline.eval_dataset(config, 'test', 3):
    valid = batch['valid']
    assert (batch['views'][valid] == [0, 1, 2]).all()  # the first-n protocol
    inputs = input_pipeline.model_inputs(batch, config.model.volume_size)
    probs = np.asarray(model.apply(variables, inputs['images'], inputs['mask'])['refined'])
    for p, gt in zip(probs[valid], inputs['voxels'][valid]):
      pred = p[None] >= np.array(res['thresholds'])[:, None, None, None]
      inter = (pred & gt).sum(axis=(1, 2, 3))
      union = (pred | gt).sum(axis=(1, 2, 3))
      ious.append(np.where(union == 0, 1.0, inter / np.maximum(union, 1)))
  np.testing.assert_allclose(
    np.mean(ious, axis=0), res['views']['3']['refined']['iou']['sample_weighted'], atol=1e-6
  )


def test_missing_checkpoint_is_one_clear_error(tmp_path):
  proc = subprocess.run(
    [sys.executable, '-m', 'refine3d_jax.evaluate', f'--workdir={tmp_path}'],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert proc.returncode != 0
  assert f'{tmp_path}: no checkpoints' in proc.stderr, proc.stderr[-2000:]
  assert 'Traceback' not in proc.stderr


def test_one_nested_pass_scores_like_a_pass_per_count(trained, monkeypatch):
  """first_n: one pass encodes 3 views and scores 1 and 3 from them; the same numbers as a
  separate pass per count (what the random protocol does)."""
  config, model, variables, _ = trained_lib.restore_trained(trained)
  config.eval.view_counts = (1, 3)
  assert eval_loop.view_passes(config, (1, 3)) == [(3, (1, 3))]
  nested = evaluate.evaluate(config, model, variables, progress=False)
  monkeypatch.setattr(eval_loop, 'view_passes', lambda c, counts: [(n, (n,)) for n in counts])
  separate = evaluate.evaluate(config, model, variables, progress=False)
  for n in ('1', '3'):
    for output in ('refined', 'coarse'):
      a, b = nested['views'][n][output], separate['views'][n][output]
      np.testing.assert_allclose(
        a['iou']['sample_weighted'], b['iou']['sample_weighted'], atol=1e-6
      )
      assert abs(a['fscore']['sample_weighted'] - b['fscore']['sample_weighted']) < 1e-3
  monkeypatch.undo()
  config.data.eval_views = 'random'
  assert eval_loop.view_passes(config, (1, 3)) == [(1, (1,)), (3, (3,))]


def test_protocols_are_each_peers_rule(results, trained):
  """pix2vox: sample-weighted best of 0.2/0.3/0.4/0.5; paper: class mean at 0.25; retr:
  class mean at 0.5; val_selected: the validation split's best threshold, applied here."""
  res, _ = results
  ts = res['thresholds']
  assert set(res['protocols']) == {'pix2vox', 'paper', 'retr', 'val_selected'}
  config, model, variables, _ = trained_lib.restore_trained(trained)
  config.eval.view_counts = (1, 3)
  val = evaluate.evaluate(config, model, variables, 'validation', progress=False, fscore=False)
  for n in ('1', '3'):
    for output in ('refined', 'coarse'):
      iou = res['views'][n][output]['iou']
      got = {name: p['views'][n][output] for name, p in res['protocols'].items()}
      allowed = (0.2, 0.3, 0.4, 0.5)
      values = [iou['sample_weighted'][ts.index(t)] for t in allowed]  # ties: the lowest t
      assert got['pix2vox'] == {'iou': max(values), 'threshold': allowed[int(np.argmax(values))]}
      assert got['paper'] == {'iou': iou['class_mean'][ts.index(0.25)], 'threshold': 0.25}
      assert got['retr'] == {'iou': iou['class_mean'][ts.index(0.5)], 'threshold': 0.5}
      chosen = ts[int(np.argmax(val['views'][n][output]['iou']['sample_weighted']))]
      assert got['val_selected'] == {
        'iou': iou['sample_weighted'][ts.index(chosen)],
        'threshold': chosen,
      }
  assert np.isnan(val['views']['1']['refined']['fscore']['sample_weighted'])
  without = protocols.report(res, ts, None)['val_selected']
  assert without['views'] is None and 'no validation split' in without['missing']
  with open(os.path.join(trained, 'eval', 'table_protocols.md')) as f:
    text = f.read()
  assert 'class mean at t = 0.25' in text and 'val_selected' in text


def test_a_protocol_needs_its_thresholds(results):
  res, _ = results
  five = protocols.report(res, res['thresholds'], None)
  assert five['paper']['views'] is not None
  old = dict(
    res,
    thresholds=[0.2, 0.3, 0.4, 0.5],
    views={
      n: {
        o: {
          'iou': {
            a: [v for t, v in zip(res['thresholds'], r[o]['iou'][a]) if t != 0.25]
            for a in ('sample_weighted', 'class_mean')
          }
        }
        for o in ('refined', 'coarse')
      }
      for n, r in res['views'].items()
    },
  )
  del old['protocols']
  got = protocols.of_results(old)
  assert got['paper']['missing'] == 'threshold(s) [0.25] not evaluated'
  assert got['pix2vox']['views'] == five['pix2vox']['views']
