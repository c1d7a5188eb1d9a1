"""Config presets are valid; bad values fail with the key that holds them."""

import pytest

from configs import jtso
from refine3d_jax import configlib
from refine3d_jax.models import create_model


@pytest.mark.parametrize('preset', jtso.PRESETS)
def test_presets_are_valid(preset):
  config = jtso.get_config(preset)
  configlib.validate(config)
  assert config.preset == preset


def test_paper_preset_values():
  config = jtso.get_config('paper')
  assert config.model.image_size == 127
  assert config.model.latent_dim == 1024
  assert config.model.num_heads == 8
  assert config.model.volume_size == 32
  assert config.model.encoder_widths == (96, 128, 256, 256, 256, 256)
  assert config.model.encoder_shortcuts == (True, True, True, False, True, True)
  assert config.model.decoder_widths == (128, 128, 128, 64, 64, 32)
  assert config.model.refiner_widths == (32, 64, 128)
  assert config.train.batch_size == 4
  assert config.train.learning_rate == 1e-3
  assert config.train.lr_decay_epochs == (150,) and config.train.lr_decay_factor == 0.5


def test_default_preset_is_quick():
  assert jtso.get_config().preset == 'quick'
  with pytest.raises(ValueError, match="unknown preset 'huge'"):
    jtso.get_config('huge')


@pytest.mark.parametrize(
  'key, value, message',
  [
    ('train.num_views', 0, r'config.train.num_views = 0: must be a positive integer'),
    ('eval.view_counts', (1, 0), r'config.eval.view_counts\[1\] = 0'),
    (
      'model.encoder_widths',
      (96, -8, 256, 256, 256, 256),
      r'config.model.encoder_widths\[1\] = -8: must be a positive integer',
    ),
    ('model.decoder_widths', (), r'config.model.decoder_widths = \(\): must be a non-empty'),
    ('model.fusion', 'transformer', r"config.model.fusion = 'transformer': must be one of"),
    ('model.num_heads', 7, r'config.model.num_heads = 7: must divide model.latent_dim = 1024'),
    ('model.encoder_shortcuts', (True,), r'needs one bool per encoder block \(6\)'),
    ('model.decoder_base_size', 3, r'must be a power of 2'),
    ('model.refiner_widths', (4, 4, 4, 4, 4, 4), r'6 poolings do not divide'),
    ('model.dtype', 'float16', r"config.model.dtype = 'float16'"),
    ('train.lr_decay_factor', 2.0, r'config.train.lr_decay_factor = 2.0'),
    ('train.schedule', 'cosine', r"config.train.schedule = 'cosine': must be one of"),
    ('train.k1_epochs', -1.0, r'config.train.k1_epochs = -1.0: must be >= 0'),
    ('train.k2_epochs', 10.0, r'config.train.k2_epochs = 10.0: must be >= train.k1_epochs'),
    ('train.num_steps', -5, r'config.train.num_steps = -5'),
    ('train.log_every_steps', 0, r'config.train.log_every_steps = 0'),
    ('eval.every_steps', 0, r'config.eval.every_steps = 0'),
    ('eval.val_views', (1, 0), r'config.eval.val_views\[1\] = 0'),
    ('eval.threshold', 1.5, r'config.eval.threshold = 1.5'),
    ('train.num_views', 25, r'config.train.num_views = 25: must be an integer in \[1, 24\]'),
    ('eval.view_counts', (1, 30), r'config.eval.view_counts\[1\] = 30'),
    ('data.dataset', 'imagenet', r"config.data.dataset = 'imagenet': must be one of"),
    ('data.protocol', 'r2n2', r"config.data.protocol = 'r2n2': must be one of"),
    ('data.train_background', (225, 256), r'config.data.train_background\[1\] = 256'),
    ('data.train_background', (240, 225), r'config.data.train_background\[1\] = 225'),
    ('data.test_background', -1, r'config.data.test_background = -1'),
    ('data.color_jitter', 1.5, r'config.data.color_jitter = 1.5'),
    ('data.std', (0.5, 0.0, 0.5), r'config.data.std = \(0.5, 0.0, 0.5\): must be positive'),
    ('data.mean', (0.5,), r'config.data.mean = \(0.5,\): must be a tuple of 3 numbers'),
    ('data.min_views', 4, r'config.data.min_views = 4: must be an integer in \[0, 3\]'),
    ('train.single_views', 0, r'config.train.single_views = 0: must be an integer in \[1, 24\]'),
    ('data.eval_views', 'last_n', r"config.data.eval_views = 'last_n'"),
    ('data.num_workers', -1, r'config.data.num_workers = -1'),
    ('data.num_threads', 0, r'config.data.num_threads = 0'),
    ('data.prefetch', 0, r'config.data.prefetch = 0'),
    (
      'data.data_dir',
      'gs://bucket/tfds',
      r"config.data.data_dir = 'gs://bucket/tfds': is a URL; .* fetches nothing from the net",
    ),
  ],
)
def test_bad_values_name_their_key(key, value, message):
  config = jtso.get_config('paper')
  section, name = key.split('.')
  config[section][name] = value
  with pytest.raises(configlib.ConfigError, match=message):
    configlib.validate(config)


def test_paired_views_need_an_even_batch_only_when_counts_are_drawn():
  config = jtso.get_config('quick')
  config.train.batch_size = 3
  with pytest.raises(
    configlib.ConfigError, match=r'config.data.paired_views = True: needs an even'
  ):
    configlib.validate(config)
  config.data.min_views = 0  # fixed counts: nothing to pair
  configlib.validate(config)


def test_data_defaults():
  quick, paper = jtso.get_config('quick'), jtso.get_config('paper')
  assert (quick.data.dataset, quick.data.builder_config) == ('synthetic_shapes', '')
  assert (paper.data.dataset, paper.data.builder_config) == ('shapenet_r2n2', 'pix2vox')
  assert paper.data.protocol == 'r2n2_127' and paper.data.test_background == 240


def test_create_model_validates():
  config = jtso.get_config('tiny')
  config.model.fusion = 'median'
  with pytest.raises(configlib.ConfigError, match='config.model.fusion'):
    create_model(config.model)


def test_config_is_locked_against_typos():
  config = jtso.get_config('quick')
  config.lock()
  with pytest.raises(AttributeError, match='fusion'):
    config.model.fusoin = 'attsets'


@pytest.mark.parametrize('preset', jtso.PRESETS)
def test_end_to_end_baseline_differs_only_in_schedule(preset):
  from configs import end_to_end  # pylint: disable=g-import-not-at-top

  config = end_to_end.get_config(preset)
  configlib.validate(config)
  assert config.train.schedule == 'end_to_end'
  reference = jtso.get_config(preset)
  reference.train.schedule = 'end_to_end'
  assert config.to_dict() == reference.to_dict()


def test_saved_configs_get_the_keys_added_since():
  config = jtso.get_config('tiny')
  del config.eval['thresholds']
  del config.model['decoder_head']
  completed, filled = configlib.with_added_keys(config)
  assert sorted(filled) == ['eval.thresholds', 'model.decoder_head']
  assert completed.model.decoder_head == 'conv' and len(completed.eval.thresholds) == 5
  configlib.validate(completed)
  assert configlib.with_added_keys(completed)[1] == []


def test_pix2vox_input_config():
  from configs import pix2vox_input  # pylint: disable=g-import-not-at-top

  config = pix2vox_input.get_config('tiny')
  configlib.validate(config)
  assert config.data.protocol == 'pix2vox_224' and config.data.mean == (0.5, 0.5, 0.5)
  assert config.data.pca_noise == 0.1 and config.data.rgb_permute
  assert config.model == jtso.get_config('tiny').model
