"""The edge-filter demo writes a real PNG and fails cleanly on bad input."""

import numpy as np
import pytest
from PIL import Image

from experiments import edges


def test_writes_png_panel(tmp_path):
  out = tmp_path / 'edges.png'
  assert edges.main(['--out', str(out), '--impl', 'einsum']) == 0
  with Image.open(out) as im:
    assert im.format == 'PNG' and min(im.size) > 100


def test_combine_sum_flag(tmp_path, capsys, monkeypatch):
  calls = {}
  real = edges.filters.edge_detect

  def spy(img, kind, **kw):
    calls[kind] = kw.get('combine')
    return real(img, kind, **kw)

  monkeypatch.setattr(edges.filters, 'edge_detect', spy)
  out = tmp_path / 'sum.png'
  assert edges.main(['--out', str(out), '--combine', 'sum']) == 0
  assert out.stat().st_size > 1000 and 'wrote' in capsys.readouterr().out
  # The pair kinds add their responses; single kernels keep the default.
  assert calls['sobel'] == calls['scharr'] == 'sum' and calls['vertical'] == 'magnitude'
  with pytest.raises(SystemExit):  # argparse refuses a value outside the choices
    edges.main(['--out', str(out), '--combine', 'max'])


def test_scene_is_deterministic_rgb():
  a, b = edges.scene(64), edges.scene(64)
  assert a.shape == (64, 64, 3) and a.dtype == np.float32
  np.testing.assert_array_equal(a, b)
  assert 0.0 <= a.min() and a.max() <= 1.0


def test_user_image_and_errors(tmp_path):
  img = tmp_path / 'in.png'
  Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(img)
  assert edges.main(['--image', str(img), '--out', str(tmp_path / 'o.png')]) == 0
  with pytest.raises(SystemExit, match='does not exist'):
    edges.main(['--image', str(tmp_path / 'missing.png')])
  bad = tmp_path / 'bad.jpg'
  bad.write_bytes(b'not an image')
  with pytest.raises(SystemExit, match='cannot decode image'):
    edges.main(['--image', str(bad), '--out', str(tmp_path / 'o2.png')])
