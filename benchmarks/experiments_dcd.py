"""The DCD paper's tables and figures (Kang et al., "Dual Correction Strategy for Ranking
Distillation in Top-N Recommender System", CIKM 2021): dcd_table2, dcd_table3, dcd_fig1a,
dcd_fig1b and speed (its Table 1); dcd_fidelity and dcd_speed (what DCD's gain depends on, and
its epoch time). CiteULike, DE-RRD split, sampled protocol (configs/base.flags)
unless flags passed through say otherwise."""

import numpy as np

from benchmarks.experiments import (Experiment, gap_cell, metric_row, per_seed_lines, run,
                                   ttest_lines)
from benchmarks.reproduce_report import (Gain, Section, Stat, Table, bar_chart, heatmap,
                                         seeds_text)
from benchmarks.reproduce_runs import Run

METRICS = ("H@5", "M@5", "H@10", "M@10")
BPR_TEACHER = run("bpr_teacher", "bpr_teacher")
BPR_STUDENT = run("bpr_student", "bpr_student")
BPR_RRD = run("bpr_rrd", "rrd", teacher=BPR_TEACHER)
BPR_DCD = run("bpr_dcd", "dcd", teacher=BPR_TEACHER)
ABLATIONS = {label: run(f"bpr_{name}", name, teacher=BPR_TEACHER) for label, name in (
    ("w/o correction", "dcd_wo_correction"), ("w/o item side", "dcd_wo_item"),
    ("w/o user side", "dcd_wo_user"), ("w/o sampling", "dcd_wo_sampling"))}
NEUMF_GMF, NEUMF_MLP = run("neumf_gmf", "neumf_gmf"), run("neumf_mlp", "neumf_mlp")
NEUMF_TEACHER = run("neumf_teacher", "neumf_teacher", pretrained=(NEUMF_GMF, NEUMF_MLP))
NEUMF_STUDENT = run("neumf_student", "neumf_student")
# No config distils NeuMF: the method's config, then neumf_student.flags over its BPR student
# (later flagfiles win, and neumf_student.flags sets every flag bpr_student.flags sets).
_NEUMF = "--teacher_flagfile=configs/neumf_teacher.flags"
NEUMF_RRD = run("neumf_rrd", "rrd", "neumf_student", extra=(_NEUMF,), teacher=NEUMF_TEACHER)
NEUMF_DCD = run("neumf_dcd", "dcd", "neumf_student", extra=("--nojit_compile", _NEUMF),
                teacher=NEUMF_TEACHER)  # --jit_compile (in dcd.flags) is for BPR only
METHODS = ("Teacher", "Student", "RRD", "DCD")
MODELS = {"BPR": dict(zip(METHODS, (BPR_TEACHER, BPR_STUDENT, BPR_RRD, BPR_DCD))),
          "NeuMF": dict(zip(METHODS, (NEUMF_TEACHER, NEUMF_STUDENT, NEUMF_RRD, NEUMF_DCD)))}
# The paper's Table 2 (CiteULike): H@5, M@5, H@10, M@10; improve.r / .s in percent.
PAPER_TABLE2 = {
    "BPR": {"Teacher": (0.5282, 0.3704, 0.6328, 0.3844),
            "Student": (0.4570, 0.3061, 0.5673, 0.3214),
            "RRD": (0.4735, 0.3200, 0.5800, 0.3343), "DCD": (0.4989, 0.3412, 0.6082, 0.3560),
            "improve.r": (5.36, 6.63, 4.86, 6.49), "improve.s": (9.17, 11.47, 7.21, 10.77),
            "p": "p <= 0.005"},
    "NeuMF": {"Teacher": (0.4840, 0.3346, 0.5827, 0.3478),
              "Student": (0.3805, 0.2499, 0.4817, 0.2634), "RRD": (0.4563, 0.2952, 0.5647, 0.3092),
              "DCD": (0.4700, 0.3101, 0.5742, 0.3241), "improve.r": (3.00, 5.05, 1.68, 4.82),
              "improve.s": (23.52, 24.09, 19.20, 23.04), "p": "p <= 0.0005"}}
# The paper's Table 3 is on Foursquare (BPR): it has no CiteULike ablation.
PAPER_TABLE3 = {"DCD": (0.5468, 0.3483, 0.6958, 0.3683),
                "w/o correction": (0.5318, 0.3408, 0.6710, 0.3594),
                "w/o item side": (0.5399, 0.3424, 0.6908, 0.3628),
                "w/o user side": (0.5377, 0.3419, 0.6870, 0.3620),
                "w/o sampling": (0.5420, 0.3426, 0.6898, 0.3621)}
# The paper's Table 1, CiteULike: parameters, and seconds to rank every user's list on a CPU.
PAPER_TABLE1 = {"BPR teacher": ("6.08M", 59.80), "BPR student": ("0.61M", 14.90),
                "NeuMF teacher": ("12.24M", 261.37), "NeuMF student": ("1.22M", 33.75)}


def dcd_table2(res):
  s = Section("DCD Table 2: teacher, student, RRD and DCD, BPR and NeuMF")
  s.add("Test metrics, mean +- std over seeds, the paper's value (CiteULike) in parentheses; "
        "improve.r / improve.s: DCD's mean over RRD's / the student's, in percent, as the paper "
        "defines them.")
  for model, runs in MODELS.items():
    paper = PAPER_TABLE2[model]
    rows = [[model, *metric_row(res, m, r, METRICS, paper[m])] for m, r in runs.items()]
    stats = {row[1]: row[2:-1] for row in rows}
    for label, base in (("improve.r", "RRD"), ("improve.s", "Student")):
      rows.append([model, label, *(Gain(d.mean, b.mean, p) for d, b, p in
                                   zip(stats["DCD"], stats[base], paper[label])), ""])
    s.add(Table(["model", "method", *METRICS, "seeds"], rows), model)
  ttest_lines(s, res, [(f"{model}: DCD vs RRD", runs["DCD"], runs["RRD"], PAPER_TABLE2[model]["p"])
                       for model, runs in MODELS.items()], "H@5")
  per_seed_lines(s, res, {f"{model} {method}": r for model, runs in MODELS.items()
                          for method, r in runs.items()}, "H@5")
  return s


def dcd_table3(res):
  s = Section("DCD Table 3: ablations of DCD (BPR)")
  s.add("Test metrics, mean +- std over seeds; in parentheses the paper's value, which is on "
        "Foursquare (the paper has no CiteULike ablation). Rank gap: mean |R_S - R_T| over the "
        "teacher's top 50, user / item side (metrics.json `discrepancy`).")
  runs = {"DCD": BPR_DCD, **ABLATIONS}
  rows = [[*metric_row(res, label, r, METRICS, PAPER_TABLE3[label])[:-1], gap_cell(res, r),
           seeds_text(res.seeds(r.name))] for label, r in runs.items()]
  s.add(Table(["method", *METRICS, "rank gap user / item", "seeds"], rows), "ablations")
  ttest_lines(s, res, [(f"DCD vs {label}", BPR_DCD, r, None) for label, r in ABLATIONS.items()],
              "H@5")
  per_seed_lines(s, res, runs, "H@5")
  return s


FIG1A = {"RRD": BPR_RRD, "UCD only": ABLATIONS["w/o item side"],
         "ICD only": ABLATIONS["w/o user side"], "DCD": BPR_DCD}


def dcd_fig1a(res):
  s = Section("DCD Figure 1a: rank discrepancy from the teacher (BPR)")
  s.add("The final student's mean |R_S - R_T| over the teacher's top-50 list, averaged over all "
        "users (user side) and all items (item side), mean +- std over seeds (metrics.json "
        "`discrepancy`; the paper gives these as a figure only). UCD only is "
        "`dcd_wo_item.flags`, ICD only `dcd_wo_user.flags`.")
  rows, series = [], {}
  for label, r in FIG1A.items():
    user, item = (Stat(res.values(r.name, "discrepancy", k), digits=1) for k in ("user", "item"))
    rows.append([label, user, item, Stat(res.values(r.name, "test", "H@5")),
                 seeds_text(res.seeds(r.name))])
    series[label] = [(user.mean, user.std), (item.mean, item.std)]
  s.add(Table(["method", "user side", "item side", "test H@5", "seeds"], rows), "discrepancy")
  s.figures["dcd_fig1a"] = bar_chart(["user side", "item side"], series,
                                     "mean |R_S - R_T| over the teacher's top 50",
                                     "Rank discrepancy from the teacher")
  return s


DEFAULT_GRID = (0.0, 1e-4, 1e-3, 1e-2)


def grid_runs(grid):
  """{(lambda_UCD, lambda_ICD): run}: dcd.flags with both weights set."""
  return {(u, i): run(f"dcd_u{u:g}_i{i:g}", "dcd", extra=(f"--dcd_user_weight={u:g}",
                                                          f"--dcd_item_weight={i:g}"),
                      teacher=BPR_TEACHER, shared=False) for u in grid for i in grid}


def dcd_fig1b(grid):
  """(build, runs) of Figure 1b over `grid` x `grid`."""
  cells = grid_runs(grid)

  def build(res):
    s = Section("DCD Figure 1b: test H@5 over lambda_UCD x lambda_ICD (BPR)")
    s.add("Test H@5, mean +- std over seeds, of `dcd.flags` with `--dcd_user_weight` "
          "(lambda_UCD, rows) and `--dcd_item_weight` (lambda_ICD, columns); both 0 is RRD on "
          "the DCD schedule. The paper gives this as a figure only (best around 1e-2 to 1e-3 "
          "on both sides).")
    labels = [f"{v:g}" for v in grid]
    stats = {k: Stat(res.values(r.name, "test", "H@5")) for k, r in cells.items()}
    rows = [[f"lambda_UCD {label}", *(stats[(u, i)] for i in grid)]
            for label, u in zip(labels, grid)]
    s.add(Table(["", *(f"lambda_ICD {x}" for x in labels)], rows), "grid")
    means = [[np.nan if stats[(u, i)].mean is None else stats[(u, i)].mean for i in grid]
             for u in grid]
    s.figures["dcd_fig1b"] = heatmap(means, labels, labels, "lambda_UCD", "lambda_ICD",
                                     "Test H@5, DCD (BPR)")
    return s
  return build, tuple(cells.values())


def rank_time(model_run):
  """A timing job of `model_run`'s model (its catalog and config; benchmarks/
  reproduce_rank_time.py), alone on the machine."""
  return Run(f"rank_time_{model_run.name}", extra=("--repeats=3",), measures=model_run,
             trainer="benchmarks.reproduce_rank_time", every_seed=False, exclusive=True,
             passthrough=False, shared=False)


RANKED = {f"{m} {k.lower()}": MODELS[m][k] for m in MODELS for k in ("Teacher", "Student")}
RANK_TIMES = {label: rank_time(r) for label, r in RANKED.items()}


def _count(n):
  return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else f"{n:.0f}"


def _ratio(stat, base):
  """'<mean / base>x', or '-' without both."""
  return f"{stat.mean / base:.2f}x" if stat.mean is not None and base else "-"


def _accuracy_cells(res, r):
  """[validation H@5, test H@5, test M@5] over the run's seeds."""
  return [Stat(res.values(r.name, "valid", "H@5")), Stat(res.values(r.name, "test", "H@5")),
          Stat(res.values(r.name, "test", "M@5"))]


def speed(res):
  s = Section("DCD Table 1: parameters, time to rank all users, epoch times")
  s.add("Parameters (metrics.json `num_parameters`) and the seconds to score and take the top 50 "
        "of every item for every user (median of 3 passes after a warm-up, batches of 1024 "
        "users, run alone; benchmarks/reproduce_rank_time.py); the paper's CPU figures in "
        "parentheses (PyTorch, Intel i7-4770).")
  rows = []
  for label, r in RANKED.items():
    params, paper_time = PAPER_TABLE1[label]
    counts = sorted(set(res.values(r.name, "num_parameters").values()))
    ours = ", ".join(_count(c) for c in counts) or "-"
    timing = RANK_TIMES[label].name
    size = {f"{int(m['num_users'])} x {int(m['num_items'])}" for m in
            (res.metrics(timing, seed) for seed in res.seeds(timing))}
    rows.append([label, f"{ours} ({params})",
                 Stat(res.values(timing, "rank_seconds"), paper_time, digits=3),
                 ", ".join(sorted(size)) or "-"])
  s.add(Table(["model", "parameters", "rank all users, s", "users x items"], rows), "inference")
  s.add("Seconds per epoch as each run measured it (metrics.json `seconds_per_epoch`: training "
        "plus validation every --eval_every epochs, over the epochs run; runs that ran beside "
        "others share the CPU), mean +- std over seeds, and the ratio to the plain student's.")
  rows = []
  for model, runs in MODELS.items():
    base = Stat(res.values(runs["Student"].name, "seconds_per_epoch")).mean
    for method, r in runs.items():
      st = Stat(res.values(r.name, "seconds_per_epoch"), digits=3)
      rows.append([model, method, st, _ratio(st, base),
                   Stat(res.values(r.name, "epochs_run"), digits=0), seeds_text(res.seeds(r.name))])
  s.add(Table(["model", "method", "s/epoch", "vs student", "epochs run", "seeds"], rows),
        "epochs")
  return s


# What DCD's gain over RRD depends on (DCD paper, Table 2: +0.025 H@5): the paper's schedule
# (refresh every 5 epochs) with the union of the two top-500 lists and with every unobserved
# entry as candidates, beside dcd.flags (refresh every epoch).
BPR_DCD_R5 = run("bpr_dcd_r5", "dcd_refresh5", teacher=BPR_TEACHER)
BPR_DCD_R5_ALL = run("bpr_dcd_r5_all", "dcd_refresh5", extra=("--dcd_candidates=all",),
                     teacher=BPR_TEACHER)
# The item side's rows (issue 39: "the items in the batch", positives only or the negatives too)
# and the unsampled RRD base (the full tail; 128 list pairs keep its epoch affordable, and its
# ragged tail mask has no static shape for XLA).
BPR_DCD_ITEMS_BATCH = run("bpr_dcd_items_batch", "dcd", extra=("--list_items=batch",),
                          teacher=BPR_TEACHER)
_FULL = ("--rrd_variant=full", "--list_pairs=128")
BPR_RRD_FULL = run("bpr_rrd_full", "rrd", extra=_FULL, teacher=BPR_TEACHER)
BPR_DCD_FULL = run("bpr_dcd_full", "dcd", extra=(*_FULL, "--nojit_compile"), teacher=BPR_TEACHER)
FIDELITY = {"RRD (`rrd.flags`)": BPR_RRD,
            "DCD, refresh 5, union (`dcd_refresh5.flags`)": BPR_DCD_R5,
            "DCD, refresh 5, all candidates": BPR_DCD_R5_ALL,
            "DCD, refresh 1, union (`dcd.flags`)": BPR_DCD,
            "DCD, item lists for every item of the batch (`--list_items=batch`)":
                BPR_DCD_ITEMS_BATCH,
            "RRD-full (`--rrd_variant=full --list_pairs=128`)": BPR_RRD_FULL,
            "DCD-full (`dcd.flags` + the same)": BPR_DCD_FULL}


def dcd_fidelity(res):
  s = Section("DCD against the paper")
  s.add("What DCD's gain over RRD depends on (the paper: test H@5 0.4989 against RRD's 0.4735, "
        "+0.025). Candidates: `union` ranks the teacher's and the student's top-500 lists, "
        "`all` every unobserved entry (the paper's wording). Validation and test H@5, test M@5, "
        "mean +- std over seeds; rank gap as in Figure 1a; seconds per epoch as the runs "
        "measured them (refreshes included).")
  rows = []
  for label, r in FIDELITY.items():
    rows.append([label, *_accuracy_cells(res, r), gap_cell(res, r),
                 Stat(res.values(r.name, "seconds_per_epoch"), digits=2),
                 seeds_text(res.seeds(r.name))])
  s.add(Table(["configuration", "valid H@5", "test H@5", "test M@5", "rank gap user / item",
               "s/epoch", "seeds"], rows), "fidelity")
  labels = list(FIDELITY)
  ttest_lines(s, res, [(f"{label} vs RRD", FIDELITY[label], BPR_RRD, None)
                       for label in labels[1:]]
              + [("all vs union candidates at refresh 5", BPR_DCD_R5_ALL, BPR_DCD_R5, None),
                 ("items of the whole batch vs positives", BPR_DCD_ITEMS_BATCH, BPR_DCD, None),
                 ("DCD-full vs RRD-full", BPR_DCD_FULL, BPR_RRD_FULL, None),
                 ("DCD-full vs DCD", BPR_DCD_FULL, BPR_DCD, None)],
              "H@5")
  per_seed_lines(s, res, FIDELITY, "H@5")
  return s


# The main job's epoch time (issue 40): dcd.flags against the plain student, with fewer list
# passes (dcd_fast.flags) and with a rolling refresh on top (dcd_rolling.flags).
BPR_DCD_FAST = run("bpr_dcd_fast", "dcd_fast", teacher=BPR_TEACHER)
BPR_DCD_ROLLING = run("bpr_dcd_rolling", "dcd_rolling", teacher=BPR_TEACHER)
EPOCH_TIME = {"Student (`bpr_student.flags`)": BPR_STUDENT,
              "DCD (`dcd.flags`)": BPR_DCD,
              "DCD, 128 list pairs (`dcd_fast.flags`)": BPR_DCD_FAST,
              "DCD, 128 list pairs, rolling refresh (`dcd_rolling.flags`)": BPR_DCD_ROLLING}


def refresh_seconds(res, r):
  """{seed: the median seconds of a run's refreshes after the first} (metrics.json
  `refreshes`; the first also builds the union's kept teacher ranks)."""
  out = {}
  for seed in res.seeds(r.name):
    later = [x["refresh_seconds"] for x in res.metrics(r.name, seed).get("refreshes", [])
             if x["epoch"] > 0]
    if later:
      out[seed] = float(np.median(later))
  return out


def dcd_speed(res):
  s = Section("DCD's epoch time: fewer list passes and a rolling refresh")
  s.add("Each run alone on the machine, one after the other. s/epoch: metrics.json "
        "`seconds_per_epoch` (training, refreshes and validation every --eval_every epochs, over "
        "the epochs run), mean +- std over seeds, and its ratio to the plain student's; refresh: "
        "the median seconds of a run's refreshes after the first (which also builds the "
        "teacher's kept ranks). Test H@5 and M@5 and the rank gap as in the tables above.")
  base = Stat(res.values(BPR_STUDENT.name, "seconds_per_epoch")).mean
  rows = []
  for label, r in EPOCH_TIME.items():
    st = Stat(res.values(r.name, "seconds_per_epoch"), digits=3)
    rows.append([label, *_accuracy_cells(res, r),
                 gap_cell(res, r) if r is not BPR_STUDENT else "-", st, _ratio(st, base),
                 Stat(refresh_seconds(res, r), digits=2) if r is not BPR_STUDENT else "-",
                 Stat(res.values(r.name, "epochs_run"), digits=0), seeds_text(res.seeds(r.name))])
  s.add(Table(["configuration", "valid H@5", "test H@5", "test M@5", "rank gap user / item",
               "s/epoch", "vs student", "refresh s", "epochs run", "seeds"], rows), "epoch_time")
  labels = list(EPOCH_TIME)
  ttest_lines(s, res, [(f"{label} vs `dcd.flags`", EPOCH_TIME[label], BPR_DCD, None)
                       for label in labels[2:]], "H@5")
  per_seed_lines(s, res, EPOCH_TIME, "H@5")
  return s


def experiments(grid=None):
  fig1b, fig1b_runs = dcd_fig1b(tuple(grid or DEFAULT_GRID))
  return (
      Experiment("dcd_table2", "DCD paper, Table 2",
                 tuple(r for runs in MODELS.values() for r in runs.values()), dcd_table2),
      Experiment("dcd_table3", "DCD paper, Table 3", (BPR_DCD, *ABLATIONS.values()), dcd_table3),
      Experiment("dcd_fig1a", "DCD paper, Figure 1a", tuple(FIG1A.values()), dcd_fig1a),
      Experiment("dcd_fidelity", "DCD paper, Table 2: what DCD's gain over RRD depends on",
                 tuple(FIDELITY.values()), dcd_fidelity),
      Experiment("dcd_speed", "the main job's epoch time (issue 40)", tuple(EPOCH_TIME.values()),
                 dcd_speed),
      Experiment("dcd_fig1b", "DCD paper, Figure 1b", fig1b_runs, fig1b, default_seeds=(0,)),
      Experiment("speed", "DCD paper, Table 1",
                 (*(r for runs in MODELS.values() for r in runs.values()), *RANK_TIMES.values()),
                 speed, default_seeds=(0,)))
