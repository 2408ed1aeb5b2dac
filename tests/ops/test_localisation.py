"""The course's localisation vector y = [p_c, b_x, b_y, b_h, b_w, c_1..c_C]: encode, losses, decode."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax.ops import localisation as L

# One image with a class-1 object whose box is rows 0.2-0.6, columns 0.1-0.5; one without.
BOXES = jnp.array([[[0.2, 0.1, 0.6, 0.5]], [[0.0, 0.0, 0.0, 0.0]]])
LABELS = jnp.array([[1], [-1]])
TARGET = np.array([[1, 0.3, 0.4, 0.4, 0.4, 0, 1, 0],
                   [0, 0, 0, 0, 0, 0, 0, 0]], np.float32)


def test_encode_is_the_course_vector():
  """b_x, b_y the centre, b_h, b_w the size, one-hot classes; zeros when p_c = 0."""
  np.testing.assert_allclose(L.encode(BOXES, LABELS, 3), TARGET, atol=1e-7)
  with pytest.raises(ValueError, match=r'boxes must be \(B, K, 4\)'):
    L.encode(BOXES[:, 0], LABELS, 3)


class CourseLossTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_all_terms_with_an_object_only_p_c_without(self):
    pred = np.array([[0.5, 0.3, 0.2, 0.4, 0.1, 0.0, 0.6, 0.1],
                     [0.3, 9.0, 9.0, 9.0, 9.0, 9.0, 9.0, 9.0]], np.float32)  # "don't care"
    with_object = (0.5 ** 2 + 0.2 ** 2 + 0.3 ** 2 + 0.4 ** 2 + 0.1 ** 2)
    expected = (with_object + 0.3 ** 2) / 2
    loss = self.variant(L.course_loss)(jnp.asarray(pred), jnp.asarray(TARGET))
    assert float(loss) == pytest.approx(expected, rel=1e-6)

  def test_gradient_is_2_err_over_batch_where_it_counts(self):
    pred = jnp.asarray(np.random.default_rng(0).normal(size=TARGET.shape), jnp.float32)
    grad = jax.grad(L.course_loss)(pred, jnp.asarray(TARGET))
    want = 2 * (np.asarray(pred) - TARGET) / 2
    want[1, 1:] = 0.0  # no object: only p_c is trained
    np.testing.assert_allclose(grad, want, rtol=1e-5, atol=1e-6)


def test_modern_loss_by_hand():
  logits = np.array([[2.0, 0.0, 0.0, 0.0, 0.0, 0.1, 1.2, -0.5],
                     [-1.0, 5.0, 5.0, 5.0, 5.0, 3.0, 3.0, 3.0]], np.float32)
  bce = lambda x, z: np.log1p(np.exp(-x)) if z else np.log1p(np.exp(x))
  logp = logits[0, 5:] - np.log(np.exp(logits[0, 5:]).sum())
  # Image 0's predicted box: centre (0.5, 0.5), size 0.5 -> corners (0.25, 0.25, 0.75, 0.75).
  pb, tb = np.array([0.25, 0.25, 0.75, 0.75]), np.array([0.2, 0.1, 0.6, 0.5])
  inter = (0.6 - 0.25) * (0.5 - 0.25)
  iou = inter / (0.25 + 0.16 - inter)
  img0 = bce(2.0, 1) - logp[1] + np.abs(pb - tb).sum() + 1 - iou
  img1 = bce(-1.0, 0)
  # Jitted, as the train step runs it (one compile, not one per op).
  loss = jax.jit(functools.partial(L.modern_loss, box_weight=1.0))(
      jnp.asarray(logits), jnp.asarray(TARGET))
  assert float(loss) == pytest.approx((img0 + img1) / 2, rel=1e-5)
  grads = jax.jit(jax.grad(L.modern_loss))(jnp.asarray(logits), jnp.asarray(TARGET))
  assert np.all(np.asarray(grads)[1, 1:] == 0) and np.all(np.isfinite(grads))


def test_decode_and_pair_iou():
  pred = jnp.asarray(TARGET)
  p, box, cls = L.decode(pred, 'course')
  np.testing.assert_allclose(p, [1, 0])
  np.testing.assert_allclose(box[0], [0.2, 0.1, 0.6, 0.5], atol=1e-7)
  assert int(cls[0]) == 1
  np.testing.assert_allclose(L.pair_iou(box, box)[:1], [1.0])
  p, box, _ = L.decode(jnp.zeros((1, 8)), 'modern')  # sigmoid(0): centre 0.5, size 0.5
  np.testing.assert_allclose(p, [0.5])
  np.testing.assert_allclose(box[0], [0.25, 0.25, 0.75, 0.75])


def test_bad_kind_and_shapes():
  with pytest.raises(ValueError, match="unknown localisation loss 'mse'; choose one of course"):
    L.loss(jnp.asarray(TARGET), jnp.asarray(TARGET), 'mse')
  with pytest.raises(ValueError, match=r'both be \(B, 5 \+ C\)'):
    L.course_loss(jnp.zeros((2, 5)), jnp.zeros((2, 5)))
