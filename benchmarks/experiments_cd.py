"""The CD paper's Table II and Figure 6 (Lee et al., "Collaborative Distillation for Top-N
Recommendation", ICDM 2019): cd_table2 and cd_fig6. Timestamp leave-one-out, full ranking,
HR@50 and NDCG@50 (configs/ml100k.flags: --cutoffs=10,50, so metrics.json has H@50 and NDCG@50).
"""

import numpy as np

from benchmarks.experiments import Experiment, metric_row, per_seed_lines, run, ttest_lines
from benchmarks.reproduce_report import Gain, Section, Stat, Table, line_plot, validation_curve

METRICS = ("H@50", "NDCG@50")
HEADER = ("HR@50", "NDCG@50")
ROWS = ("Teacher", "Student", "RD", "CD-Base", "CD-TG", "CD-SG")


def _block(prefix, teacher, student, rd, cds, common=(), extra=()):
  """{row: run} of one model on one dataset: `common` flagfiles after the teacher's and the
  student's configs (the RD and CD flagfiles given include their own), `extra` flags for every
  student."""
  t = run(f"{prefix}_teacher", teacher, *common)
  return {"Teacher": t, "Student": run(f"{prefix}_student", student, *common, extra=extra),
          "RD": run(f"{prefix}_rd", *rd, extra=extra, teacher=t),
          **{label: run(f"{prefix}_{cd.removeprefix('caser_')}", cd, *cd_common, extra=extra,
                        teacher=t)
             for label, cd, cd_common in cds}}


CDAE_ML100K = _block("cdae", "cdae_teacher", "cdae_student", ("rd",),
                     [(label, cfg, ()) for label, cfg in
                      (("CD-Base", "cd_base"), ("CD-TG", "cd_tg"), ("CD-SG", "cd_sg"))])
CASER_ML100K = _block("caser", "caser_teacher", "caser_student", ("caser_rd",),
                      [(label, cfg, ()) for label, cfg in (
                          ("CD-Base", "caser_cd_base"), ("CD-TG", "caser_cd_tg"),
                          ("CD-SG", "caser_cd_sg"))])
# Amazon Music: the ML-100K CDAE configs moved there by amusic.flags; RD and CD with the
# settings chosen on validation (amusic_rd.flags, amusic_cd.flags); students capped at 1000
# epochs, as their runs in RESULTS.md (amusic_rd.flags and amusic_cd.flags include amusic.flags).
AMUSIC = _block("amusic_cdae", "cdae_teacher", "cdae_student", ("rd", "amusic_rd"),
                [(label, cfg, ("amusic_cd",)) for label, cfg in
                 (("CD-Base", "cd_base"), ("CD-TG", "cd_tg"), ("CD-SG", "cd_sg"))],
                common=("amusic",), extra=("--epochs=1000",))
BLOCKS = {"CDAE, ML-100K": CDAE_ML100K, "Caser, ML-100K": CASER_ML100K,
          "CDAE, Amazon Music": AMUSIC}
# The paper's Table II: (HR@50, NDCG@50); Gain: its best CD over RD, in percent.
PAPER = {
    "CDAE, ML-100K": {"Teacher": (0.3917, 0.1288), "Student": (0.3565, 0.1107),
                      "RD": (0.3578, 0.1112), "CD-Base": (0.3707, 0.1124),
                      "CD-TG": (0.3805, 0.1175), "CD-SG": (0.3741, 0.1182), "Gain": (6.3, 6.3)},
    "Caser, ML-100K": {"Teacher": (0.3145, 0.0868), "Student": (0.2717, 0.0730),
                       "RD": (0.2732, 0.0758), "CD-Base": (0.3147, 0.0872),
                       "CD-TG": (0.3203, 0.0879), "CD-SG": (0.3196, 0.0891), "Gain": (17.2, 17.5)},
    "CDAE, Amazon Music": {"Teacher": (0.1727, 0.0547), "Student": (0.1217, 0.0370),
                           "RD": (0.1275, 0.0402), "CD-Base": (0.1613, 0.0498),
                           "CD-TG": (0.1653, 0.0513), "CD-SG": (0.1681, 0.0519),
                           "Gain": (31.8, 29.1)}}


def cd_table2(res):
  s = Section("CD Table II: teacher, student, RD, CD-Base, CD-TG, CD-SG")
  s.add("Test HR@50 and NDCG@50 (metrics.json H@50, NDCG@50), mean +- std over seeds, the "
        "paper's value in parentheses. Gain: the better of CD-TG and CD-SG over RD, in percent, "
        "as the paper's Gain row.")
  for block, runs in BLOCKS.items():
    paper = PAPER[block]
    rows = [[block, *metric_row(res, label, runs[label], METRICS, paper[label])] for label in ROWS]
    stats = {row[1]: row[2:-1] for row in rows}
    best = [max((m for m in (tg.mean, sg.mean) if m is not None), default=None)
            for tg, sg in zip(stats["CD-TG"], stats["CD-SG"])]
    rows.append([block, "Gain", *(Gain(b, rd.mean, p) for b, rd, p in
                                  zip(best, stats["RD"], paper["Gain"])), ""])
    s.add(Table(["model, data", "method", *HEADER, "seeds"], rows), block)
  ttest_lines(s, res, [(f"{block}: {a} vs {b}", runs[a], runs[b], None)
                       for block, runs in BLOCKS.items() for a in ("CD-TG", "CD-SG")
                       for b in ("Student", "RD")], "H@50")
  per_seed_lines(s, res, {f"{block} {label}": r for block, runs in BLOCKS.items()
                          for label, r in runs.items()}, "H@50")
  return s


FIG6 = {label: AMUSIC[label] for label in ("Student", "CD-TG", "CD-SG")}
FIG6_METRIC = "NDCG@50"


def mean_curve(res, run_):
  """(epochs, means, stds or None) of a run's validation curve over its seeds (at each epoch,
  the seeds whose runs reached it)."""
  curves = [validation_curve(w, FIG6_METRIC) for w in res.workdirs(run_.name).values()]
  epochs = sorted({e for c in curves for e in c})
  at = [[c[e] for c in curves if e in c] for e in epochs]
  stds = [float(np.std(v, ddof=1)) if len(v) > 1 else 0.0 for v in at]
  return epochs, [float(np.mean(v)) for v in at], stds if len(curves) > 1 else None


def cd_fig6(res):
  s = Section("CD Figure 6: NDCG@50 against epochs (CDAE, Amazon Music)")
  s.add("Validation NDCG@50 at every evaluation (every --eval_every epochs; from each run's "
        "TensorBoard logs, logs/validation), mean over the seeds whose runs reached the epoch "
        "(shaded: +- std), for the plain student, CD-TG and CD-SG; the dashed line is the "
        "teacher's test NDCG@50. The paper's Figure 6a, a figure only.")
  curves, rows = {}, []
  for label, r in FIG6.items():
    curves[label] = mean_curve(res, r)
    best = {seed: max(validation_curve(w, FIG6_METRIC).values(), default=np.nan)
            for seed, w in res.workdirs(r.name).items()}
    rows.append([label, Stat(best), Stat(res.values(r.name, "best_epoch"), digits=0),
                 *metric_row(res, label, r, (FIG6_METRIC,))[1:]])
  teacher = Stat(res.values(AMUSIC["Teacher"].name, "test", FIG6_METRIC)).mean
  s.add(Table(["method", "best validation NDCG@50", "best epoch", "test NDCG@50", "seeds"], rows),
        "curves")
  s.figures["cd_fig6"] = line_plot(
      {k: v for k, v in curves.items() if v[0]}, "epoch", f"validation {FIG6_METRIC}",
      "CDAE on Amazon Music", {"teacher (test)": teacher} if teacher is not None else None)
  return s


def experiments():
  return (Experiment("cd_table2", "CD paper, Table II",
                     tuple(r for runs in BLOCKS.values() for r in runs.values()), cd_table2),
          Experiment("cd_fig6", "CD paper, Figure 6a", (AMUSIC["Teacher"], *FIG6.values()),
                     cd_fig6))
