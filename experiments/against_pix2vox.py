r"""Times Pix2Vox (Xie et al., ICCV 2019) with its own PyTorch modules, for BENCHMARKS.md's
"Against Pix2Vox on the same machine"; ours are timed by `python -m refine3d_jax.bench`.

  git clone -b Pix2Vox-F https://github.com/hzxie/Pix2Vox /tmp/Pix2Vox-F   # or Pix2Vox-A
  pip install torch torchvision easydict        # not dependencies of refine3d_jax
  python experiments/against_pix2vox.py --pix2vox_dir=/tmp/Pix2Vox-F [--threads=2] [--json]

The checkout's `config.py` and `models/` are imported as they are (nothing of them is in
this project); its VGG16-BN is built without pretrained weights, which changes no shape or
time. Figures, as `bench` reports ours: parameters (all and trained: Pix2Vox freezes the
VGG layers), FLOPs per object at 1 and 20 views (torch's FlopCounterMode, a multiply-add as
2, convolutions and matmuls only), inference latency at batch 1 (eval mode, no autograd)
with 1 and 20 views, and one training step at `--batch` objects x `--views` views: its
train.py's forward (encoder, decoder, merger or mean, refiner where the variant has one),
10 x BCE of the fused volume plus, with a refiner, 10 x BCE of the refined one, backward
and Adam on every trained parameter, and that step's FLOPs (counted as above over its
forward and backward: the frozen VGG layers take no gradient, so their backward is not
run). Training steps: the median of `--repeats` after one counted, untimed call;
latency: of `--latency_repeats` after `--latency_warmup` calls (as `bench` times ours: a
process's first calls run slower); images are `--size`² (Pix2Vox: 224),
volumes 32³; the float32 2048³ matmul of the same process is the machine's ceiling as torch
sees it.
"""

import argparse
import importlib
import json
import os
import statistics
import sys
import time


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--pix2vox_dir', required=True, help='a checkout of hzxie/Pix2Vox')
  parser.add_argument('--threads', type=int, default=0, help='torch threads (0: the cores)')
  parser.add_argument('--batch', type=int, default=4, help='objects per training step')
  parser.add_argument('--views', type=int, default=3, help='views per training example')
  parser.add_argument('--latency_views', default='1,20', help='view counts of the latency')
  parser.add_argument('--size', type=int, default=224, help='image side (Pix2Vox: 224)')
  parser.add_argument('--repeats', type=int, default=3, help='timed training steps')
  parser.add_argument('--latency_repeats', type=int, default=10, help='timed calls per latency')
  parser.add_argument('--latency_warmup', type=int, default=3, help='untimed calls before them')
  parser.add_argument('--json', action='store_true', help='also print one JSON line')
  return parser.parse_args(argv)


def load_pix2vox(directory: str):
  """{name: module} of the checkout in `directory`; one clear error if it is not one."""
  for name in ('config.py', 'models/encoder.py', 'models/decoder.py', 'models/merger.py'):
    if not os.path.isfile(os.path.join(directory, name)):
      sys.exit(f'error: --pix2vox_dir={directory} has no {name} (a hzxie/Pix2Vox checkout?)')
  try:
    import torch
    import torchvision
  except ImportError as e:
    sys.exit(f'error: this script needs torch and torchvision ({e})')
  vgg16_bn = torchvision.models.vgg16_bn
  # The encoder asks for ImageNet weights (a download); timing needs only the shapes.
  torchvision.models.vgg16_bn = lambda *args, **kwargs: vgg16_bn(weights=None)
  sys.path.insert(0, os.path.abspath(directory))
  cfg = importlib.import_module('config').cfg
  torch.manual_seed(0)
  parts = {}
  for name in ('encoder', 'decoder', 'merger', 'refiner'):
    if name == 'refiner' and not cfg.NETWORK.get('USE_REFINER', False):
      continue
    module = importlib.import_module(f'models.{name}')
    parts[name] = getattr(module, name.capitalize())(cfg).to(torch.float32)
  if not cfg.NETWORK.USE_MERGER:
    del parts['merger']
  return parts


def forward(parts, images):
  """Pix2Vox's train/test forward -> (fused volume, refined volume or None)."""
  import torch

  raw, volumes = parts['decoder'](parts['encoder'](images))
  fused = parts['merger'](raw, volumes) if 'merger' in parts else torch.mean(volumes, dim=1)
  return fused, (parts['refiner'](fused) if 'refiner' in parts else None)


def median_seconds(fn, repeats: int, warm: int = 1) -> float:
  for _ in range(warm):
    fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def measure(args) -> dict:
  parts = load_pix2vox(args.pix2vox_dir)  # first: its errors need no torch
  import torch
  from torch.utils.flop_counter import FlopCounterMode

  torch.set_num_threads(args.threads or len(os.sched_getaffinity(0)))
  params = [p for m in parts.values() for p in m.parameters()]
  trained = [p for p in params if p.requires_grad]
  images = lambda b, n: torch.rand(b, n, 3, args.size, args.size)
  result = {
    'variant': 'Pix2Vox-A' if 'refiner' in parts else 'Pix2Vox-F',
    'torch': torch.__version__,
    'threads': torch.get_num_threads(),
    'parameters': sum(p.numel() for p in params),
    'trained_parameters': sum(p.numel() for p in trained),
  }
  a = torch.rand(2048, 2048)
  result['matmul_gflops'] = 2 * 2048**3 / median_seconds(lambda: a @ a, 5) / 1e9

  for m in parts.values():
    m.eval()
  latency_views = [int(v) for v in args.latency_views.split(',')]
  with torch.inference_mode():
    for n in latency_views:
      x = images(1, n)
      with FlopCounterMode(display=False) as counter:
        forward(parts, x)
      result[f'gflops_per_object_{n}_views'] = counter.get_total_flops() / 1e9
      result[f'latency_ms_{n}_views'] = 1e3 * median_seconds(
        lambda: forward(parts, x), args.latency_repeats, args.latency_warmup
      )

  for m in parts.values():
    m.train()
  optimizer = torch.optim.Adam(trained, lr=1e-3, betas=(0.9, 0.999))
  bce = torch.nn.BCELoss()
  x = images(args.batch, args.views)
  target = (torch.rand(args.batch, 32, 32, 32) > 0.8).float()

  def step():
    optimizer.zero_grad()
    fused, refined = forward(parts, x)
    loss = 10 * bce(fused, target)
    if refined is not None:
      loss = loss + 10 * bce(refined, target)
    loss.backward()
    optimizer.step()

  with FlopCounterMode(display=False) as counter:
    step()  # the one warm-up call
  result['train_step_gflops'] = counter.get_total_flops() / 1e9
  seconds = median_seconds(step, args.repeats, warm=0)
  result['train_step_s'] = seconds
  result['train_gflops_per_s'] = result['train_step_gflops'] / seconds
  result['train_examples_per_s'] = args.batch / seconds
  result['train_shape'] = f'{args.batch} x {args.views} views, {args.size}px'
  return result


def main(argv=None):
  args = parse_args(argv)
  result = measure(args)
  for key, value in result.items():
    print(f'{key:28s} {value:.4g}' if isinstance(value, float) else f'{key:28s} {value}')
  if args.json:
    print(json.dumps(result))


if __name__ == '__main__':
  main()
