"""The summary: parameter counts against a hand count, FLOPs, and the two commands."""

import json
import math
import subprocess
import sys

from configs import jtso
from refine3d_jax import summary


def hand_count(m) -> dict:
  """Parameters of Refine3DNet counted from the architecture, layer by layer."""
  conv = lambda k, cin, cout, bias=True: k * cin * cout + (cout if bias else 0)
  enc, cin, size = 0, 3, m.image_size
  for i, (w, shortcut) in enumerate(zip(m.encoder_widths, m.encoder_shortcuts)):
    k = m.encoder_first_kernel if i == 0 else 3
    enc += conv(k * k, cin, w) + conv(9, w, w) + (conv(1, cin, w) if shortcut else 0)
    cin, size = w, math.ceil(size / 2)
  enc += conv(1, size * size * cin, m.latent_dim)
  d, mlp = m.latent_dim, m.attention_mlp_dim
  att = m.attention_layers * (2 * d + 4 * (d * d + d) + 2 * d + conv(1, d, mlp) + conv(1, mlp, d))
  if m.attention_block == 'plain':  # Q, K, V and W_O only
    att = m.attention_layers * 4 * (d * d + d)
  if m.fusion == 'attsets':
    att = conv(1, d, d)
  b, widths = m.decoder_base_size, m.decoder_widths
  dec = conv(1, d, b**3 * widths[0]) + conv(1, widths[-1], 1)
  for cin, cout in zip(widths, widths[1:]):
    shortcut = cin != cout or m.decoder_shortcuts == 'conv'
    dec += conv(27, cin, cout) + conv(27, cout, cout) + (conv(1, cin, cout) if shortcut else 0)
  k3, rw = m.refiner_kernel**3, m.refiner_widths
  ref = sum(conv(k3, cin, cout, bias=False) + 2 * cout for cin, cout in zip((1, *rw), rw))
  ref += sum(conv(k3, rw[i + 1], rw[i], bias=False) + 2 * rw[i] for i in range(len(rw) - 1))
  ref += conv(k3, rw[0], 1)
  if m.refiner_bottleneck:  # FC flat -> h -> flat at the lowest resolution
    flat = (m.volume_size // 2 ** len(rw)) ** 3 * rw[-1]
    ref += conv(1, flat, m.refiner_bottleneck) + conv(1, m.refiner_bottleneck, flat)
  return dict(encoder=enc, attention=att, decoder=dec, refiner=ref, total=enc + att + dec + ref)


def test_paper_preset_parameter_count():
  config = jtso.get_config('paper')
  result = summary.summarize(config, views=(1,))
  print('paper preset parameters:', result['params'])
  assert result['params'] == hand_count(config.model)
  # the paper's text: plain attention 4.2M, 1x1 shortcuts, the 33.6M FC bottleneck
  assert result['params']['attention'] == 4 * (1024 * 1024 + 1024)
  assert result['params']['total'] == 48_590_178


def test_our_architecture_choices_parameter_count():
  config = jtso.get_config('paper')
  config.model.update(**jtso.OURS)
  result = summary.summarize(config, views=(1,))
  assert result['params'] == hand_count(config.model)
  assert result['params']['total'] == 19_189_794  # the paper preset before issue 16


def test_attsets_parameter_count():
  config = jtso.get_config('tiny')
  config.model.fusion = 'attsets'
  assert summary.summarize(config, views=(1,))['params'] == hand_count(config.model)


def test_flops_scale_with_views():
  result = summary.summarize(jtso.get_config('tiny'), views=(1, 20))
  one, twenty = result['flops'][1], result['flops'][20]
  for part in ('encoder', 'decoder', 'refiner', 'total'):
    assert one[part] > 0, part
  assert twenty['encoder'] == 20 * one['encoder']
  assert twenty['decoder'] == one['decoder'] and twenty['refiner'] == one['refiner']
  parts = sum(twenty[p] for p in ('encoder', 'attention', 'decoder', 'refiner'))
  assert abs(parts - twenty['total']) < 0.01 * twenty['total']
  table = summary.format_table(result)
  assert 'GFLOPs/object, 20 views' in table and f'{result["params"]["total"]:,}' in table


def run(*args):
  proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc.stdout


def test_summary_command_json():
  out = json.loads(
    run(
      '-m',
      'refine3d_jax.summary',
      '--config=configs/jtso.py:tiny',
      '--json',
      '--views=1,3',
      '--config.model.latent_dim=32',
    )
  )
  config = jtso.get_config('tiny')
  config.model.latent_dim = 32
  assert out['params'] == hand_count(config.model)
  assert set(out['flops']) == {'1', '3'}


def test_bad_config_value_is_one_clear_line():
  proc = subprocess.run(
    [sys.executable, 'main.py', '--config=configs/jtso.py:tiny', '--config.train.num_views=0'],
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines()[-1] == (
    'error: config.train.num_views = 0: must be a positive integer'
  )
  assert 'Traceback' not in proc.stderr
