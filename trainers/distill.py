"""Distils a teacher into a student: the project's main job.

  python -m trainers.distill --flagfile=configs/dcd.flags

Runs end to end from nothing: prepares the data, trains the teacher into --teacher_dir when it
holds none (with the settings of --teacher_flagfile), computes the teacher's rankings, distils the
student with --method, and writes the student's workdir (checkpoint, flags, TensorBoard logs,
metrics.json shaped like trainers.train's).
"""

import os

from absl import app, flags

from tfkd import distill, training
from tfkd.errors import ConfigError
from trainers import common

FLAGS = flags.FLAGS
common.define_common_flags()
common.define_model_flags()
flags.DEFINE_string("teacher_dir", None, "The teacher's work directory (trained there first "
                    "when it holds no model).")
flags.DEFINE_string("teacher_flagfile", "configs/bpr_teacher.flags",
                    "trainers.train flagfile used to train the teacher when --teacher_dir "
                    "holds none.")
flags.DEFINE_enum("method", None, sorted(distill.METHODS), "Distillation method (required: "
                  "every distillation config sets it).")
flags.DEFINE_integer("knowledge_chunk_size", 1024, "Users per chunk when ranking with the "
                     "teacher.", lower_bound=1)
# RRD (user side) and IR-RRD (item side).
flags.DEFINE_enum("rrd_variant", "sampled", ["sampled", "full"], "Sampled RRD (paper) or all "
                  "top-K items with every other unobserved item as the tail.")
flags.DEFINE_integer("rrd_k", 40, "Interesting items per user (K).", lower_bound=1)
flags.DEFINE_integer("rrd_top", 500, "Teacher top list the K items are drawn from.",
                     lower_bound=1)
flags.DEFINE_float("rrd_temperature", 10.0, "T of p(rank) ~ exp(-(rank + 1) / T).",
                   lower_bound=1e-9)
flags.DEFINE_integer("rrd_l", 40, "Uninteresting (tail) items per user (L).", lower_bound=0)
flags.DEFINE_float("rrd_weight", 1e-3, "lambda_RRD.", lower_bound=0.0)
flags.DEFINE_integer("list_pairs", 0, "RRD / DCD: score the lists of the users (and positive "
                     "items) of each batch's first N (user, item) pairs only, a uniform sample "
                     "of the shuffled batch; 0: of all its pairs (the reference's schedule).",
                     lower_bound=0)
flags.DEFINE_integer("ir_rrd_k", 20, "Item side: interesting users per item.", lower_bound=1)
flags.DEFINE_integer("ir_rrd_top", 100, "Item side: teacher top list of users.", lower_bound=1)
flags.DEFINE_float("ir_rrd_temperature", 10.0, "Item side: T.", lower_bound=1e-9)
flags.DEFINE_integer("ir_rrd_l", 20, "Item side: uninteresting users per item.", lower_bound=0)
flags.DEFINE_float("ir_rrd_weight", 0.0, "lambda of the item side (0 disables it).",
                   lower_bound=0.0)
# DCD.
flags.DEFINE_float("dcd_mu", 1e-3, "mu of the discrepancy tanh(max(mu (R_S - R_T), 0)).",
                   lower_bound=1e-12)
flags.DEFINE_enum("dcd_candidates", "union", ["teacher_top", "union", "all"],
                  "Entries whose ranks enter the discrepancy.")
flags.DEFINE_integer("dcd_top", 500, "User side: length P of the candidate lists.", lower_bound=1)
flags.DEFINE_integer("dcd_item_top", 100, "Item side: length P of the candidate lists.",
                     lower_bound=1)
flags.DEFINE_integer("dcd_num_under", 40, "User side: under-estimated items M_l.", lower_bound=1)
flags.DEFINE_integer("dcd_num_over", 40, "User side: over-estimated items M_h.", lower_bound=0)
flags.DEFINE_integer("dcd_item_num_under", 40, "Item side: under-estimated users.",
                     lower_bound=1)
flags.DEFINE_integer("dcd_item_num_over", 40, "Item side: over-estimated users.", lower_bound=0)
flags.DEFINE_float("dcd_user_weight", 1e-4, "lambda_UCD (0 disables the user side).",
                   lower_bound=0.0)
flags.DEFINE_float("dcd_item_weight", 1e-4, "lambda_ICD (0 disables the item side).",
                   lower_bound=0.0)
flags.DEFINE_bool("dcd_deterministic", False, "Take the largest errors instead of sampling.")
flags.DEFINE_integer("dcd_cache_mb", 1024, "DCD, union candidates: keep each side's teacher "
                     "rank of every (row, column) between refreshes when that side's ranks fit "
                     "in this many MiB (2 bytes per entry for catalogs under 32,768, else 4; "
                     "0: score and sort the teacher's rows at every refresh).", lower_bound=0)
flags.DEFINE_integer("refresh_every", 5, "Epochs between refreshes of the student's ranks (DCD) "
                     "or redraws of the samples (CD).", lower_bound=1)
# RD.
flags.DEFINE_integer("rd_top", 15, "RD: the teacher's top-K items taken as positives.",
                     lower_bound=1)
flags.DEFINE_float("rd_lambda", 1.0, "RD: position weights exp(-r / lambda).", lower_bound=1e-12)
flags.DEFINE_float("rd_weight", 0.5, "RD: lambda of (1 - lambda) L_CF + lambda L_KD.",
                   lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_integer("rd_dynamic_start", 10, "RD: first epoch of the dynamic weights (-1: never).",
                     lower_bound=-1)
flags.DEFINE_float("rd_mu", 0.1, "RD: mu of the dynamic weights.", lower_bound=1e-12)
flags.DEFINE_integer("rd_num_samples", 100, "RD: items sampled to estimate the student's ranks.",
                     lower_bound=1)
# CD.
flags.DEFINE_enum("cd_guide", "teacher", ["uniform", "teacher", "student"],
                  "CD: whose ranking the samples follow: uniform (CD-Base), teacher (CD-TG), "
                  "student (CD-SG).")
flags.DEFINE_enum("cd_scheme", "linear", ["linear", "exponential"], "CD: rank-aware sampling.")
flags.DEFINE_float("cd_slope", 0.1, "CD: slope of the exponential scheme.", lower_bound=1e-12)
flags.DEFINE_float("cd_sample_ratio", 0.5, "CD: sample ceil(ratio x the user's training items).",
                   lower_bound=0.0)
flags.DEFINE_integer("cd_sample_size", 0, "CD: sample this many items per user instead (> 0).",
                     lower_bound=0)
flags.DEFINE_float("cd_alpha", 2.0, "CD: soft target sigmoid((t - beta) / alpha).",
                   lower_bound=1e-12)
flags.DEFINE_float("cd_beta", 1.0, "CD: soft target shift beta.")
flags.DEFINE_enum("cd_cf_loss", "selective", ["selective", "full"],
                  "CD: the student's loss on observed items only (the paper), or its own loss.")
flags.DEFINE_enum("cd_kd_pass", "clean", ["clean", "training"],
                  "CD: score L_KD's sampled items in a clean pass of the student, or in the CF "
                  "term's training pass (CDAE's corrupted rows, Caser's dropout).")
flags.DEFINE_integer("cd_cache_mb", 1024, "CD: keep the teacher's score rows (and for CD-TG / "
                     "CD-Base the guide's order of every user's items) between draws when they "
                     "fit in this many MiB (4 bytes per user x item, 8 with the order; 0: "
                     "recompute at every draw).",
                     lower_bound=0)
flags.DEFINE_float("cd_weight", 0.5, "CD: lambda of (1 - lambda) L_CF + lambda L_KD.",
                   lower_bound=0.0, upper_bound=1.0)


def rrd_config():
  return distill.RRDConfig(
      variant=FLAGS.rrd_variant, num_interesting=FLAGS.rrd_k, top=FLAGS.rrd_top,
      temperature=FLAGS.rrd_temperature, num_uninteresting=FLAGS.rrd_l, weight=FLAGS.rrd_weight,
      item_num_interesting=FLAGS.ir_rrd_k, item_top=FLAGS.ir_rrd_top,
      item_temperature=FLAGS.ir_rrd_temperature, item_num_uninteresting=FLAGS.ir_rrd_l,
      item_weight=FLAGS.ir_rrd_weight, list_pairs=FLAGS.list_pairs, seed=FLAGS.seed)


def dcd_config():
  return distill.DCDConfig(
      rrd=rrd_config(), mu=FLAGS.dcd_mu, candidates=FLAGS.dcd_candidates, top=FLAGS.dcd_top,
      item_top=FLAGS.dcd_item_top, num_under=FLAGS.dcd_num_under, num_over=FLAGS.dcd_num_over,
      item_num_under=FLAGS.dcd_item_num_under, item_num_over=FLAGS.dcd_item_num_over,
      user_weight=FLAGS.dcd_user_weight, item_weight=FLAGS.dcd_item_weight,
      deterministic=FLAGS.dcd_deterministic, refresh_every=FLAGS.refresh_every,
      chunk_size=FLAGS.knowledge_chunk_size, cache_bytes=FLAGS.dcd_cache_mb << 20,
      seed=FLAGS.seed)


def rd_config():
  return distill.RDConfig(
      top=FLAGS.rd_top, lam=FLAGS.rd_lambda, weight=FLAGS.rd_weight,
      dynamic_start=FLAGS.rd_dynamic_start, mu=FLAGS.rd_mu, num_samples=FLAGS.rd_num_samples,
      seed=FLAGS.seed)


def cd_config():
  return distill.CDConfig(
      guide=FLAGS.cd_guide, scheme=FLAGS.cd_scheme, slope=FLAGS.cd_slope,
      sample_ratio=FLAGS.cd_sample_ratio, sample_size=FLAGS.cd_sample_size, alpha=FLAGS.cd_alpha,
      beta=FLAGS.cd_beta, weight=FLAGS.cd_weight, cf_loss=FLAGS.cd_cf_loss,
      kd_pass=FLAGS.cd_kd_pass, cache_bytes=FLAGS.cd_cache_mb << 20,
      refresh_every=FLAGS.refresh_every,
      chunk_size=FLAGS.knowledge_chunk_size, seed=FLAGS.seed)


METHOD_CONFIGS = {"rrd": rrd_config, "dcd": dcd_config, "rd": rd_config, "cd": cd_config}


def distill_config():
  with common.one_line_errors():
    if FLAGS.method is None:
      # A default would silently run that method for a flagfile that names none (a student or
      # dataset config given alone).
      raise ConfigError(f"--method: no distillation method given; expected one of "
                        f"{', '.join(sorted(distill.METHODS))} (the configs of "
                        f"configs/ that distil set it)")
    teacher = None
    if not os.path.isfile(os.path.join(FLAGS.teacher_dir or "", training.MODEL_FILE)):
      teacher = common.train_config_from_flagfile(
          FLAGS.teacher_flagfile, dataset=FLAGS.dataset, data_dir=FLAGS.data_dir,
          dataset_kwargs=common.dataset_kwargs(), split_seed=FLAGS.split_seed,
          num_candidates=FLAGS.num_candidates, eval_protocol=FLAGS.eval_protocol,
          verbose=FLAGS.verbose, deterministic=FLAGS.deterministic, strategy=FLAGS.strategy,
          logical_cpus=FLAGS.logical_cpus)
    return common.train_config(
        cls=training.DistillConfig, teacher_dir=FLAGS.teacher_dir, teacher=teacher,
        method=FLAGS.method, method_config=METHOD_CONFIGS[FLAGS.method](),
        knowledge_chunk_size=FLAGS.knowledge_chunk_size)


def main(argv):
  # absl's app.run exits with main's return value: a returned dict would exit 1.
  common.run(argv, distill_config, training.distill)


if __name__ == "__main__":
  flags.mark_flag_as_required("teacher_dir")
  app.run(main)
