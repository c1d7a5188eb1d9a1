"""Every user error is an errors.UserError that keeps its built-in base, raised where the
code knows that the user can fix it."""

import pytest

from refine3d_jax import checkpoint, configlib, errors, input_pipeline, predict, resume
from refine3d_jax import trained, workdir
from refine3d_jax.data import build, photos


@pytest.mark.parametrize(
  'cls, builtin',
  [
    (configlib.ConfigError, ValueError),
    (errors.DataError, ValueError),
    (errors.NotFoundError, FileNotFoundError),
    (errors.NotWritableError, PermissionError),
    (errors.NonFiniteLossError, FloatingPointError),
    (photos.InputError, ValueError),
    (resume.IncompatibleCheckpointError, ValueError),
    (workdir.WorkdirInUseError, RuntimeError),
    (checkpoint.CheckpointSaveError, OSError),
    (build.MissingBuilderError, ModuleNotFoundError),
  ],
)
def test_user_errors_keep_their_builtin_base(cls, builtin):
  """Callers that caught the built-in before UserError existed still catch it."""
  assert issubclass(cls, errors.UserError) and issubclass(cls, builtin)


def test_missing_things_are_user_errors(tmp_path, tiny_config):
  with pytest.raises(errors.NotFoundError, match='no checkpoints'):
    trained.restore_trained(str(tmp_path))
  with pytest.raises(errors.NotFoundError, match='no such checkpoint'):
    predict.split_checkpoint_path(str(tmp_path / 'checkpoints' / '7'))
  data = tiny_config.data.copy_and_resolve_references()
  data.data_dir = str(tmp_path)
  with pytest.raises(errors.NotFoundError, match='is not built'):
    input_pipeline.open_source(data, 'train')
  with pytest.raises(errors.NotFoundError, match='does not exist'):
    build.build('synthetic_shapes', str(tmp_path), manual_dir=str(tmp_path / 'none'))
