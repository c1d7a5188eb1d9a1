"""The paper-table scripts of experiments/, run as commands on tests/fixtures/eval/results.json.

The fixture follows evaluate's results.json schema; these tests read what they expect from
it (categories, view counts, thresholds, step), never its numbers, so a fixture written by
the real evaluate command can replace it.
"""

import copy
import csv
import json
import os
import re
import subprocess
import sys

import pytest

from experiments import common
from refine3d_jax import results as results_lib
from tests.results_test import drop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(ROOT, 'tests', 'fixtures', 'eval', 'results.json')
SCRIPTS = ('table1_per_category', 'table2_views', 'table3_cost', 'figure7_refiner', 'ablation_jtso')
WITH_PNG = ('table2_views', 'figure7_refiner', 'ablation_jtso')


def fixture() -> dict:
  with open(FIXTURE) as f:
    return json.load(f)


def write_results(path, results: dict) -> str:
  os.makedirs(os.path.dirname(str(path)), exist_ok=True)
  with open(path, 'w') as f:
    json.dump(results, f)
  return str(path)


def with_schedule(results: dict, schedule: str) -> dict:
  results = copy.deepcopy(results)
  results.setdefault('config', {}).setdefault('train', {})['schedule'] = schedule
  return results


def run(name: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
  proc = subprocess.run(
    [sys.executable, os.path.join(ROOT, 'experiments', name + '.py'), *args],
    capture_output=True,
    text=True,
    timeout=300,
    cwd=ROOT,
  )
  if check:
    assert proc.returncode == 0, proc.stderr
  return proc


def read(out_dir, name: str) -> tuple[str, list[str], list[dict]]:
  """(markdown, CSV header, CSV rows) written by a script; its PNG exists where it makes one."""
  with open(os.path.join(out_dir, name + '.md')) as f:
    markdown = f.read()
  with open(os.path.join(out_dir, name + '.csv'), newline='') as f:
    reader = csv.DictReader(f)
    rows = list(reader)
  if name in WITH_PNG:
    assert os.path.getsize(os.path.join(out_dir, name + '.png')) > 1000
  return markdown, reader.fieldnames, rows


def assert_caption(markdown: str, results: dict, thresholds: bool = True) -> None:
  """The caption names the dataset, split, view protocol, threshold(s), averaging and step."""
  assert f'`{results["dataset"]}`' in markdown
  assert f'split `{results["split"]}`' in markdown
  assert f'`{results["protocol"]["views"]}`' in markdown
  assert f'step {results["checkpoint"]["step"]}' in markdown
  assert 'Threshold:' in markdown and 'Averaging:' in markdown
  if thresholds:
    assert results_lib.thresholds_text(results) in markdown
    assert 'sample-weighted' in markdown and 'class mean' in markdown
  assert (results_lib.SYNTHETIC_WARNING in markdown) == results['synthetic']


def assert_floats(row: dict, keys) -> None:
  for k in keys:
    float(row[k])


@pytest.fixture(scope='module')
def outputs(tmp_path_factory):
  """Every script run once on the fixture (the ablation on two schedules of it): out dir."""
  out = tmp_path_factory.mktemp('out')
  results = fixture()
  jtso = write_results(out / 'in' / 'jtso.json', with_schedule(results, 'jtso'))
  e2e = write_results(out / 'in' / 'e2e.json', with_schedule(results, 'end_to_end'))
  for name in SCRIPTS[:-1]:
    assert '| method |' in run(name, f'--results={FIXTURE}', f'--out={out}').stdout
  run('ablation_jtso', f'--results={jtso},{e2e}', f'--out={out}')
  return out


def test_table1_per_category(outputs):
  results = fixture()
  cats = results['categories']
  markdown, header, rows = read(outputs, 'table1_per_category')
  assert_caption(markdown, results)
  assert header == [
    'method',
    'source',
    'threshold',
    'selection',
    'protocol',
    *cats,
    'mean',
    'class_mean',
  ]
  ours = [r for r in rows if r['source'] == 'ours']
  assert [r['selection'] for r in ours] == ['best'] + ['fixed'] * len(results['thresholds'])
  for r in ours:
    assert_floats(r, [*cats, 'mean', 'class_mean', 'threshold'])
  peers = {r['method']: r for r in rows if r['source'] == 'published'}
  assert peers['LRGT (published)']['mean'] == '0.696'
  assert all(peers[p][c] == '' for p in peers for c in cats)  # none published per category
  assert 'EVolT (published)' not in peers  # it has no 1-view IoU
  assert re.search(r'\| LRGT \(published\) \| pix2vox \| (- \| )+0\.696 \| - \|', markdown)
  by_t = {float(r['threshold']): r['protocol'] for r in ours if r['selection'] == 'fixed'}
  assert 'paper (class mean)' in by_t[0.25] and 'retr (class mean)' in by_t[0.5]
  assert sum('pix2vox (mean)' in v for v in by_t.values()) == 1


def test_table2_views(outputs):
  results = fixture()
  markdown, header, rows = read(outputs, 'table2_views')
  assert_caption(markdown, results)
  views = sorted(set(common.STANDARD_VIEWS) | set(results['view_counts']))
  assert header == [
    'metric',
    'method',
    'source',
    'protocol',
    'averaging',
    'threshold',
    *(f'views_{n}' for n in views),
    *(f't_{n}' for n in views),
  ]
  # ours in each protocol the fixture's thresholds give, each peer beside its own
  ours_iou = {r['protocol']: r for r in rows if r['source'] == 'ours' and r['metric'] == 'iou'}
  assert set(ours_iou) == {'pix2vox', 'paper', 'retr'}  # no val_selected in the fixture
  first = results['view_counts'][0]
  iou = results['views'][str(first)]['refined']['iou']
  ts = results['thresholds']
  assert abs(float(ours_iou['paper'][f'views_{first}']) - iou['class_mean'][ts.index(0.25)]) < 1e-6
  assert abs(float(ours_iou['retr'][f'views_{first}']) - iou['class_mean'][ts.index(0.5)]) < 1e-6
  assert '| LRGT (published) | pix2vox | 0.696 |' in markdown
  assert '| 3D-RETR (published) | retr | 0.680 |' in markdown
  assert '| Refine3DNet (published) | paper | 0.689 |' in markdown
  for r in (r for r in rows if r['source'] == 'ours'):
    assert_floats(r, [f'views_{n}' for n in results['view_counts']])
    assert all(r[f'views_{n}'] == '' for n in views if n not in results['view_counts'])
  for metric, published in (('iou', common.PUBLISHED_IOU), ('fscore', common.PUBLISHED_FSCORE)):
    peers = {r['method']: r for r in rows if r['metric'] == metric and r['source'] != 'ours'}
    assert set(peers) == {f'{m} (published)' for m in published}
    for m, values in published.items():
      for n in views:
        cell = peers[f'{m} (published)'][f'views_{n}']
        assert cell == ('' if n not in values else str(values[n]))
  assert '| LRGT (published) | 0.446 | 0.501 |' in markdown  # F-score


def test_table3_cost(outputs):
  results = fixture()
  markdown, header, rows = read(outputs, 'table3_cost')
  assert_caption(markdown, results, thresholds=False)
  assert header == [
    'method',
    'source',
    'device',
    'views',
    'params',
    'params_encoder',
    'params_attention',
    'params_decoder',
    'params_refiner',
    'peak_memory_mb',
    'forward_ms',
    'backward_ms',
    'per_object',
    'training',
  ]
  peers = {r['method']: r for r in rows if r['source'] == 'published'}
  assert len(peers) == len(common.PUBLISHED_COST)
  assert peers['Pix2Vox-F (published)']['forward_ms'] == '9.25'
  assert peers['Refine3DNet (published)']['backward_ms'] == '78'
  for text in ('35.97M', '| 1407 |', '143M', '| 24 h |'):
    assert text in markdown
  ours = [r for r in rows if r['source'] == 'ours']
  if 'cost' in results:
    assert results['cost']['device'] in markdown
    assert {int(r['views']) for r in ours} == {
      int(k)
      for k in (
        *results['cost']['forward_ms_per_object'],
        *results['cost']['backward_ms_per_object'],
      )
    }
    assert all(int(r['params']) == results['cost']['params']['total'] for r in ours)


def test_table3_without_cost_says_so(tmp_path):
  results = fixture()
  results.pop('cost', None)
  path = write_results(tmp_path / 'results.json', results)
  stdout = run('table3_cost', f'--results={path}').stdout
  assert 'has no `cost` section' in stdout
  markdown, _, rows = read(tmp_path, 'table3_cost')
  assert 'has no `cost` section' in markdown
  assert [r['source'] for r in rows].count('published') == len(common.PUBLISHED_COST)


def test_figure7_refiner(outputs):
  results = fixture()
  markdown, header, rows = read(outputs, 'figure7_refiner')
  assert_caption(markdown, results)
  assert header == [
    'method',
    'views',
    'averaging',
    'coarse_iou',
    'coarse_threshold',
    'refined_iou',
    'refined_threshold',
    'gain',
    'coarse_fscore',
    'refined_fscore',
    'fscore_threshold',
  ]
  assert len(rows) == 2 * len(results['view_counts'])
  for r in rows:
    assert_floats(r, header[3:])
    assert float(r['coarse_threshold']) in results['thresholds']


def test_figure7_at_one_threshold(tmp_path):
  results = fixture()
  t = results['thresholds'][0]
  run('figure7_refiner', f'--results={FIXTURE}', f'--out={tmp_path}', f'--threshold={t}')
  markdown, _, rows = read(tmp_path, 'figure7_refiner')
  assert f't = {t:g}, one of the evaluated set' in markdown
  assert {float(r['refined_threshold']) for r in rows} == {t}
  proc = run(
    'figure7_refiner', f'--results={FIXTURE}', f'--out={tmp_path}', '--threshold=0.123', check=False
  )
  assert proc.returncode != 0 and 'threshold 0.123 was not evaluated' in proc.stderr


def test_ablation_jtso_two_files(outputs):
  results = fixture()
  markdown, header, rows = read(outputs, 'ablation_jtso')
  assert_caption(markdown, results)
  views = sorted(results['view_counts'])
  assert header == [
    'method',
    'schedule',
    'step',
    'averaging',
    *(f'views_{n}' for n in views),
    *(f't_{n}' for n in views),
  ]
  assert [r['method'] for r in rows] == ['jtso'] * 2 + ['end_to_end'] * 2 + [
    'jtso - end_to_end'
  ] * 2
  for r in rows:
    assert_floats(r, [f'views_{n}' for n in views])
  assert '| jtso | jtso |' in markdown and '| end_to_end | end_to_end |' in markdown


def test_ablation_jtso_labels_flag(tmp_path):
  a = write_results(tmp_path / 'a.json', fixture())
  b = write_results(tmp_path / 'b.json', fixture())
  run('ablation_jtso', f'--results={a},{b}', '--labels=JTSO,end-to-end')
  markdown, _, rows = read(tmp_path, 'ablation_jtso')
  assert {r['method'] for r in rows} == {'JTSO', 'end-to-end', 'JTSO - end-to-end'}
  assert 'JTSO: step' in markdown


def test_ablation_jtso_without_schedule_names_the_key(tmp_path):
  results = fixture()
  results.pop('config', None)
  a = write_results(tmp_path / 'a.json', results)
  b = write_results(tmp_path / 'b.json', with_schedule(results, 'end_to_end'))
  proc = run('ablation_jtso', f'--results={a},{b}', check=False)
  assert proc.returncode != 0
  assert a in proc.stderr and "'config'" in proc.stderr and 'Traceback' not in proc.stderr
  results['config'] = {'train': {}}
  write_results(a, results)
  proc = run('ablation_jtso', f'--results={a},{b}', check=False)
  assert a in proc.stderr and "'config.train.schedule'" in proc.stderr


@pytest.mark.parametrize('name', SCRIPTS)
def test_scripts_report_a_missing_key(tmp_path, name):
  key = f'views.{fixture()["view_counts"][0]}.refined.iou.best'
  path = write_results(tmp_path / 'results.json', drop(fixture(), key))
  proc = run(name, f'--results={path},{path}', '--labels=a,b', check=False)
  assert proc.returncode != 0
  assert f"{path}: missing key '{key}'" in proc.stderr and 'Traceback' not in proc.stderr
  assert not os.path.exists(tmp_path / f'{name}.md')


def test_rows_need_distinct_labels():
  with pytest.raises(results_lib.ResultsError, match='share a label'):
    common.load_runs([FIXTURE, FIXTURE])
  assert [r['_label'] for r in common.load_runs([FIXTURE, FIXTURE], ['a', 'b'])] == ['a', 'b']


def test_runs_of_different_evaluations_refuse_one_table(tmp_path):
  a = write_results(tmp_path / 'a.json', fixture())
  b = write_results(tmp_path / 'b.json', {**fixture(), 'split': 'val'})
  proc = run('table2_views', f'--results={a},{b}', check=False)
  assert proc.returncode != 0 and "differ in 'split'" in proc.stderr


def test_shapenet_results_carry_no_synthetic_warning(tmp_path):
  results = {
    **fixture(),
    'dataset': 'shapenet_r2n2',
    'builder_config': 'pix2vox',
    'synthetic': False,
  }
  path = write_results(tmp_path / 'eval' / 'results.json', results)
  run('table2_views', f'--results={path}')  # no --out: next to the results file
  markdown, _, _ = read(tmp_path / 'eval', 'table2_views')
  assert_caption(markdown, results)
  assert 'SYNTHETIC' not in markdown and 'ShapeNet (3D-R2N2 renderings' in markdown


def test_published_numbers_match_protocol():
  """common's transcription against ../shared/PROTOCOL.md, where this checkout has it."""
  path = os.path.join(ROOT, common.PROTOCOL)
  if not os.path.exists(path):
    pytest.skip(f'{path} not in this checkout')
  with open(path) as f:
    text = f.read()
  table = text.split('## Best published results')[1].split('\n## ')[0]
  lines = [l for l in table.splitlines() if l.startswith('| ') and not l.startswith('| method')]
  assert len(lines) == len(common.PUBLISHED_IOU)
  for line in lines:
    method, *cells = [c.strip() for c in line.strip('|').split('|')]
    method = method.split(' (paper')[0]
    for n, cell in zip(common.STANDARD_VIEWS, cells):
      iou, _, f = cell.split(' ')[0].partition('/')
      assert common.PUBLISHED_IOU[method].get(n) == (None if iou == '-' else float(iou))
      assert common.PUBLISHED_FSCORE.get(method, {}).get(n) == (float(f) if f else None)
  cost = text.split('## Cost figures published')[1].split('\n## ')[0]
  for row in common.PUBLISHED_COST:
    assert f'{row["method"]} {row["params_m"]:g}M' in cost
    for key, unit in (
      ('peak_memory_mb', ' MB'),
      ('forward_ms', ' ms forward'),
      ('backward_ms', ' ms backward'),
      ('training', ' training'),
    ):
      if key in row:
        assert f'{row[key]}{unit}' in cost


def _set_iou(results: dict, views: int, value: float) -> dict:
  results = copy.deepcopy(results)
  t = results['thresholds'].index(0.3)
  results['views'][str(views)]['refined']['iou']['sample_weighted'][t] = value
  return results


def views_benchmark(runs_dir, *flags: str) -> subprocess.CompletedProcess:
  """experiments/views_benchmark.py --report_only on `runs_dir` (trains nothing)."""
  return subprocess.run(
    [
      sys.executable,
      'experiments/views_benchmark.py',
      f'--runs_dir={runs_dir}',
      '--report_only',
      *flags,
    ],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=120,
  )


def test_views_benchmark_means_seeds_and_plots(tmp_path):
  base = fixture()
  for row, seed, one, three in (
    ('jtso', 0, 0.40, 0.50),
    ('jtso', 1, 0.42, 0.54),
    ('mean', 0, 0.41, 0.43),
    ('mean', 1, 0.39, 0.45),
  ):
    results = _set_iou(_set_iou(base, 1, one), 3, three)
    results['config']['seed'] = seed
    write_results(tmp_path / 'runs' / f'{row}_seed{seed}' / 'eval' / 'results.json', results)
  result = views_benchmark(
    tmp_path / 'runs', '--rows=jtso,mean', '--seeds=0,1', f'--out={tmp_path / "out"}'
  )
  assert result.returncode == 0, result.stderr[-3000:]
  md = (tmp_path / 'out' / 'views_benchmark.md').read_text()
  cell = r' \| 2 \| 0\.4{} \| [0-9.]+ \| 0\.{} \| \+0\.{} \|'
  assert re.search(r'\| JTSO, self-attention' + cell.format(10, 520, 110), md), md
  assert re.search(r'\| JTSO, mean of views' + cell.format('00', 440, '040'), md), md
  with open(tmp_path / 'out' / 'views_benchmark.csv') as f:
    rows = list(csv.DictReader(f))
  assert [(r['method'], r['seed']) for r in rows] == [
    ('jtso', '0'),
    ('jtso', '1'),
    ('mean', '0'),
    ('mean', '1'),
  ]
  assert (tmp_path / 'out' / 'views_benchmark.png').stat().st_size > 1000


def test_views_benchmark_table_keeps_runs_of_other_rows_and_seeds(tmp_path):
  # Training one row and seed (here: only reporting it) must not drop the finished others.
  base = fixture()
  for row, seed in (('jtso', 0), ('jtso', 1), ('end_to_end', 0)):
    results = copy.deepcopy(base)
    results['config']['seed'] = seed
    write_results(tmp_path / 'runs' / f'{row}_seed{seed}' / 'eval' / 'results.json', results)
  result = views_benchmark(
    tmp_path / 'runs', '--rows=end_to_end', '--seeds=0', f'--out={tmp_path / "out"}'
  )
  assert result.returncode == 0, result.stderr[-3000:]
  with open(tmp_path / 'out' / 'views_benchmark.csv') as f:
    rows = list(csv.DictReader(f))
  assert [(r['method'], r['seed']) for r in rows] == [
    ('jtso', '0'),
    ('jtso', '1'),
    ('end_to_end', '0'),
  ]


def test_views_benchmark_without_runs_is_one_line(tmp_path):
  result = views_benchmark(tmp_path)
  assert result.returncode != 0
  assert result.stderr.strip().splitlines()[-1] == f'error: no finished run in {tmp_path}'


def test_views_benchmark_rows_build_their_models():
  # Every row's overrides are config keys with valid values: each row's model builds (tiny
  # widths), and the paper's options change the parameter count.
  rows = json.loads(
    subprocess.run(
      [
        sys.executable,
        '-c',
        'import json; from experiments import views_benchmark as v; print(json.dumps(v.ROWS))',
      ],
      cwd=ROOT,
      capture_output=True,
      text=True,
      check=True,
      timeout=60,
    ).stdout
  )
  totals = {}
  for row in ('jtso', 'paper_options'):
    config, sets = rows[row]
    out = subprocess.run(
      [
        sys.executable,
        '-m',
        'refine3d_jax.summary',
        f'--config={config}:tiny',
        *(f'--config.{k}={v}' for k, v in sets.items()),
      ],
      cwd=ROOT,
      capture_output=True,
      text=True,
      timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    totals[row] = re.search(r'^total\s+([0-9,]+)', out.stdout, re.M).group(1)
  assert totals['jtso'] != totals['paper_options'], totals


def test_against_pix2vox_names_a_folder_that_is_no_checkout(tmp_path):
  # checked before torch is imported, so this runs where torch is not installed
  proc = subprocess.run(
    [sys.executable, 'experiments/against_pix2vox.py', f'--pix2vox_dir={tmp_path}'],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert proc.returncode == 1
  want = f'error: --pix2vox_dir={tmp_path} has no config.py (a hzxie/Pix2Vox checkout?)'
  assert proc.stderr.strip() == want
