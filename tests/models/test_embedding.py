"""Embedding network (unit norm, any backbone) and the siamese head."""

import chex
import jax
import jax.numpy as jnp
import numpy as np

from cnn_jax.models import get_model
from cnn_jax.models.embedding import Embedding, SiameseHead, l2_normalize


class EmbeddingTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_unit_norm_embeddings(self):
    model = get_model('embedding', dim=16, backbone_kwargs={'depth': 8, 'widths': (4, 8, 8)})
    assert isinstance(model, Embedding)
    x = jax.random.normal(jax.random.key(0), (3, 16, 16, 3))
    variables = model.init(jax.random.key(1), x)
    emb = self.variant(lambda v, x: model.apply(v, x))(variables, x)
    chex.assert_shape(emb, (3, 16))
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-6)
    assert set(variables['params']) == {'backbone'}
    assert variables['params']['backbone']['fc']['kernel'].shape == (8, 16)

  @chex.variants(with_jit=True, without_jit=True)
  def test_l2_normalize_keeps_zero_rows_finite(self):
    y = self.variant(l2_normalize)(jnp.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(y, [[0.6, 0.8], [0.0, 0.0]])

  def test_siamese_head_kinds(self):
    f1 = l2_normalize(jax.random.normal(jax.random.key(0), (5, 8)))
    f2 = l2_normalize(jax.random.normal(jax.random.key(1), (5, 8)))
    for kind in ('abs', 'chi2'):
      head = SiameseHead(kind=kind)
      params = head.init(jax.random.key(2), f1, f2)
      logits = head.apply(params, f1, f2)
      chex.assert_shape(logits, (5,))
      chex.assert_tree_all_finite(logits)
      # Symmetric in its two inputs, as pair features are.
      np.testing.assert_allclose(logits, head.apply(params, f2, f1), rtol=1e-6)
