"""The bench command on the tiny model: every field present, valid JSON (no timings
asserted); the per-layer convolution timing."""

import json
import os
import re
import subprocess
import sys

import jax
import pytest

from configs import jtso as jtso_config
from refine3d_jax import bench, input_pipeline, layer_bench
from tests.testutil import trace_packed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_bench_emits_every_field(tiny_data_dir):
  proc = subprocess.run(
    [
      sys.executable,
      '-m',
      'refine3d_jax.bench',
      '--config=configs/jtso.py:tiny',
      '--config.model.volume_size=16',
      '--config.model.refiner_widths=(4,4)',
      f'--config.data.data_dir={tiny_data_dir}',
      '--config.data.builder_config=tiny',
      '--config.data.num_threads=1',
      '--steps=1',
      '--batch=2',
      '--views=1,2',
      '--latency_batches=1',
      '--json',
    ],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=600,
    check=False,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = proc.stdout.strip().splitlines()
  r = json.loads(lines[-1])
  assert 'matmul ceiling' in proc.stdout and 'of ceiling' in proc.stdout
  assert r['device'].startswith('cpu') and r['views'] == 2 and r['batch'] == 2
  assert set(r['train']) == {'base', 'att', 'jtso'}
  for stage in r['train'].values():
    assert set(stage) == {
      'compile_s',
      'warmup_steps',
      'step_s',
      'examples_per_s',
      'gflops_per_step',
      'gflops_per_s',
      'fraction_of_ceiling',
    }
    assert all(v > 0 for v in stage.values()) and stage['warmup_steps'] <= 10
  # the multi-view stages do more work than the single-view one
  assert r['train']['jtso']['gflops_per_step'] > r['train']['base']['gflops_per_step']
  assert set(r['modules']) == {'encoder', 'attention', 'decoder', 'refiner'}
  for m in r['modules'].values():
    assert set(m) == {'ms', 'gflops', 'gflops_per_s', 'share', 'fraction_of_ceiling'}
    assert all(v > 0 for v in m.values())
  assert abs(sum(m['share'] for m in r['modules'].values()) - 1) < 1e-9
  assert 'modules alone' in proc.stdout
  assert set(r['inference']) == {'1v_b1_ms_per_object', '20v_b1_ms_per_object'}
  # the model's size as `summary` counts it; 20 views cost more than 1
  assert r['model']['params'] > 0 and 'parameters, forward GFLOPs per object' in proc.stdout
  g = r['model']['gflops_per_object']
  assert set(g) == {'1', '20'} and g['20'] > g['1'] > 0
  assert r['input_pipeline']['examples_per_s'] > 0 and r['input_pipeline']['ratio_to_step'] > 0
  assert isinstance(r['huge_pages'], bool) and isinstance(r['keeps_freed_memory'], bool)
  assert isinstance(r['free_page_reporting'], bool)
  assert r['memory']['host_peak_rss_mb'] > 0 and r['matmul_gflops']['float32'] > 0
  assert r['matmul_size'] == {'float32': r['matmul_size']['float32']}
  assert r['matmul_size']['float32'] in (1024, 2048)
  # the tiny run projected from these rates: one epoch (2 steps) of the 5 tiny objects, all
  # in stage 1 (stage 2 starts at epoch 80)
  t = r['run_time']
  assert list(t['train_s']) == ['base'] and t['steps'] == t['steps_per_epoch'] == 2
  assert t['total_s'] == sum(t['train_s'].values()) + t['validate_s'] + t['evaluate_s'] > 0
  assert 'a whole run of this config at these rates: ' in proc.stdout


def test_layer_bench_times_both_lowerings(monkeypatch, capsys):
  monkeypatch.setitem(layer_bench.CONV2D_LAYERS, 'tiny', [(4, 3, 8, 3)])
  monkeypatch.setitem(layer_bench.CONV3D_LAYERS, 'tiny', [(4, 2, 3, 3)])
  layer_bench.main(['layer_bench', 'conv2d', 'tiny', '1'])
  layer_bench.main(['layer_bench', 'conv3d', 'tiny', '1'])
  monkeypatch.setitem(layer_bench.UP3D_LAYERS, 'tiny', [(4, 2, 3, 4), (4, 2, 3, 3)])
  layer_bench.main(['layer_bench', 'up3d', 'tiny', '1'])
  monkeypatch.setitem(layer_bench.PHASE3D_LAYERS, 'tiny', [(4, 1, 2, 4)])
  layer_bench.main(['layer_bench', 'phases3d', 'tiny', '1'])
  out = capsys.readouterr().out
  assert '4 px   3->  8 k3:  native' in out and 'matmul' in out and 'mixed' in out
  assert ' 4^3   2->  3 k3:  native' in out and 'fold ' in out and 'fold2n' in out
  assert ' 4^3   2->  3 k4:  upsample+conv' in out and 'coarse' in out and 'dual n/a' in out
  assert out.count('dual n/a') == 1 and re.search(r' 4\^3   2->  3 k3: .* dual +\d', out)
  assert ' 4^3   1->  2 k4:  conv+s2d' in out
  with pytest.raises(SystemExit, match='usage: python -m refine3d_jax.layer_bench'):
    layer_bench.main(['layer_bench', 'conv4d'])


def test_bench_train_only_skips_the_rest():
  config = jtso_config.get_config('tiny')
  config.model.volume_size = 16
  config.model.refiner_widths = (4, 4)
  r = bench.run(config, batch=2, views=(1, 2), steps=1, train_only=True)
  assert set(r['train']) == {'base', 'att', 'jtso'}
  assert all(s['fraction_of_ceiling'] > 0 for s in r['train'].values())
  # a float32 model: float32's ceiling only, bfloat16's too on GPUs
  cpu = jax.default_backend() == 'cpu'
  assert set(r['matmul_gflops']) == ({'float32'} if cpu else {'float32', 'bfloat16'})
  for s in r['train'].values():
    assert s['fraction_of_ceiling'] == pytest.approx(
      s['gflops_per_s'] / r['matmul_gflops']['float32']
    )
  assert not {'modules', 'inference', 'input_pipeline', 'run_time'} & set(r)
  table = bench.format_table(r)
  assert 'of ceiling' in table and 'modules alone' not in table


def test_bench_measures_a_bfloat16_model_against_the_bfloat16_matmul(monkeypatch):
  """A bfloat16 model's fraction is of the bfloat16 ceiling, on CPUs too (it was a KeyError
  there: only float32's was measured); a float32 model's: test_bench_train_only_skips_the_rest."""
  measured = []
  ceilings = {'float32': 100.0, 'bfloat16': 400.0}

  def fake_ceiling(dtype, sizes, repeats=10):
    measured.append(dtype)
    return ceilings[dtype], sizes[0]

  monkeypatch.setattr(bench, 'matmul_ceiling', fake_ceiling)
  config = jtso_config.get_config('tiny')
  config.model.volume_size = 16
  config.model.refiner_widths = (4, 4)
  config.model.dtype = 'bfloat16'
  r = bench.run(config, batch=2, views=(1, 2), steps=1, train_only=True)
  assert sorted(measured) == ['bfloat16', 'float32'] and r['dtype'] == 'bfloat16'
  assert r['matmul_gflops'] == ceilings and 'bfloat16 400.0 GFLOP/s' in bench.format_table(r)
  for s in r['train'].values():
    assert s['fraction_of_ceiling'] == pytest.approx(s['gflops_per_s'] / 400.0)


def test_bench_times_the_packed_step_where_training_packs(monkeypatch):
  """With data.paired_views, the bench's batches hold pairs of min_views + views real views
  and its multi-view steps are traced with that `packed`, as in training; stage 1 with 0."""
  config = jtso_config.get_config('tiny')
  config.model.volume_size = 16
  config.model.refiner_widths = (4, 4)
  config.data.update(min_views=1, paired_views=True)
  mask = bench.random_batch(bench.with_batch(config, 6, 3), 6, 3)['mask']
  input_pipeline.check_pairs(mask, 4)
  assert mask[:, 0].all() and len({tuple(m) for m in mask}) > 1
  with trace_packed(monkeypatch) as traced:
    bench.run(config, batch=2 * jax.device_count(), views=(1, 3), steps=1, train_only=True)
  # each stage traced by its jitted step and by the FLOP count
  assert sorted(set(traced)) == [('att', 4), ('base', 0), ('jtso', 4)]
  config.data.paired_views = False
  assert bench.random_batch(config, 6, 3)['mask'].all()
