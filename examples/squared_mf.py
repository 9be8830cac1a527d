"""Matrix factorisation trained with a pointwise squared loss: a new model in one file.

The observed item of each training row should score 1 and its sampled negatives 0. Scores are
dot products of a user and an item embedding, as in BPR; only the training objective differs.
"""

import keras
import tensorflow as tf

from tfkd import models


@models.register("squared_mf")
@keras.saving.register_keras_serializable(package="tfkd_examples")
class SquaredMF(models.Recommender):
  """users int [B], items int [B, N] -> scores [B, N] = <p_u, q_i>."""

  def __init__(self, num_users, num_items, dim=8, l2=0.0, **kwargs):
    super().__init__(num_users, num_items, **kwargs)
    self.dim, self.l2 = int(dim), float(l2)
    init = keras.initializers.RandomNormal(stddev=0.1)
    self.user_embedding = keras.layers.Embedding(num_users, dim, embeddings_initializer=init)
    self.item_embedding = keras.layers.Embedding(num_items, dim, embeddings_initializer=init)

  def score(self, users, items):
    return tf.einsum("bd,bnd->bn", self.user_embedding(users), self.item_embedding(items))

  def score_all(self, users):
    return tf.matmul(self.user_embedding(users), self.item_embedding.embeddings,
                     transpose_b=True)

  def data_loss(self, y_pred):
    """y_pred [B, 1 + k]: the observed item's score, then k negatives'."""
    target = tf.concat([tf.ones_like(y_pred[:, :1]), tf.zeros_like(y_pred[:, 1:])], axis=1)
    return tf.reduce_mean(tf.square(y_pred - target))

  def penalized_rows(self, users, items):
    return [self.user_embedding(users), self.item_embedding(items)]

  def get_config(self):
    return dict(super().get_config(), dim=self.dim, l2=self.l2)
