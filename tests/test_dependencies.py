"""Declared = imported: pyproject's dependencies match the imports, and the lock pins them all."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from isicstack.extras import DISTRIBUTIONS, MissingExtraError, require

REPO = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = [REPO, *(p for p in REPO.iterdir() if (p / "__init__.py").is_file())]
# import name -> distribution, for when the package is not installed here
KNOWN = {**DISTRIBUTIONS, "PIL": "pillow", "sklearn": "scikit-learn", "yaml": "pyyaml",
         "pytorch_lightning": "pytorch-lightning",
         "mlflow": "mlflow"}  # also provided by mlflow-skinny / mlflow-tracing: declared as mlflow
# dev extra: run by make or by tests only, never imported by the package
TOOLS = {"pytest", "pytest-xdist", "ruff", "selenium", "import-linter"}
NOT_IMPORTED = {"optuna-dashboard": "a command run by `make dashboard`"}


def _project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def declared() -> set[str]:
    """Every distribution in dependencies and extras (self-references left out)."""
    project = _project()
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs += extra
    names = {canonicalize_name(Requirement(r).name) for r in reqs}
    return names - {"isicstack"}


def imported() -> set[str]:
    """Distributions of the third-party modules the package imports (or ``require``s)."""
    mapping = metadata.packages_distributions()
    found: set[str] = set()
    for folder in PACKAGE_DIRS:
        for path in folder.glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names: list[str] = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                elif (isinstance(node, ast.Call) and getattr(node.func, "id", "") == "require"
                      and node.args and isinstance(node.args[0], ast.Constant)):
                    names = [node.args[0].value]
                for name in names:
                    top = name.split(".")[0]
                    if top in sys.stdlib_module_names or top in ("isicstack", "__future__"):
                        continue
                    dist = KNOWN.get(top) or (mapping.get(top) or [top])[0]
                    found.add(canonicalize_name(dist))
    return found


def test_declared_equals_imported():
    decl, imp = declared(), imported()
    assert imp - decl == set(), f"imported but not declared in pyproject.toml: {imp - decl}"
    unused = decl - imp - {canonicalize_name(n) for n in (*TOOLS, *NOT_IMPORTED)}
    assert unused == set(), f"declared but never imported: {unused}"


def test_lock_pins_every_declared_dependency():
    """requirements.lock (make setup: pip -c) satisfies every declared specifier."""
    lock = {}
    for line in (REPO / "requirements.lock").read_text(encoding="utf-8").splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.strip().split("==")
            lock[canonicalize_name(name)] = version
    project = _project()
    reqs = [*project["dependencies"], *(r for e in project["optional-dependencies"].values()
                                        for r in e)]
    for raw in reqs:
        req = Requirement(raw)
        name = canonicalize_name(req.name)
        if name == "isicstack":
            continue
        assert name in lock, f"{name} missing from requirements.lock (run `make lock`)"
        assert req.specifier.contains(lock[name], prereleases=True), (raw, lock[name])
    assert lock["torch"] == "2.14.1" and lock["torchvision"] == "0.29.1"
    for gone in ("psutil", "optuna-integration"):  # pyarrow: required by the mlflow extra
        assert gone not in lock


def test_lock_script_check_passes():
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "lock.py"), "--check"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_missing_extra_says_how_to_install(monkeypatch, capsys, tmp_path):
    """Without CatBoost a cat model is a one-line error naming the extra, not a trace."""
    monkeypatch.setitem(sys.modules, "catboost", None)  # import now fails as if not installed
    with pytest.raises(MissingExtraError, match=r"pip install 'isicstack\[catboost\]'.*models"):
        require("catboost", needed_by="a cat model", instead="set models.cat.enabled=false")
    from isicstack.tabular.models import make_model

    with pytest.raises(MissingExtraError, match="models.cat.enabled=false"):
        make_model("cat", {}, 5).fit(None, None, [], [], 0)


def _contracts(kind: str = "layers") -> list[dict]:
    doc = tomllib.loads((REPO / "pyproject.toml").read_text())
    contracts = doc["tool"]["importlinter"]["contracts"]
    assert {c["type"] for c in contracts} == {"layers", "forbidden"}
    return [c for c in contracts if c["type"] == kind]


def _layers(contract: dict, prefix: str = "") -> list:
    """The contract's layers as grimp layers: ``a | b`` independent rooms, ``a : b`` rooms that
    may import each other (never in a cycle: test_no_import_cycles)."""
    import grimp

    out = []
    for layer in contract["layers"]:
        sep = ":" if ":" in layer else "|"
        out.append(grimp.Layer(*[prefix + m.strip() for m in layer.split(sep)],
                               independent=sep == "|"))
    return out


def _layer_sets(contract: dict) -> list[list]:
    """The contract's layers, once per container (once when it has none)."""
    return [_layers(contract, p) for p in [f"{c}." for c in contract.get("containers", [])]
            or [""]]


def test_packages_import_one_way():
    """The import contracts of pyproject.toml (also `make lint`) hold, function-level imports
    included: no module imports a layer above it or an independent sibling of its own layer.
    The same check on the layers reversed finds violations, so it can fail. Every package is
    placed. In a room's own contract (``containers``) a module it does not list is a command of
    the room: it joins the top layer, so nothing else in the room may import it (a new
    evaluating command is its file and its config class, with no line here to add; a new
    measure that commands import must be listed below them)."""
    grimp = pytest.importorskip("grimp", reason="import-linter (dev extra) not installed")
    graph = grimp.build_graph("isicstack", include_external_packages=False, cache_dir=None)
    for contract in _contracts():
        for layers in _layer_sets(contract):
            placed = {m for layer in layers for m in layer.module_tails}
            container = {m.rsplit(".", 1)[0] for m in placed}
            assert len(container) == 1, placed
            inside = set(graph.find_children(container.pop()))
            if contract.get("containers"):
                assert placed <= inside, f"{contract['name']}: no such module: {placed - inside}"
                top = layers[0]
                layers = [grimp.Layer(*top.module_tails, *sorted(inside - placed),
                                      independent=top.independent), *layers[1:]]
            else:
                assert inside - placed <= {"isicstack.__main__"}, f"not placed: {inside - placed}"
            illegal = graph.find_illegal_dependencies_for_layers(layers)
            assert not illegal, [f"{d.importer} -> {d.imported}" for d in illegal]
            assert graph.find_illegal_dependencies_for_layers(layers[::-1]), contract["name"]


def test_named_bans_hold_and_can_fail():
    """Each ``forbidden`` contract (the kernel loads no model library; the app reaches no
    evaluating command) holds on the import graph, function-level imports included, and names
    modules that exist, so a ban on something never imported cannot pass by accident."""
    grimp = pytest.importorskip("grimp", reason="import-linter (dev extra) not installed")
    graph = grimp.build_graph("isicstack", include_external_packages=True, cache_dir=None)
    bans = _contracts("forbidden")
    assert bans
    for contract in bans:
        sources = {m for s in contract["source_modules"]
                   for m in graph.find_descendants(s) | {s}}
        assert sources <= graph.modules, contract["name"]
        for banned in contract["forbidden_modules"]:
            assert banned in graph.modules, f"{contract['name']}: {banned} is never imported"
            hits = [(s, banned) for s in sources
                    if graph.find_shortest_chain(s, banned) is not None]
            assert not hits, f"{contract['name']}: {hits[:3]}"


def test_modules_are_loaded_by_name_only_from_the_top():
    """A module imported by name is invisible to the contract, so only two places may do it:
    the CLI's stage table (``pipelines/stages.py``, the top layer: whatever it loads is below
    it) and ``extras.require`` (optional extras, each named in pyproject's extras, each call
    saying what needs it and how to do without: the message is written where it is needed)."""
    by_name, required, unsaid = set(), set(), []
    for folder in PACKAGE_DIRS:
        for path in folder.glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.Call):
                    continue
                name = getattr(node.func, "attr", None) or getattr(node.func, "id", "")
                if name in ("import_module", "__import__"):
                    by_name.add(path.relative_to(REPO).as_posix())
                elif name == "require" and node.args and isinstance(node.args[0], ast.Constant):
                    required.add(node.args[0].value.split(".")[0])
                    said = {k.arg for k in node.keywords}
                    if not {"needed_by", "instead"} <= said:
                        unsaid.append(f"{path.relative_to(REPO).as_posix()}:{node.lineno}")
    assert by_name == {"pipelines/stages.py", "extras.py"}
    assert unsaid == [], "require() without needed_by= and instead="
    extras = {canonicalize_name(Requirement(r).name)
              for group, reqs in _project()["optional-dependencies"].items() if group != "dev"
              for r in reqs}
    assert required and {canonicalize_name(KNOWN.get(m, m)) for m in required} <= extras


# Where a function-level import is allowed: an optional extra (isicstack.extras.require says
# how to install it), the CLI loading a command's module only when it runs (its help and light
# commands do not load torch, timm and Lightning: test_cli.py), and the Kaggle notebook script,
# which installs the wheel before it can import the package; and the bundle's MLflow model
# (serving/mlflow_model.py, "models from code"), which MLflow runs when registering: it loads
# the scorer (torch, the GBDTs) only when a registered model is loaded.
EXTRA_MODULES = {"catboost", "pandas", "psycopg2", "pytorch_grad_cam", "gradio", "mlflow",
                 "optuna_dashboard", "uvicorn"}
EXTRA_USES = {("vision/mlflow_log.py", "pytorch_lightning.loggers")}  # MLFlowLogger: mlflow's
LAZY_BY_DESIGN = {"pipelines/cli.py", "inference/kaggle_inference.py",
                  "serving/mlflow_model.py", "api/server.py"}  # server: its routes (FastAPI,
# the `serve` extra) after require() has named the extra


def function_level_imports() -> list[str]:
    """``file:line module`` of every import inside a function of the package."""
    found = []
    for folder in PACKAGE_DIRS:
        for path in sorted(folder.glob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for fn in ast.walk(tree):
                if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                for node in ast.walk(fn):
                    if isinstance(node, ast.Import):
                        names = [a.name for a in node.names]
                    elif isinstance(node, ast.ImportFrom):
                        names = [node.module or ""]
                    else:
                        continue
                    rel = path.relative_to(REPO).as_posix()
                    found += [f"{rel}:{node.lineno} {n}" for n in names]
    return found


def test_function_level_imports_only_for_extras():
    """An import hidden in a function hides a dependency (and once hid cycles): only an
    optional extra, the CLI's per-command loading and the Kaggle bootstrap may defer one."""
    def allowed(entry: str) -> bool:
        where, module = entry.split(" ")
        if where.split(":")[0] in LAZY_BY_DESIGN or (where.split(":")[0], module) in EXTRA_USES:
            return True
        return any(module == m or module.startswith(m + ".") for m in EXTRA_MODULES)

    found = function_level_imports()
    assert any(allowed(e) for e in found)  # the walk sees function bodies
    assert [e for e in found if not allowed(e)] == []
