"""The protocols of the literature on hand-made scores: picks, ties, missing thresholds."""

from refine3d_jax import protocols


def scores(sw, cm):
  return {
    'views': {
      '1': {o: {'iou': {'sample_weighted': sw, 'class_mean': cm}} for o in protocols.OUTPUTS}
    }
  }


def test_each_protocol_picks_by_its_rule_and_ties_go_to_the_lowest_threshold():
  ts = [0.2, 0.25, 0.3, 0.4, 0.5]
  test = scores([0.5, 0.9, 0.6, 0.6, 0.1], [0.4, 0.45, 0.5, 0.3, 0.2])
  val = scores([0.1, 0.2, 0.7, 0.7, 0.3], [0] * 5)
  got = {k: v['views']['1']['refined'] for k, v in protocols.report(test, ts, val).items()}
  assert got['pix2vox'] == {'iou': 0.6, 'threshold': 0.3}  # 0.25 is not Pix2Vox's
  assert got['paper'] == {'iou': 0.45, 'threshold': 0.25}
  assert got['retr'] == {'iou': 0.2, 'threshold': 0.5}
  assert got['val_selected'] == {'iou': 0.6, 'threshold': 0.3}  # tie 0.3 / 0.4 on validation
  # the same whatever the order the thresholds come in
  rev = lambda s: scores(
    *(
      v['1']['refined']['iou'][a][::-1]
      for a in ('sample_weighted', 'class_mean')
      for v in [s['views']]
    )
  )
  back = protocols.report(rev(test), ts[::-1], rev(val))
  assert {k: v['views']['1']['refined'] for k, v in back.items()} == got
