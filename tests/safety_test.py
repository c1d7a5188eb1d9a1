"""No unsafe loading: checkpoints and datasets load without pickle and nothing touches
the network at run time; a URL where a local path is expected gets one clear error."""

import subprocess
import sys
import textwrap

import pytest

from refine3d_jax import cli, errors
from refine3d_jax.data import photos
from tests import parallel_test

GUARDED_RESTORE = textwrap.dedent("""
    import pickle, socket, sys

    class Refused(Exception):
      pass

    def refuse(*args, **kwargs):
      raise Refused('unpickling')

    class Unpickler:
      def __init__(self, *args, **kwargs):
        refuse()

    pickle.load, pickle.loads, pickle.Unpickler = refuse, refuse, Unpickler

    NETWORK = {'socket.connect', 'socket.getaddrinfo', 'socket.gethostbyname',
               'socket.gethostbyaddr', 'socket.sendto', 'socket.sendmsg'}

    def audit(event, args):
      if event in NETWORK or event.startswith(('urllib.', 'http.', 'ftplib.')) or (
          event == 'pickle.find_class'):  # (asyncio's local socketpair is allowed)
        raise Refused(event)
    sys.addaudithook(audit)

    import jax
    import ml_collections
    from refine3d_jax import checkpoint, input_pipeline, jtso, train_state
    from refine3d_jax.models import create_model

    workdir = sys.argv[1]
    config = ml_collections.ConfigDict(checkpoint.restore_config(workdir))
    source = input_pipeline.open_source(config.data, 'train')
    data = iter(input_pipeline.train_dataset(config, source=source))
    model = create_model(config.model)
    template = jax.eval_shape(
        lambda: train_state.create_train_state(config, model, jtso.optimizer(config)))
    with checkpoint.Checkpointer(workdir, read_only=True) as ckpt:
      state = ckpt.restore(template, data)
    batch = next(data)
    print('restored step', int(state.step), 'batch', batch['images'].shape)
    # The guards themselves work:
    for attempt in (lambda: pickle.loads(b'I1\\n.'),
                    lambda: socket.create_connection(('127.0.0.1', 9))):
      try:
        attempt()
        print('NOT REFUSED')
      except Refused as e:
        print('refused', e)
""")


def test_checkpoint_and_dataset_load_without_pickle_or_network(tiny_workdir):
  proc = subprocess.run(
    [sys.executable, '-c', GUARDED_RESTORE, tiny_workdir],
    cwd=parallel_test.ROOT,
    env=parallel_test.worker_env(1),
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = proc.stdout.splitlines()
  assert lines[0].startswith('restored step 2 batch'), proc.stdout
  assert lines[1:] == ['refused unpickling', 'refused socket.getaddrinfo'], proc.stdout


@pytest.mark.parametrize('url', ['https://example.com/chair.png', 'gs://bucket/run'])
def test_urls_are_refused_with_one_message(url):
  with pytest.raises(
    photos.InputError, match=f'^{url}: a URL; refine3d_jax reads and writes local'
  ):
    photos.list_images([url])
  with pytest.raises(
    errors.UserError,
    match=r"--workdir = '.*' is a URL; .*fetches "
    'nothing from the network at run time: download or copy it first',
  ):
    cli.check_local(url, '--workdir')
  cli.check_local('runs/quick', '--workdir')
  cli.check_local('/data/c:/x', '--workdir')
