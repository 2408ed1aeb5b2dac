"""Landmarks: the mirror with left/right swaps, NME and PCK against numpy, the losses."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax.ops import landmarks as LM

PAIRS = ((0, 1), (3, 4))


def test_flip_mirrors_x_and_swaps_pairs():
  p = jnp.array([[[0.3, 0.4], [0.7, 0.41], [0.52, 0.6], [0.35, 0.8], [0.65, 0.79]]])
  f = LM.flip_landmarks(p, PAIRS)
  np.testing.assert_allclose(f[0], [[0.3, 0.41], [0.7, 0.4], [0.48, 0.6], [0.35, 0.79],
                                    [0.65, 0.8]], atol=1e-7)
  np.testing.assert_allclose(LM.flip_landmarks(f, PAIRS), p, atol=1e-7)  # an involution
  assert LM.flip_permutation(5, PAIRS) == [1, 0, 2, 4, 3]
  with pytest.raises(ValueError, match=r'flip pair \(0, 5\) must name two different'):
    LM.flip_permutation(5, ((0, 5),))
  with pytest.raises(ValueError, match=r'\(B, K, 2\)'):
    LM.flip_landmarks(p[0], PAIRS)


class MetricsTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_nme_and_pck_match_numpy(self):
    rng = np.random.default_rng(0)
    target = rng.uniform(0.2, 0.8, (6, 5, 2)).astype(np.float32)
    pred = (target + rng.normal(0, 0.03, target.shape)).astype(np.float32)
    boxes = np.concatenate([target.min(1)[:, ::-1], target.max(1)[:, ::-1]], -1)
    iod = np.linalg.norm(target[:, 0] - target[:, 1], axis=-1)
    dist = np.linalg.norm(pred - target, axis=-1)
    size = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])

    @self.variant
    def metrics(pred, target, boxes):
      return (LM.nme(pred, target, LM.interocular(target, (0, 1))),
              LM.pck(pred, target, LM.box_size(boxes), 0.05))

    nme, pck = metrics(pred, target, boxes)
    np.testing.assert_allclose(nme, (dist / iod[:, None]).mean(1), rtol=1e-5)
    np.testing.assert_allclose(pck, (dist / size[:, None] <= 0.05).mean(1), rtol=1e-6)


def test_losses_and_gradient():
  pred = jnp.array([[[0.1, 0.2], [0.5, 0.5]]])
  target = jnp.array([[[0.0, 0.4], [0.5, 0.2]]])
  assert float(LM.loss(pred, target, 'l2')) == pytest.approx(0.01 + 0.04 + 0.09)
  assert float(LM.loss(pred, target, 'l1')) == pytest.approx(0.1 + 0.2 + 0.3)
  np.testing.assert_allclose(jax.grad(LM.loss)(pred, target, 'l2'), 2 * (pred - target),
                             atol=1e-7)
  with pytest.raises(ValueError, match="unknown landmark loss 'wing'; choose one of l2, l1"):
    LM.loss(pred, target, 'wing')
  with pytest.raises(ValueError, match=r'must be \(B, K, 2\), \(B, K, 2\) and \(B,\)'):
    LM.normalised_error(pred, target, jnp.ones(3))
