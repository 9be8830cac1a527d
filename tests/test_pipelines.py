import numpy as np
import scipy.stats
import tensorflow as tf

from tfkd.data import pipelines


def test_sample_unobserved_is_uniform_over_unseen_items_only():
  # User 0 saw 8 of 10 items (most draws are rejected, several rounds), user 1 saw one.
  users = np.array([0] * 8 + [1])
  items = np.array([0, 1, 2, 3, 4, 5, 6, 7, 9])
  seen = pipelines.SeenSet(users, items, 10)
  batch = tf.constant([0] * 500 + [1] * 500, tf.int32)
  drawn = pipelines.sample_unobserved(seen, batch, 6, tf.constant(3, tf.int64)).numpy()
  assert drawn.shape == (1000, 6)
  assert set(np.unique(drawn[:500])) == {8, 9}
  counts0 = np.bincount(drawn[:500].ravel(), minlength=10)[[8, 9]]
  assert scipy.stats.chisquare(counts0).pvalue > 1e-3
  assert 9 not in drawn[500:]
  counts1 = np.bincount(drawn[500:].ravel(), minlength=10)[[0, 1, 2, 3, 4, 5, 6, 7, 8]]
  assert scipy.stats.chisquare(counts1).pvalue > 1e-3
  # Same seed, same draw; another seed, another draw.
  again = pipelines.sample_unobserved(seen, batch, 6, tf.constant(3, tf.int64)).numpy()
  other = pipelines.sample_unobserved(seen, batch, 6, tf.constant(4, tf.int64)).numpy()
  np.testing.assert_array_equal(drawn, again)
  assert not np.array_equal(drawn, other)
