"""Paired comparison of two methods' per-user metrics."""

import math

import numpy as np


def _student_t_sf2(t, df):
  """Two-sided p-value of Student's t: I_{df/(df+t^2)}(df/2, 1/2) (regularized incomplete beta)."""
  import tensorflow as tf  # betainc is TF's; imported lazily to keep this module light
  x = df / (df + t * t)
  return float(tf.math.betainc(tf.constant(df / 2.0, tf.float64), tf.constant(0.5, tf.float64),
                               tf.constant(x, tf.float64)))


def paired_ttest(a, b):
  """Paired t-test of a against b (e.g. per-seed or per-user H@5).

  Returns (mean difference a - b, t statistic, two-sided p-value). Identical samples give p = 1.
  """
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
    raise ValueError(f"paired_ttest needs two 1-D samples of equal length >= 2, got "
                     f"{a.shape} and {b.shape}")
  d = a - b
  mean, sd = float(d.mean()), float(d.std(ddof=1))
  if sd == 0.0:
    return mean, (0.0 if mean == 0 else math.copysign(math.inf, mean)), (1.0 if mean == 0 else 0.0)
  t = mean / (sd / math.sqrt(len(d)))
  return mean, t, _student_t_sf2(t, len(d) - 1.0)
