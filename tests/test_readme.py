"""The README is short and what it shows works: its commands use flags their entry points
define, the configs it names exist, and its links (and those of RESULTS.md and docs/) resolve."""

import glob
import os
import re
import shlex

import pytest
from absl import flags

from conftest import REPO
from tfkd import distill as distill_lib, models
# The entry points define their flags on absl's global FLAGS at import.
from trainers import distill, train  # noqa: F401
from export import saved_model  # noqa: F401

README = os.path.join(REPO, "README.md")
MAX_LINES = 200
# The commands .ci/run runs, which the README must show exactly.
CI_COMMANDS = ('python3 -m venv .venv && . .venv/bin/activate', 'pip install -e ".[test]"',
               "python -m pytest -q")
# Modules whose flags an entry point accepts besides its own (trainers define the shared flags
# through trainers.common).
SHARED_FLAG_MODULES = {"trainers.train": ("trainers.common",),
                       "trainers.distill": ("trainers.common",)}
# absl's own flags, accepted by every app.run entry point.
ABSL_MODULES = ("absl.flags", "absl.app", "absl.logging")
ABSL_FLAGS = {"flagfile", "undefok", "help", "helpfull", "helpshort", "helpxml"}
_DEFINE = re.compile(r"DEFINE_\w+\(\s*[\"'](\w+)[\"']")


def _read(path):
  with open(path) as f:
    return f.read()


def _fenced_blocks(text):
  """The bodies of the fenced code blocks of a Markdown text."""
  return re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.M | re.S)


def _prose(text):
  """`text` without its fenced code blocks and inline code spans."""
  text = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.M | re.S)
  return re.sub(r"`[^`\n]*`", "", text)


def _commands(text):
  """Every shell command of a Markdown text: each line of its fenced blocks (continuation lines
  joined, comments dropped) and each inline code span."""
  out = []
  for block in _fenced_blocks(text):
    for line in block.replace("\\\n", " ").splitlines():
      out.append(line.split(" #")[0])
  out += re.findall(r"`([^`\n]+)`", _prose_without_blocks(text))
  return out


def _prose_without_blocks(text):
  return re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.M | re.S)


def _module_invocations(text):
  """(module, [--flag names]) for every `python -m <module> ...` of tfkd's entry points."""
  found = []
  for command in _commands(text):
    for match in re.finditer(r"python3? -m ([\w.]+)([^;&|]*)", command):
      module = match.group(1)
      if not module.startswith(("trainers.", "export.", "benchmarks.")):
        continue
      names = []
      for token in shlex.split(match.group(2)):
        if token.startswith("--"):
          names.append(token[2:].split("=", 1)[0])
      found.append((module, names))
  return found


def _defined_flags(module):
  """The flag names `python -m <module>` accepts."""
  path = os.path.join(REPO, *module.split(".")) + ".py"
  if module.startswith("benchmarks."):
    # Scripts, not imported here: their DEFINE_* calls name their flags.
    names = set(_DEFINE.findall(_read(path))) if os.path.isfile(path) else set()
    return names | ABSL_FLAGS, {}
  by_module = flags.FLAGS.flags_by_module_dict()
  defined = {}
  for name in (module, *SHARED_FLAG_MODULES.get(module, ()), *ABSL_MODULES):
    for flag in by_module.get(name, []):
      defined[flag.name] = flag
  # Flags the module defines only when no other module has (export's --workdir, --data_dir).
  names = set(defined) | set(_DEFINE.findall(_read(path))) | ABSL_FLAGS
  return names, defined


def test_readme_is_at_most_200_lines():
  n = len(_read(README).splitlines())
  assert n <= MAX_LINES, f"README.md has {n} lines; move detail to RESULTS.md or docs/"


def test_readme_shows_the_commands_ci_runs():
  lines = {line.strip() for block in _fenced_blocks(_read(README)) for line in block.splitlines()}
  for command in CI_COMMANDS:
    assert command in lines, f"README.md no longer shows {command!r}, which .ci/run runs"


def test_readme_commands_use_flags_their_entry_points_define():
  invocations = _module_invocations(_read(README))
  assert any(m == "trainers.distill" for m, _ in invocations)  # the parser finds the main job
  for module, names in invocations:
    path = os.path.join(REPO, *module.split(".")) + ".py"
    if not os.path.isfile(path):
      # A command announced as coming (benchmarks.reproduce) may be named without flags.
      assert not names, f"python -m {module} does not exist but README gives it flags {names}"
      continue
    defined, flag_objects = _defined_flags(module)
    for name in names:
      base = name[2:] if name.startswith("no") else None
      ok = name in defined or (
          base in defined and (base not in flag_objects or flag_objects[base].boolean))
      assert ok, f"README: python -m {module} has no flag --{name}"


def test_readme_commands_reject_an_unknown_flag():
  # The check above is not vacuous: a made-up flag and a trainer's flag on export are caught.
  text = ("```sh\npython -m trainers.train --no_such_flag=1\n"
          "python -m export.saved_model --method=dcd\n```\n")
  for module, names in _module_invocations(text):
    defined, _ = _defined_flags(module)
    assert not set(names) <= defined, (module, names)


def test_flags_named_in_readme_prose_exist():
  # `--flag` spans outside a command (`--verbose=0`, `--top_n`) name a flag of some entry point.
  text = _prose_without_blocks(_read(README))
  every = set()
  for module in ("trainers.train", "trainers.distill", "export.saved_model"):
    every |= _defined_flags(module)[0]
  spans = [span for span in re.findall(r"`([^`\n]+)`", text) if span.startswith("--")]
  assert spans
  for span in spans:  # other spans are commands (checked above) or other programs' flags
    for name in re.findall(r"(?<![\w-])--([a-z]\w*)", span):
      assert name in every or name[2:] in every, (
          f"README mentions --{name}, which no entry point defines")


def test_readme_names_only_existing_configs():
  text = _read(README)
  named = set(re.findall(r"configs/[\w.*-]+\.flags", text))
  named |= {"configs/" + n for n in re.findall(r"`([\w-]+\.flags)`", text)}
  assert named, "README names no config"
  for path in sorted(named):
    assert glob.glob(os.path.join(REPO, path)), f"README names {path}, which does not exist"


def _built_in(registry):
  """The registered names that tfkd itself defines (not docs/extending.md's examples, which the
  tests register too)."""
  return {name for name, cls in registry.items() if cls.__module__.startswith("tfkd.")}


def test_models_and_methods_table_names_registered_models_methods_and_existing_configs():
  text = _read(README)
  section = text.split("## Models and methods", 1)[1].split("\n## ", 1)[0]
  rows = [line for line in section.splitlines() if line.startswith("|")]
  header = [c.strip().strip("`") for c in rows[0].strip("|").split("|")]
  assert header[0] == "--model" and set(header[1:]) == _built_in(distill_lib.METHODS)
  assert {row.split("|")[1].strip().strip("`") for row in rows[2:]} == _built_in(models.MODELS)
  for row in rows[2:]:
    for cell in row.strip("|").split("|")[1:]:
      for name in re.findall(r"`([\w*]+)`", cell):
        assert glob.glob(os.path.join(REPO, "configs", name + ".flags")), (
            f"README's models x methods table names configs/{name}.flags, which does not exist")


def _slug(heading):
  """GitHub's anchor of a Markdown heading."""
  text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
  return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def _anchors(text):
  seen, out = {}, set()
  for heading in re.findall(r"^#{1,6} (.+)$", _prose_without_blocks(text), flags=re.M):
    slug = _slug(heading)
    out.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
    seen[slug] = seen.get(slug, 0) + 1
  return out


DOCS = ["README.md", "RESULTS.md"] + sorted(
    os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "docs", "*.md")))


@pytest.mark.parametrize("doc", DOCS)
def test_relative_links_resolve(doc):
  path = os.path.join(REPO, doc)
  if doc != "README.md" and not os.path.isfile(path):
    pytest.skip(f"{doc} does not exist")
  text = _read(path)
  prose = _prose(text)
  targets = re.findall(r"\[[^\]]*\]\(([^)\s]+)\)", prose)  # [text](target)
  targets += re.findall(r"^\[[^\]]+\]:\s*(\S+)", prose, flags=re.M)  # [ref]: target
  assert targets or doc != "README.md"
  for target in targets:
    if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
      continue
    file_part, _, anchor = target.partition("#")
    linked = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part \
        else path
    assert os.path.exists(linked), f"{doc}: link to {target}, which does not exist"
    if anchor and linked.endswith(".md"):
      assert anchor in _anchors(_read(linked)), f"{doc}: link to {target}: no such heading"


def test_the_python_api_block_runs(tmp_path, monkeypatch):
  """The README's Python API block, run as written (in a temporary directory): the teacher trains,
  `fit` runs DCD's refreshes without being given them, the student is evaluated and exported."""
  text = _read(README)
  section = text[text.index("## Python API"):]
  code = re.search(r"^```python\n(.*?)^```", section, flags=re.M | re.S).group(1)
  monkeypatch.chdir(tmp_path)
  namespace = {}
  exec(compile(code, "README.md", "exec"), namespace)  # pylint: disable=exec-used
  dcd, student = namespace["dcd"], namespace["student"]
  refresh_every = dcd.config.refresh_every
  assert [r["epoch"] for r in dcd.refreshes] == list(range(0, 10, refresh_every))
  assert namespace["distiller"].student is student and not namespace["teacher"].trainable
  assert os.path.isfile(tmp_path / "exports" / "student" / "1" / "saved_model.pb")
  metrics = namespace["Evaluator"](namespace["data"], "test", "sampled").evaluate(student).metrics
  assert set(metrics) == {"H@5", "M@5", "NDCG@5", "H@10", "M@10", "NDCG@10"}


RESULTS = os.path.join(REPO, "RESULTS.md")
# The README's results rows filled from a section benchmarks.reproduce generated in RESULTS.md:
# README label -> (experiment, the generated row's first cells, column).
FROM_GENERATED = {
    "BPR teacher": ("dcd_table2", ("BPR", "Teacher"), "H@5"),
    "BPR student alone": ("dcd_table2", ("BPR", "Student"), "H@5"),
    "BPR student, RRD": ("dcd_table2", ("BPR", "RRD"), "H@5"),
    "BPR student, DCD (`dcd.flags`)": ("dcd_table2", ("BPR", "DCD"), "H@5")}


def _tables(text):
  """[{header cell: cell}] of every row of every Markdown table in `text`."""
  rows, header = [], None
  for line in text.splitlines():
    if not line.startswith("|"):
      header = None
      continue
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if header is None:
      header = cells
    elif not set("".join(cells)) <= set("-: "):
      rows.append(dict(zip(header, cells)))
  return rows


def _generated(experiment):
  text = _read(RESULTS)
  begin, end = (f"<!-- reproduce:{experiment} {m} -->" for m in ("begin", "end"))
  assert begin in text and end in text, f"RESULTS.md has no generated {experiment} section"
  return text[text.index(begin):text.index(end)]


def test_readme_results_rows_equal_the_generated_sections():
  text = _read(README)
  section = text[text.index("## Results"):]
  readme = {row["model, method"]: row for row in _tables(section[:section.index("\n## ", 1)])}
  for label, (experiment, key, column) in FROM_GENERATED.items():
    generated = [row for row in _tables(_generated(experiment))
                 if tuple(row.values())[:len(key)] == key]
    assert len(generated) == 1, (experiment, key)
    ours = generated[0][column].split(" (")[0]  # the paper's value follows in parentheses
    assert readme[label]["ours"].strip("*") == ours, label
    assert readme[label]["seeds"] == generated[0]["seeds"], label
