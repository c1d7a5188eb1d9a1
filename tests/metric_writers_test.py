"""Tests of refine3d_jax.metric_writers: jsonl round trip, rewind, NaN policy, TensorBoard."""

import glob
import json
import math
import os
import struct

import jax.numpy as jnp
import numpy as np
import pytest
from tensorboardX.proto import event_pb2

from refine3d_jax import metric_writers


def read_events(workdir):
  """Every Event of every event file (TFRecord framing: length, crc, data, crc)."""
  events = []
  for path in sorted(glob.glob(os.path.join(workdir, 'tensorboard', 'events.out.tfevents.*'))):
    with open(path, 'rb') as f:
      data = f.read()
    pos = 0
    while pos < len(data):
      (n,) = struct.unpack('<Q', data[pos : pos + 8])
      events.append(event_pb2.Event.FromString(data[pos + 12 : pos + 12 + n]))
      pos += 12 + n + 4
  return events


def scalars(events):
  return [
    (e.step, v.tag, v.simple_value)
    for e in events
    for v in e.summary.value
    if v.HasField('simple_value')
  ]


def test_round_trip_and_tensorboard(tmp_path):
  workdir = str(tmp_path / 'w')
  with metric_writers.MetricWriter(workdir) as writer:
    writer.write_scalars(
      1, {'loss': 0.5, 'iou': np.float32(0.25), 'lr': jnp.float32(1e-3), 'epoch': np.int32(0)}
    )
    writer.write_scalars(2, {'loss': 0.25})
    writer.write_image(2, 'eval/grid', np.full((8, 12, 3), 7, np.uint8))
    # readable while the writer is open: flushed after every line
    assert len(metric_writers.read_metrics(workdir)) == 2
  records = metric_writers.read_metrics(workdir)
  assert records == [
    {'step': 1, 'loss': 0.5, 'iou': 0.25, 'lr': pytest.approx(1e-3), 'epoch': 0},
    {'step': 2, 'loss': 0.25},
  ]
  assert isinstance(records[0]['epoch'], int)
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    assert list(json.loads(f.readline())) == ['step', 'loss', 'iou', 'lr', 'epoch']
  files = glob.glob(os.path.join(workdir, 'tensorboard', 'events.out.tfevents.*'))
  assert files and all(os.path.getsize(p) > 0 for p in files)
  events = read_events(workdir)
  assert (1, 'loss', 0.5) in scalars(events) and (2, 'loss', 0.25) in scalars(events)
  images = [v.image for e in events for v in e.summary.value if v.HasField('image')]
  assert len(images) == 1 and (images[0].height, images[0].width) == (8, 12)
  assert images[0].encoded_image_string.startswith(b'\x89PNG')


def test_nan_written_as_null(tmp_path):
  writer = metric_writers.MetricWriter(str(tmp_path))
  writer.write_scalars(3, {'loss': float('nan'), 'grad': np.inf, 'ok': 1.5})
  writer.close()
  with open(tmp_path / 'metrics.jsonl') as f:
    line = f.read()
  assert 'NaN' not in line and 'Infinity' not in line
  assert json.loads(line) == {'step': 3, 'loss': None, 'grad': None, 'ok': 1.5}
  values = {tag: v for _, tag, v in scalars(read_events(str(tmp_path)))}
  assert math.isnan(values['loss']) and values['grad'] == math.inf


def test_rewind_keeps_earlier_steps(tmp_path):
  workdir = str(tmp_path)
  writer = metric_writers.MetricWriter(workdir)
  for step in (10, 20, 30, 40):
    writer.write_scalars(step, {'loss': 1.0 / step})
  writer.close()
  # resume from the checkpoint at step 20: a new writer, as a restarted run has
  writer = metric_writers.MetricWriter(workdir)
  writer.rewind(20)
  assert [r['step'] for r in metric_writers.read_metrics(workdir)] == [10, 20]
  writer.write_scalars(30, {'loss': 0.5})
  writer.close()
  assert [r['step'] for r in metric_writers.read_metrics(workdir)] == [10, 20, 30]
  assert not os.path.exists(os.path.join(workdir, 'metrics.jsonl.tmp'))
  # TensorBoard: the new event file starts with a purge marker at step 21
  events = read_events(workdir)
  starts = [e.step for e in events if e.HasField('session_log')]
  assert starts == [21]
  # rewinding an open writer also works, and rewinding before any log is a no-op
  writer = metric_writers.MetricWriter(workdir)
  writer.write_scalars(40, {'loss': 0.1})
  writer.rewind(10)
  writer.close()
  assert [r['step'] for r in metric_writers.read_metrics(workdir)] == [10]
  metric_writers.MetricWriter(str(tmp_path / 'fresh')).rewind(5)
  assert metric_writers.read_metrics(str(tmp_path / 'fresh')) == []


def test_torn_last_line_is_skipped(tmp_path):
  with open(tmp_path / 'metrics.jsonl', 'w') as f:
    f.write('{"step": 1, "loss": 0.5}\n{"step": 2, "lo')
  assert metric_writers.read_metrics(str(tmp_path)) == [{'step': 1, 'loss': 0.5}]
  with open(tmp_path / 'metrics.jsonl', 'w') as f:
    f.write('{"step": 1, "lo\n{"step": 2}\n')
  with pytest.raises(ValueError, match='not JSON'):
    metric_writers.read_metrics(str(tmp_path))


def test_disabled_writer_writes_nothing(tmp_path):
  workdir = str(tmp_path / 'w')
  writer = metric_writers.MetricWriter(workdir, enabled=False)
  writer.write_scalars(1, {'loss': 1.0})
  writer.write_image(1, 'x', np.zeros((4, 4, 3), np.uint8))
  writer.rewind(0)
  writer.close()
  assert not os.path.exists(workdir)


def test_bad_inputs(tmp_path):
  writer = metric_writers.MetricWriter(str(tmp_path))
  with pytest.raises(ValueError, match='reserved'):
    writer.write_scalars(1, {'step': 1})
  with pytest.raises(ValueError, match='scalars only'):
    writer.write_scalars(1, {'x': np.zeros(3)})
  with pytest.raises(ValueError, match='uint8'):
    writer.write_image(1, 'x', np.zeros((4, 4, 3), np.float32))
  writer.close()
