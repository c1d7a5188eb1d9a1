"""Config checks: every bad value fails early with the key that holds it.

Configs themselves live in configs/*.py (ml_collections, loaded with `config_flags`);
this module only validates them, so a typo or an impossible size is reported as
`config.model.encoder_widths[2] = -8: ...` before anything is built.
"""

from typing import Any, Sequence

import ml_collections

from refine3d_jax import cli
from refine3d_jax.errors import UserError

FUSIONS = ('self_attention', 'attsets', 'mean')
DECODER_HEADS = ('conv', 'shuffle')  # refine3d_jax/models/decoder.py
CONV2D_IMPLS = ('auto', 'matmul', 'native')  # refine3d_jax/models/conv2d.py
CONV3D_IMPLS = ('auto', 'fold', 'native')  # refine3d_jax/models/conv3d.py
ATTENTION_BLOCKS = ('transformer', 'plain')  # refine3d_jax/models/fusion.py
DECODER_SHORTCUTS = ('identity', 'conv')  # refine3d_jax/models/decoder.py
REFINER_ACTIVATIONS = ('leaky_relu', 'relu')  # refine3d_jax/models/refiner.py
SCHEDULES = ('jtso', 'attsets', 'end_to_end')  # refine3d_jax/jtso.py
DTYPES = ('float32', 'bfloat16')
# as refine3d_jax.data.build.DATASETS
DATASETS = ('shapenet_r2n2', 'shapenet_vox', 'synthetic_shapes')
PROTOCOLS = ('r2n2_127', 'pix2vox_224')  # refine3d_jax.data.transforms.PROTOCOLS
EVAL_VIEWS = ('first_n', 'random')
NUM_VIEWS = 24  # views per object in every dataset

# Keys added after workdirs were first made, with the value that reproduces what a config
# without them meant (with_added_keys fills them in a saved config).
ADDED_KEYS = {
    'model.conv2d': 'auto',                 # lowering only: same parameters and outputs
    'model.conv3d': 'auto',
    'model.decoder_head': 'conv',
    'model.occupancy_prior': 0.0,
    # the model as it was before the paper preset followed the paper's text (issue 16)
    'model.attention_block': 'transformer',
    'model.decoder_shortcuts': 'identity',
    'model.refiner_up_activation': 'leaky_relu',
    'model.refiner_bottleneck': 0,
    'model.refiner_bn_momentum': 0.9,
    'eval.thresholds': (0.2, 0.25, 0.3, 0.4, 0.5),
    'eval.fscore_distance': 0.01,
    'eval.measure_cost': True,
    'train.steps_per_epoch': 0,
    'train.single_views': 1,
    'train.ema_decay': 0.0,
    'data.pca_noise': 0.0,
    'data.rgb_permute': False,
}


class ConfigError(UserError, ValueError):
  """A config value is missing or invalid; the message names the key."""


def _check(ok: bool, key: str, value: Any, why: str) -> None:
  if not ok:
    raise ConfigError(f'config.{key} = {value!r}: {why}')


def _positive_ints(key: str, values: Sequence[Any]) -> None:
  _check(isinstance(values, (tuple, list)) and len(values) > 0, key, values,
         'must be a non-empty tuple of positive integers')
  for i, v in enumerate(values):
    _check(isinstance(v, int) and not isinstance(v, bool) and v > 0, f'{key}[{i}]', v,
           'must be a positive integer')


def _positive_int(key: str, value: Any) -> None:
  _check(isinstance(value, int) and not isinstance(value, bool) and value > 0, key, value,
         'must be a positive integer')


def validate_model(model: ml_collections.ConfigDict, prefix: str = 'model') -> None:
  """Checks `config.model`; raises ConfigError naming the first bad key."""
  k = lambda name: f'{prefix}.{name}'
  _positive_int(k('image_size'), model.image_size)
  _positive_ints(k('encoder_widths'), model.encoder_widths)
  _check(len(model.encoder_shortcuts) == len(model.encoder_widths), k('encoder_shortcuts'),
         model.encoder_shortcuts, f'needs one bool per encoder block ({len(model.encoder_widths)})')
  _positive_int(k('encoder_first_kernel'), model.encoder_first_kernel)
  _positive_int(k('latent_dim'), model.latent_dim)
  _check(model.fusion in FUSIONS, k('fusion'), model.fusion, f'must be one of {FUSIONS}')
  _positive_int(k('num_heads'), model.num_heads)
  _check(model.latent_dim % model.num_heads == 0, k('num_heads'), model.num_heads,
         f'must divide model.latent_dim = {model.latent_dim}')
  _positive_int(k('attention_layers'), model.attention_layers)
  _positive_int(k('attention_mlp_dim'), model.attention_mlp_dim)
  _positive_ints(k('decoder_widths'), model.decoder_widths)
  _positive_int(k('decoder_base_size'), model.decoder_base_size)
  _positive_int(k('volume_size'), model.volume_size)
  ratio = model.volume_size // model.decoder_base_size
  _check(model.volume_size % model.decoder_base_size == 0 and ratio & (ratio - 1) == 0,
         k('decoder_base_size'), model.decoder_base_size,
         'model.volume_size / model.decoder_base_size must be a power of 2')
  _check(model.decoder_head in DECODER_HEADS, k('decoder_head'), model.decoder_head,
         f'must be one of {DECODER_HEADS}')
  ups = ratio.bit_length() - 1 - (model.decoder_head == 'shuffle')
  _check(ups >= 0, k('decoder_head'), model.decoder_head,
         'shuffle needs model.volume_size >= 2 * model.decoder_base_size')
  _check(len(model.decoder_widths) - 1 >= ups, k('decoder_widths'), model.decoder_widths,
         f'needs at least {ups + 1} widths (stem + one block per 2x upsampling to '
         f'{model.volume_size}^3)')
  _check(isinstance(model.occupancy_prior, (int, float)) and 0 <= model.occupancy_prior < 1,
         k('occupancy_prior'), model.occupancy_prior, 'must be in [0, 1) (0 = off)')
  _positive_ints(k('refiner_widths'), model.refiner_widths)
  _check(model.volume_size % 2 ** len(model.refiner_widths) == 0, k('refiner_widths'),
         model.refiner_widths, f'{len(model.refiner_widths)} poolings do not divide '
         f'model.volume_size = {model.volume_size}')
  _positive_int(k('refiner_kernel'), model.refiner_kernel)
  _check(isinstance(model.leaky_slope, (int, float)) and 0 <= model.leaky_slope < 1,
         k('leaky_slope'), model.leaky_slope, 'must be in [0, 1)')
  _check(model.conv2d in CONV2D_IMPLS, k('conv2d'), model.conv2d,
         f'must be one of {CONV2D_IMPLS}')
  _check(model.conv3d in CONV3D_IMPLS, k('conv3d'), model.conv3d,
         f'must be one of {CONV3D_IMPLS}')
  _check(model.attention_block in ATTENTION_BLOCKS, k('attention_block'),
         model.attention_block, f'must be one of {ATTENTION_BLOCKS}')
  _check(model.decoder_shortcuts in DECODER_SHORTCUTS, k('decoder_shortcuts'),
         model.decoder_shortcuts, f'must be one of {DECODER_SHORTCUTS}')
  _check(model.refiner_up_activation in REFINER_ACTIVATIONS, k('refiner_up_activation'),
         model.refiner_up_activation, f'must be one of {REFINER_ACTIVATIONS}')
  _check(isinstance(model.refiner_bottleneck, int) and model.refiner_bottleneck >= 0,
         k('refiner_bottleneck'), model.refiner_bottleneck, 'must be an integer >= 0 (0 = none)')
  _check(isinstance(model.refiner_bn_momentum, (int, float))
         and 0 <= model.refiner_bn_momentum < 1, k('refiner_bn_momentum'),
         model.refiner_bn_momentum, 'must be in [0, 1)')
  _check(model.dtype in DTYPES, k('dtype'), model.dtype, f'must be one of {DTYPES}')


def _int_in(key: str, value: Any, lo: int, hi: int) -> None:
  _check(isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi, key,
         value, f'must be an integer in [{lo}, {hi}]')


def _floats(key: str, values: Any, n: int) -> None:
  _check(isinstance(values, (tuple, list)) and len(values) == n
         and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values),
         key, values, f'must be a tuple of {n} numbers')


def validate_data(config: ml_collections.ConfigDict) -> None:
  """Checks `config.data` (and the view counts it must serve); raises ConfigError."""
  data = config.data
  _check(data.dataset in DATASETS, 'data.dataset', data.dataset, f'must be one of {DATASETS}')
  _check(isinstance(data.builder_config, str), 'data.builder_config', data.builder_config,
         "must be a string ('' = the builder's default)")
  _check(isinstance(data.data_dir, str) and data.data_dir, 'data.data_dir', data.data_dir,
         'must be a non-empty path')
  _check(not cli.is_url(data.data_dir), 'data.data_dir', data.data_dir,
         f'is a URL; {cli.NO_NETWORK}')
  _check(data.protocol in PROTOCOLS, 'data.protocol', data.protocol,
         f'must be one of {PROTOCOLS}')
  bg = data.train_background
  _check(isinstance(bg, (tuple, list)) and len(bg) == 2, 'data.train_background', bg,
         'must be (low, high)')
  _int_in('data.train_background[0]', bg[0], 0, 255)
  _int_in('data.train_background[1]', bg[1], bg[0], 255)
  _int_in('data.test_background', data.test_background, 0, 255)
  _check(isinstance(data.color_jitter, (int, float)) and 0 <= data.color_jitter < 1,
         'data.color_jitter', data.color_jitter, 'must be in [0, 1)')
  _check(isinstance(data.pca_noise, (int, float)) and data.pca_noise >= 0, 'data.pca_noise',
         data.pca_noise, 'must be >= 0 (0 = off)')
  _check(isinstance(data.rgb_permute, bool), 'data.rgb_permute', data.rgb_permute,
         'must be True or False')
  _floats('data.mean', data.mean, 3)
  _floats('data.std', data.std, 3)
  _check(all(s > 0 for s in data.std), 'data.std', data.std, 'must be positive')
  _int_in('train.num_views', config.train.num_views, 1, NUM_VIEWS)
  _int_in('data.min_views', data.min_views, 0, config.train.num_views)
  _int_in('train.single_views', config.train.single_views, 1, NUM_VIEWS)
  for i, n in enumerate(config.eval.view_counts):
    _int_in(f'eval.view_counts[{i}]', n, 1, NUM_VIEWS)
  _check(data.eval_views in EVAL_VIEWS, 'data.eval_views', data.eval_views,
         f'must be one of {EVAL_VIEWS}')
  _int_in('data.eval_seed', data.eval_seed, 0, 2**32 - 1)
  _int_in('seed', config.seed, 0, 2**32 - 1)  # grain's shuffle seed
  _int_in('data.num_workers', data.num_workers, 0, 1024)
  _positive_int('data.num_threads', data.num_threads)
  _positive_int('data.prefetch', data.prefetch)


def with_added_keys(config: ml_collections.ConfigDict) -> tuple[ml_collections.ConfigDict,
                                                                  list[str]]:
  """A saved config (e.g. checkpoint.restore_config) completed with ADDED_KEYS it lacks;
  returns (config, the keys filled in)."""
  config = ml_collections.ConfigDict(config.to_dict())
  filled = []
  for dotted, value in ADDED_KEYS.items():
    *parents, leaf = dotted.split('.')
    node = config
    for p in parents:
      node = node[p]
    if leaf not in node:
      node[leaf] = value
      filled.append(dotted)
  return config, filled


# Model keys that may change between a checkpoint and the run restoring it: how the same
# parameters are computed, not what they are.
RESTORE_MAY_CHANGE = ('model.conv2d', 'model.conv3d', 'model.dtype')


def model_differences(saved: ml_collections.ConfigDict,
                      current: ml_collections.ConfigDict) -> list[str]:
  """'model.key: saved X, now Y' for every model key whose value differs (keys added
  since the save count with their ADDED_KEYS value; RESTORE_MAY_CHANGE ones are
  ignored)."""
  saved, _ = with_added_keys(saved)
  norm = lambda v: list(v) if isinstance(v, (tuple, list)) else v
  out = []
  for key in sorted(set(saved.model.keys()) | set(current.model.keys())):
    if f'model.{key}' in RESTORE_MAY_CHANGE:
      continue
    a, b = saved.model.get(key), current.model.get(key)
    if norm(a) != norm(b):
      out.append(f'model.{key}: saved {a!r}, now {b!r}')
  return out


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks a whole experiment config; raises ConfigError naming the first bad key."""
  validate_model(config.model)
  _positive_int('train.batch_size', config.train.batch_size)
  _positive_int('train.num_views', config.train.num_views)
  _check(config.train.learning_rate > 0, 'train.learning_rate', config.train.learning_rate,
         'must be positive')
  _positive_int('train.num_epochs', config.train.num_epochs)
  for i, epoch in enumerate(config.train.lr_decay_epochs):
    _check(isinstance(epoch, (int, float)) and epoch > 0, f'train.lr_decay_epochs[{i}]', epoch,
           'must be a positive number of epochs')
  _check(0 < config.train.lr_decay_factor <= 1, 'train.lr_decay_factor',
         config.train.lr_decay_factor, 'must be in (0, 1]')
  _positive_ints('eval.view_counts', config.eval.view_counts)
  validate_train(config.train)
  validate_eval(config.eval)
  validate_data(config)


def validate_train(t: ml_collections.ConfigDict) -> None:
  """The JTSO schedule, optimizer and bookkeeping keys of `config.train`."""
  _check(t.schedule in SCHEDULES, 'train.schedule', t.schedule, f'must be one of {SCHEDULES}')
  _check(isinstance(t.k1_epochs, (int, float)) and t.k1_epochs >= 0, 'train.k1_epochs',
         t.k1_epochs, 'must be >= 0 (epochs of stage 1)')
  _check(isinstance(t.k2_epochs, (int, float)) and t.k2_epochs >= t.k1_epochs,
         'train.k2_epochs', t.k2_epochs, f'must be >= train.k1_epochs = {t.k1_epochs}')
  for group in ('base', 'att', 'ref'):
    _check(t.lr_scale[group] >= 0, f'train.lr_scale.{group}', t.lr_scale[group],
           'must be >= 0')
  _check(0 <= t.adam_b1 < 1, 'train.adam_b1', t.adam_b1, 'must be in [0, 1)')
  _check(0 <= t.adam_b2 < 1, 'train.adam_b2', t.adam_b2, 'must be in [0, 1)')
  _check(t.adam_eps > 0, 'train.adam_eps', t.adam_eps, 'must be positive')
  _check(isinstance(t.ema_decay, (int, float)) and 0 <= t.ema_decay < 1, 'train.ema_decay',
         t.ema_decay, 'must be in [0, 1) (0 = no moving average)')
  _check(isinstance(t.num_steps, int) and t.num_steps >= 0, 'train.num_steps', t.num_steps,
         'must be >= 0 (0 = train.num_epochs)')
  _check(isinstance(t.steps_per_epoch, int) and t.steps_per_epoch >= 0, 'train.steps_per_epoch',
         t.steps_per_epoch, 'must be >= 0 (0 = one pass over the training split)')
  for key in ('log_every_steps', 'checkpoint_every_steps', 'keep_checkpoints'):
    _positive_int(f'train.{key}', t[key])


def validate_eval(e: ml_collections.ConfigDict) -> None:
  """The periodic validation keys of `config.eval`."""
  _positive_int('eval.every_steps', e.every_steps)
  _positive_ints('eval.val_views', e.val_views)
  _check(0 < e.threshold < 1, 'eval.threshold', e.threshold, 'must be in (0, 1)')
  _check(isinstance(e.max_examples, int) and e.max_examples >= 0, 'eval.max_examples',
         e.max_examples, 'must be >= 0 (0 = all)')
  _check(isinstance(e.num_images, int) and e.num_images >= 1, 'eval.num_images',
         e.num_images, 'must be >= 1')
  _check(isinstance(e.thresholds, (tuple, list)) and len(e.thresholds) > 0
         and all(isinstance(t, (int, float)) and 0 < t < 1 for t in e.thresholds),
         'eval.thresholds', e.thresholds, 'must be a non-empty tuple of numbers in (0, 1)')
  _check(isinstance(e.fscore_distance, (int, float)) and 0 < e.fscore_distance < 1,
         'eval.fscore_distance', e.fscore_distance,
         'must be in (0, 1) (a fraction of the volume side)')
  _check(isinstance(e.measure_cost, bool), 'eval.measure_cost', e.measure_cost,
         'must be True or False')
