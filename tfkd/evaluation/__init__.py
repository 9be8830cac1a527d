"""Ranking evaluation: full and sampled protocols, H@N / M@N / NDCG@N, paired t-tests."""

from tfkd.evaluation.metrics import per_user_metrics, summarize
from tfkd.evaluation.ranking import PROTOCOLS, EvalResult, Evaluator
from tfkd.evaluation.stats import paired_ttest
