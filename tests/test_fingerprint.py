"""Each rule's code fingerprint follows what its script imports (cbma.provenance).

Every rule has ``params: code=script_code("<its script>")``: a hash of the
code of the cbma modules ``scripts/<script>.py`` imports, directly or through
other cbma modules. So:

(a) the modules are those the script imports, transitively (checked against
    the standard library's ``modulefinder``, an independent reading of the
    same imports, and by hand for one script);
(b) a comment or docstring edit leaves the fingerprint alone, a code edit (or
    an edit of the package data a module reads) changes it;
(c) end to end: after a run covering every rule, a code edit to any cbma
    module makes Snakemake see changed params in exactly the jobs of the
    rules whose scripts import that module.

Nothing here edits the real src/: the tests work on copies.
"""

import json
import modulefinder
import os
import queue
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import REPO, write_config

from cbma import provenance

SCRIPTS = REPO / "scripts"
RULES = REPO / "workflow" / "rules"
PROBE = "\n_FINGERPRINT_PROBE = 1\n"
# what a copy of the workflow needs (resources/ is linked, not copied)
WORKFLOW_FILES = ["Snakefile", "config.yaml", "workflow", "scripts", "src", "envs"]


def copy_package(dest):
    """A copy of src/cbma in ``dest`` (without caches); returns the package folder."""
    return Path(shutil.copytree(REPO / "src" / "cbma", Path(dest) / "cbma",
                                ignore=shutil.ignore_patterns("__pycache__")))


def edit(path, text):
    """Append ``text`` to a file."""
    path = Path(path)
    path.write_text(path.read_text() + text)


# ------------------------------------------------ an independent reading ----

class _CbmaFinder(modulefinder.ModuleFinder):
    """``modulefinder`` restricted to cbma: other top-level modules are taken as
    found and not scanned (scanning the whole standard library takes minutes;
    left unfound, modulefinder would also skip ``from .io import`` once
    ``import io`` had failed, as it keys its failures by bare name)."""

    def find_module(self, name, path, parent=None):
        if parent is None and name != "cbma":
            return None, None, ("", "", modulefinder._C_BUILTIN)
        return super().find_module(name, path, parent)


def finder_modules(script, src=REPO / "src"):
    """The cbma modules ``script`` imports, transitively, as ``modulefinder`` sees them."""
    finder = _CbmaFinder(path=[str(src)])
    finder.run_script(str(script))
    return {m for m in finder.modules if m == "cbma" or m.startswith("cbma.")}


def rule_scripts(rules_dir=RULES):
    """``{rule: (script name, name given to script_code)}`` from the .smk files' text."""
    out = {}
    for smk_file in sorted(Path(rules_dir).glob("*.smk")):
        blocks = re.split(r"(?m)^(?=(?:rule|checkpoint) \w+:)", smk_file.read_text())
        for block in blocks[1:]:
            name = re.match(r"(?:rule|checkpoint) (\w+):", block).group(1)
            script = re.search(r'\n    script:\n        "\.\./\.\./scripts/(\w+)\.py"', block)
            code = re.search(r'\n        code=script_code\("(\w+)"\),\n', block)
            out[name] = (script and script.group(1), code and code.group(1))
    return out


# ---------------------------------------------------------- a toy package ----

TOY = {
    "__init__.py": '"""Toy package."""\n',
    "a.py": '"""Module a."""\n\nfrom .b import B\n\n\ndef f():\n    """Lazy import."""\n'
            '    from . import c\n    return c.C + B\n',
    "b.py": "import io as _io\n\nfrom .errors import Oops\n\nB = 1\n",
    "c.py": "from cbma.sub.d import D\n\nC = D\n",
    "errors.py": "class Oops(Exception):\n    \"\"\"An error.\"\"\"\n",
    "sub/__init__.py": "",
    "sub/d.py": "from .. import errors\nfrom ..b import B\n\nD = B + 1\n",
    "unused.py": "import cbma.a\n",
    "templates/page.j2": "<p>{{ x }}</p>\n",
}


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """A small package ``cbma`` (relative, absolute, lazy and nested imports) and scripts."""
    monkeypatch.setattr(provenance, "PACKAGE_DATA", {})  # the real one names cbma.report
    pkg = tmp_path / "cbma"
    for name, text in TOY.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(text)
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "one.py").write_text("import json\n\nfrom cbma import a\n")
    (scripts / "two.py").write_text("import cbma.errors\n")
    (scripts / "three.py").write_text("from cbma.sub.d import D\n")
    return pkg, scripts


def test_toy_imports_are_followed_transitively(toy):
    pkg, scripts = toy
    # one -> a -> b (-> errors) and, inside a function, c -> sub.d (-> sub, errors, b)
    assert provenance.imported_modules(script=scripts / "one.py", package_dir=pkg) == {
        "cbma", "cbma.a", "cbma.b", "cbma.c", "cbma.errors", "cbma.sub", "cbma.sub.d"}
    assert provenance.imported_modules(script=scripts / "two.py", package_dir=pkg) == {
        "cbma", "cbma.errors"}
    assert provenance.imported_modules(script=scripts / "three.py", package_dir=pkg) == {
        "cbma", "cbma.sub", "cbma.sub.d", "cbma.errors", "cbma.b"}
    # by module name, in or out of the package's namespace
    assert provenance.imported_modules("unused", package_dir=pkg) == provenance.imported_modules(
        "cbma.unused", package_dir=pkg) == {"cbma", "cbma.unused", *provenance.imported_modules(
            script=scripts / "one.py", package_dir=pkg)}
    for script in scripts.glob("*.py"):
        assert provenance.imported_modules(script=script, package_dir=pkg) == finder_modules(
            script, pkg.parent)
    with pytest.raises(ValueError, match="no module cbma.nope"):
        provenance.imported_modules("nope", package_dir=pkg)


@pytest.mark.parametrize(("module", "change", "changes"), [
    ("b.py", "# a comment\n", False),
    ("b.py", '"""A docstring added later."""\n', False),
    ("errors.py", None, False),  # the class docstring edited (below)
    ("sub/d.py", "\n\n\n", False),
    ("b.py", "B2 = 2\n", True),
    ("sub/d.py", "import os\n", True),
    ("c.py", "C = 'C'\n", True),  # a string, but not standing alone
    ("unused.py", "X = 1\n", False),  # no script imports it
])
def test_toy_fingerprint_follows_code_not_text(toy, module, change, changes):
    pkg, scripts = toy
    before = {s.stem: provenance.script_fingerprint(s, package_dir=pkg)
              for s in scripts.glob("*.py")}
    path = pkg / module
    if change is None:
        path.write_text(path.read_text().replace("An error.", "An exception of the toy."))
    else:
        edit(path, change)
    after = {s.stem: provenance.script_fingerprint(s, package_dir=pkg)
             for s in scripts.glob("*.py")}
    name = "cbma." + module.removesuffix(".py").replace("/", ".")
    expected = {s.stem for s in scripts.glob("*.py")
                if changes and name in provenance.imported_modules(script=s, package_dir=pkg)}
    assert {s for s in before if before[s] != after[s]} == expected
    assert not changes or expected  # the edit reached a script


def test_package_data_counts_as_its_module(toy, monkeypatch):
    pkg, scripts = toy
    monkeypatch.setattr(provenance, "PACKAGE_DATA", {"cbma.c": ("templates",)})
    before = {s.stem: provenance.script_fingerprint(s, package_dir=pkg)
              for s in scripts.glob("*.py")}
    edit(pkg / "templates" / "page.j2", "<p>more</p>\n")
    after = {s.stem: provenance.script_fingerprint(s, package_dir=pkg)
             for s in scripts.glob("*.py")}
    assert {s for s in before if before[s] != after[s]} == {"one"}  # only one imports c
    # a declaration that no longer matches the package is an error, not a silent miss
    monkeypatch.setattr(provenance, "PACKAGE_DATA", {"cbma.gone": ("templates",)})
    with pytest.raises(ValueError, match="cbma.gone"):
        provenance.script_fingerprint(scripts / "one.py", package_dir=pkg)


# ------------------------------------------------------ the real scripts ----

def test_every_script_imports_what_modulefinder_finds():
    scripts = sorted(SCRIPTS.glob("*.py"))
    assert len(scripts) > 20
    for script in scripts:
        assert provenance.imported_modules(script=script) == finder_modules(script), script.name


def test_ingest_modules_by_hand():
    # scripts/ingest.py: from cbma import coordinates, dataset, io, space, term_weights;
    # from cbma.runner import run. dataset imports coordinates, errors, foci_table, io,
    # neurosynth, space, studyset and term_weights; foci_table and studyset import
    # coordinates, errors, neurosynth, pooling and term_weights; pooling imports coordinates
    # and errors; neurosynth imports coordinates, errors and term_weights; coordinates and
    # term_weights import errors and io; io and space import errors; runner imports
    # provenance and errors; provenance imports job_server, which every script
    # imports first.
    assert provenance.imported_modules(script=SCRIPTS / "ingest.py") == {
        "cbma", "cbma.coordinates", "cbma.dataset", "cbma.foci_table", "cbma.io",
        "cbma.neurosynth", "cbma.pooling", "cbma.space", "cbma.studyset", "cbma.term_weights",
        "cbma.errors", "cbma.runner", "cbma.provenance", "cbma.job_server"}
    # scripts/provenance.py: import cbma; from cbma import provenance; cbma.runner
    assert provenance.imported_modules(script=SCRIPTS / "provenance.py") == {
        "cbma", "cbma.provenance", "cbma.runner", "cbma.errors", "cbma.job_server"}


def test_every_rule_fingerprints_its_own_script():
    rules = rule_scripts()
    assert len(rules) > 20
    for rule, (script, code) in rules.items():
        assert script is not None, f"rule {rule} has no script: it needs its own code param"
        assert code == script, f"rule {rule}: script {script}.py but script_code({code!r})"
        assert (SCRIPTS / f"{script}.py").is_file()
    for smk_file in RULES.glob("*.smk"):
        assert "code_fingerprint(" not in smk_file.read_text(), smk_file.name


def test_package_data_is_declared():
    pkg = REPO / "src" / "cbma"
    data = {p.relative_to(pkg) for p in pkg.rglob("*") if p.is_file()
            and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts}
    declared = {Path(d) for ds in provenance.PACKAGE_DATA.values() for d in ds}
    assert data and all(any(d == x or x in d.parents for x in declared) for d in data)


def test_real_fingerprints_follow_code_not_text(tmp_path):
    pkg = copy_package(tmp_path)
    scripts = sorted(SCRIPTS.glob("*.py"))

    def fingerprints():
        return {s.stem: provenance.script_fingerprint(s, package_dir=pkg) for s in scripts}

    before = fingerprints()
    # a comment, a docstring (module and function) and blank lines: nothing changes
    text = (pkg / "correct.py").read_text()
    docstring = re.search(r'\n    """(.+)', text).group(1)
    (pkg / "correct.py").write_text(
        '"""Changed."""\n# a new comment\n\n' + text.replace(docstring, "Reworded.", 1)
        .replace("\ndef ", "\n\n\ndef ", 1))
    assert fingerprints() == before
    # the report's template: the rules whose scripts import cbma.report
    edit(pkg / "templates" / "report.html.j2", "<!-- edited -->\n")
    after = fingerprints()
    imports = {s.stem: finder_modules(s, pkg.parent) for s in scripts}
    assert {s for s in before if before[s] != after[s]} == {
        s for s in imports if "cbma.report" in imports[s]}
    # a code edit: every script that imports correct.py, directly or not
    edit(pkg / "correct.py", PROBE)
    again = fingerprints()
    assert {s for s in after if after[s] != again[s]} == {
        s for s in imports if "cbma.correct" in imports[s]}


# ------------------------------------------------------------ end to end ----

def probe_config():
    """Every rule, the checkpoint fwe_progress among them, at the smallest size."""
    synth = "resources/data/synthetic_neurosynth"
    mkda = {"dataset": "synth", "estimator": "mkda", "kernel": {"r": 6},
            "correction": {"n_iters": 10}}
    return {
        "seed": 5,
        "chunk_size": 10,
        "datasets": {
            "knowledge": {"path": "resources/data/semantic_knowledge_children.txt",
                          "format": "sleuth"},
            "related": {"path": "resources/data/semantic_relatedness_children.txt",
                        "format": "sleuth"},
            "synth": {"path": f"{synth}/database.txt.gz", "features": f"{synth}/features.txt.gz",
                      "format": "neurosynth"},
        },
        "analyses": {
            # two chunks, with a progress check after the first
            "knowledge": {"dataset": "knowledge", "correction": {
                "n_iters": 20, "early_stopping": {"tolerance": 0.5, "min_iters": 10}}},
            "related": {"dataset": "related", "correction": {"n_iters": 10}},
            # within-group pooling: the pool and pooled_ma_maps rules
            "pooled": {"dataset": "knowledge", "pool": "study", "correction": {"n_iters": 10}},
            "pain": {"dataset": "synth", "estimator": "mkda_chi2", "kernel": {"r": 6},
                     "select": {"expression": "pain"}, "naming": "neurosynth"},
            "pain_density": {**mkda, "select": {"expression": "pain"}},
            "emotion_density": {**mkda, "select": {"expression": "emotion"}},
        },
        "contrasts": {
            "k_minus_r": {"analyses": ["knowledge", "related"], "n_iters": 10},
            "pain_vs_emotion": {"analyses": ["pain_density", "emotion_density"],
                                "method": "mkda_chi2"},
        },
        "conjunctions": {"k_and_r": {"analyses": ["knowledge", "related"]}},
        "decode": {"pain_map": {"dataset": "synth",
                                "images": ["results/analyses/pain/z_desc-association.nii.gz"]}},
        "queries": {"nociception": {"dataset": "synth", "text": "nociception"}},
        "evaluate": {"held_out": {"dataset": "synth"}},
        "classify": {"pain_vs_emotion": {"analyses": ["pain_density", "emotion_density"]}},
    }


# Put before each script of the copy: its job writes placeholder outputs and
# stops. The params Snakemake records do not depend on what a job computes, and
# the script's own text (its imports) is still there for script_code to read.
STUB = """\
import json as _json, pathlib as _pathlib, sys as _sys  # noqa: E401
for _out in map(_pathlib.Path, snakemake.output):  # noqa: F821
    if not _out.suffix:  # a directory() output
        _out.mkdir(parents=True, exist_ok=True)
        continue
    _out.parent.mkdir(parents=True, exist_ok=True)
    # the checkpoint's early-stopping verdict, read when the DAG is built
    _out.write_text(_json.dumps({"stop": False}) if _out.suffix == ".json" else "")
_sys.exit(0)
"""


class Workflow:
    """A copy of the workflow whose ``import cbma`` is a copy of the package.

    Snakemake runs with ``PYTHONPATH`` at the copy's ``src`` (or at another
    copy of the package), which comes before the editable install on
    ``sys.path``. Its rule scripts start with :data:`STUB`.
    """

    def __init__(self, root, workdir):
        self.root, self.workdir = Path(root), Path(workdir)
        self.root.mkdir(parents=True)
        for name in WORKFLOW_FILES:
            src, dest = REPO / name, self.root / name
            if src.is_dir():
                shutil.copytree(src, dest, ignore=shutil.ignore_patterns(
                    "__pycache__", "*.egg-info", ".snakemake"))
            else:
                shutil.copy2(src, dest)
        (self.root / "resources").symlink_to(REPO / "resources")
        for script in (self.root / "scripts").glob("*.py"):
            script.write_text(STUB + script.read_text())

    def env(self, src=None):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(src or self.root / "src"), *filter(None, [env.get("PYTHONPATH")])])
        return env

    def run(self, *args, src=None):
        cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(self.root / "Snakefile"),
               "--directory", str(self.workdir),
               "--configfile", str(self.workdir / "config.yaml"), *args]
        res = subprocess.run(cmd, capture_output=True, text=True, env=self.env(src))
        assert res.returncode == 0, f"{' '.join(cmd)}\n{res.stdout}\n{res.stderr}"
        return res

    def summary(self, src=None):
        """``[(output file, rule, status)]`` of ``snakemake --summary``.

        The status of a file is "params changed" when its job's params differ
        from those it ran with, whatever happens upstream (``--list-changes
        params`` would say so too, but in Snakemake 9.27 it also lists one
        output of every unchanged job). The outputs of the checkpoint are listed
        only when they are targets.
        """
        progress = sorted(str(p.relative_to(self.workdir))
                          for p in self.workdir.glob("results/**/fwe_null/progress-*.json"))
        lines = self.run("--summary", "--nolock", "all", *progress, src=src).stdout.splitlines()
        header = lines[0].split("\t")
        assert header[:3] == ["output_file", "date", "rule"] and header[4] == "status", header
        return [(row[0], row[2], row[4]) for row in (line.split("\t") for line in lines[1:])]

    def params_changed(self, src=None):
        """The rules of the jobs whose params changed (not the jobs after them)."""
        return {rule for _, rule, status in self.summary(src) if status == "params changed"}


def module_name(path, src):
    """``cbma.sub.mod`` of ``src/cbma/sub/mod.py``; ``cbma.sub`` of its ``__init__.py``."""
    parts = Path(path).relative_to(src).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@pytest.mark.slow  # about a minute (two cores): a run, then a Snakemake call per module
def test_editing_a_module_reruns_exactly_the_rules_that_import_it(tmp_path):
    """For each cbma module, a code edit changes the params of the jobs of exactly
    the rules whose scripts import it (as modulefinder reads the scripts).

    After a run of every rule (:func:`probe_config`: all of them, the
    checkpoint too; the jobs are stubs, see :data:`STUB`), each module of a
    copy of the package in turn gets a line of code, and ``snakemake
    --summary`` run on that copy says which jobs' params changed. (A dry run
    would also plan the jobs after those, so it could not tell a missed import
    from a downstream job.)
    """
    wf = Workflow(tmp_path / "workflow", tmp_path / "run")
    src = wf.root / "src"
    # the Snakemake process (and the jobs) import the copy, not the editable install
    out = subprocess.run([sys.executable, "-c", "import cbma; print(cbma.__file__)"],
                         capture_output=True, text=True, env=wf.env(), check=True)
    assert Path(out.stdout.strip()) == src / "cbma" / "__init__.py"
    write_config(wf.workdir, probe_config())
    wf.run("--cores", "2")

    summary = wf.summary()
    scripts = {rule: script for rule, (script, _) in
               rule_scripts(wf.root / "workflow" / "rules").items()}
    assert {rule for _, rule, _ in summary} == set(scripts)  # every rule ran
    assert {status for _, _, status in summary} == {"ok"}

    # a comment and a docstring in a module every script imports: nothing to do
    errors = src / "cbma" / "errors.py"
    text = errors.read_text()
    errors.write_text(text.replace('"""', '"""Reworded. ', 1) + "# a comment\n")
    res = wf.run("--dry-run", "--nolock")
    assert "Nothing to be done" in res.stdout + res.stderr
    errors.write_text(text)

    imports = {rule: finder_modules(wf.root / "scripts" / f"{scripts[rule]}.py", src)
               for rule in scripts}
    files = {module_name(p, src): p.relative_to(src) for p in (src / "cbma").rglob("*.py")}

    # two probes at a time, each on a copy of the package of its own
    copies = queue.Queue()
    for i in range(2):
        copies.put(Path(shutil.copytree(src, tmp_path / f"src{i}")))

    def probe(module):
        copy = copies.get()
        path = copy / files[module]
        text = path.read_text()
        try:
            path.write_text(text + PROBE)
            return module, wf.params_changed(src=copy)
        finally:
            path.write_text(text)
            copies.put(copy)

    with ThreadPoolExecutor(2) as pool:
        found = dict(pool.map(probe, sorted(files)))
    expected = {m: {r for r in scripts if m in imports[r]} for m in files}
    wrong = {m: {"missing": expected[m] - found[m], "extra": found[m] - expected[m]}
             for m in files if found[m] != expected[m]}
    assert wrong == {}
    assert set() in expected.values() and {*scripts} in expected.values()


def test_parsed_modules_are_kept_on_disk_by_their_text(tmp_path, monkeypatch):
    """A second process reads each module's imports and code hash from the cache; a
    damaged cache is ignored; and the fingerprints are those computed without one."""
    script = SCRIPTS / "estimate.py"

    def fresh(cache):
        monkeypatch.setattr(provenance, "PARSE_CACHE", cache)
        provenance._parse.cache_clear()
        provenance._disk_cache.cache_clear()

    fresh(tmp_path / "none" / "cache.json")
    monkeypatch.setattr(provenance, "_save_disk_cache", lambda: None)  # no cache at all
    plain = provenance.script_fingerprint(script)
    monkeypatch.undo()

    cache = tmp_path / "pycache" / "cbma-code.json"
    fresh(cache)
    assert provenance.script_fingerprint(script) == plain
    entries = json.loads(cache.read_text())
    assert len(entries) == len(provenance.imported_modules(script=script)) + 1  # + the script

    fresh(cache)  # as a new process: nothing is parsed
    monkeypatch.setattr(provenance.ast, "parse", lambda *a, **k: pytest.fail("parsed again"))
    assert provenance.script_fingerprint(script) == plain
    monkeypatch.undo()

    fresh(cache)
    cache.write_text("{not json")
    assert provenance.script_fingerprint(script) == plain
    assert json.loads(cache.read_text()) == entries  # written whole again
    provenance._parse.cache_clear()
    provenance._disk_cache.cache_clear()
