"""Shared fixtures: the tiny model, with parameters that make every layer matter."""

import atexit
import os
import shutil
import subprocess
import tempfile

# The tests' programs are tiny, so compiling them dominates the suite: XLA's backend
# optimisation level 0 compiles them faster (jtso_test: 121 s instead of 167 s on 2
# cores), and so does XLA:CPU's older elementwise emitter (`use_fusion_emitters=false`:
# jtso_test's stage-3 step compiled in 4.6 s instead of 9.9 s on 2 Zen 3 cores, one
# process each, and the tiny preset's stage-3 step gives bit-identical parameters and
# losses). Not for training: the quick preset's steps ran 1.06-1.21x slower with it (two
# rounds; BENCHMARKS.md, 2026-12-03 16:15). Subprocesses the tests start inherit the
# flags; a flag the caller's XLA_FLAGS already sets is left as it is.
TEST_XLA_FLAGS = {
  '--xla_backend_optimization_level': '0',
  '--xla_cpu_use_fusion_emitters': 'false',
}
for _flag, _value in TEST_XLA_FLAGS.items():
  if _flag not in os.environ.get('XLA_FLAGS', ''):
    os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + f' {_flag}={_value}').strip()

# A program several tests compile (the same step in other tests, in each xdist worker, in
# the subprocesses they start) compiles once per run if that takes 1 s or more (JAX's
# default threshold): JAX's persistent compilation cache in a temporary folder, made by
# the first process (pytest's, or xdist's controller, whose workers inherit the path) and
# removed when it exits normally. A caller's own folder is kept.
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  os.environ['JAX_COMPILATION_CACHE_DIR'] = tempfile.mkdtemp(prefix='refine3d_jax_tests_jit_')
  atexit.register(shutil.rmtree, os.environ['JAX_COMPILATION_CACHE_DIR'], ignore_errors=True)

import jax  # noqa: E402  (after XLA_FLAGS and JAX_COMPILATION_CACHE_DIR)
import pytest  # noqa: E402

# Exact float32 products on every backend, so the numerical tolerances of the tests hold
# on GPUs too (their default TF32 convolutions differ by ~5e-4; measured on an H100).
jax.config.update('jax_default_matmul_precision', 'highest')

from configs import jtso
from refine3d_jax.models import create_model, init_variables
from tests.data_fixtures import built_dataset  # noqa: F401  (a fixture, for every test)
from tests.testutil import perturb


@pytest.fixture(scope='session')
def tiny_config():
  return jtso.get_config('tiny')


@pytest.fixture(scope='session')
def tiny_init(tiny_config):
  """(model, variables) of the tiny preset, as initialised."""
  model = create_model(tiny_config.model)
  return model, init_variables(model, jax.random.key(0))


@pytest.fixture(scope='session')
def tiny_model(tiny_init):
  """(model, variables) of the tiny preset, parameters perturbed away from their init."""
  model, variables = tiny_init
  return model, {**variables, 'params': perturb(variables['params'])}


@pytest.fixture(scope='session')
def tiny_data_dir(tmp_path_factory):
  """A TFDS data dir holding synthetic_shapes/tiny (5/5/5 objects, one per category),
  built once per session (per xdist worker)."""
  from refine3d_jax.data import build  # pylint: disable=g-import-not-at-top

  path = str(tmp_path_factory.mktemp('tfds'))
  build.build('synthetic_shapes', path, 'tiny')
  return path


@pytest.fixture(scope='session')
def tiny_workdir(tiny_data_dir, tmp_path_factory):
  """A workdir trained for 2 steps on synthetic_shapes/tiny (tests.testutil.small_config),
  shared by the evaluate and predict tests (which only read it, or write into eval/)."""
  from refine3d_jax import train  # pylint: disable=g-import-not-at-top
  from tests.testutil import small_config  # pylint: disable=g-import-not-at-top

  workdir = str(tmp_path_factory.mktemp('run'))
  train.train_and_evaluate(small_config(tiny_data_dir, num_steps=2), workdir)
  return workdir


@pytest.fixture
def small_disk(tmp_path):
  """A 4 MiB tmpfs mounted at tmp_path/disk (needs root or CAP_SYS_ADMIN; skips without),
  to fill the disk for real during a checkpoint save."""
  path = tmp_path / 'disk'
  path.mkdir()
  if not shutil.which('mount'):
    pytest.skip('a full disk is simulated with a small tmpfs, and there is no mount command')
  mount = subprocess.run(
    ['mount', '-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', str(path)],
    capture_output=True,
    text=True,
    check=False,
  )
  if mount.returncode != 0:
    pytest.skip(
      'a full disk is simulated with a small tmpfs, and mounting one needs root '
      f'or CAP_SYS_ADMIN: {mount.stderr.strip()}'
    )
  try:
    yield path
  finally:
    subprocess.run(['umount', '-l', str(path)], check=False)
