"""Every `make ...` and `isic ...` example of README.md and KAGGLE.md resolves (cheaply).

A `make` example is expanded with `make -n` into a fresh artifacts folder; each `isic` line it
would run must resolve its config (`--print-config`), and `ARGS` must reach only the stage the
example names. An `isic` example is run with `--print-config`.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from isicstack.pipelines.cli import main

REPO = Path(__file__).resolve().parents[1]
DOCS = ("README.md", "KAGGLE.md")
CODE = re.compile(r"`([^`\n]+)`")
PLACEHOLDER = re.compile(r"<[^>]+>")
SHELL_BLOCK = re.compile(r"```(?:bash|sh|console)\n(.*?)```", re.S)
BAD_INPUTS = re.compile(r"<!-- table:bad-inputs -->.*?<!-- /table:bad-inputs -->", re.S)


def _examples(prefix: str) -> list[str]:
    """Inline code spans and code-block lines of the docs that start with ``prefix``."""
    found: list[str] = []
    for doc in DOCS:
        text = (REPO / doc).read_text(encoding="utf-8")
        text = BAD_INPUTS.sub("", text)  # commands that must fail (tests/test_bad_inputs.py)
        blocks = "\n".join(SHELL_BLOCK.findall(text))
        lines = [ln.split("  #")[0].strip() for ln in blocks.splitlines()]
        spans = CODE.findall(text) + lines
        for s in spans:
            s = re.sub(r"\[[^\]]*\]", "", s).strip()  # optional parts: [OUT=...]
            if s.startswith(prefix + " ") and s not in found:
                found.append(s)
    return found


def _fill(cmd: str, tmp: Path) -> str:
    return PLACEHOLDER.sub(str(tmp / "x"), cmd)


def _isic_lines(out: str) -> list[list[str]]:
    """The ``isic`` commands of ``make -n`` output; an ``isic chain`` line is expanded into the
    stage commands it would run (``--dry-run``), so each is checked like any other."""
    out = out.replace("\\\n", " ")  # recipe lines continued with a backslash
    runs: list[list[str]] = []
    for ln in out.splitlines():
        if not ln.strip().startswith(".venv/bin/isic "):
            continue
        argv = shlex.split(ln)[1:]
        if argv[0] != "chain":
            runs.append(argv)
            continue
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            assert main([*argv, "--dry-run"]) == 0, argv
        runs += [shlex.split(c)[1:] for c in buf.getvalue().splitlines()]
    return runs


MAKE_EXAMPLES = _examples("make")
ISIC_EXAMPLES = [e for e in _examples("isic") if "<stage>" not in e]


def test_examples_found():
    assert any("ARGS=" in e for e in MAKE_EXAMPLES) and len(MAKE_EXAMPLES) >= 10
    assert ISIC_EXAMPLES


@pytest.mark.skipif(shutil.which("make") is None, reason="no make on PATH")
@pytest.mark.parametrize("example", MAKE_EXAMPLES)
def test_make_example(example: str, tmp_path: Path, capsys):
    argv = shlex.split(_fill(example, tmp_path))[1:]
    proc = subprocess.run(["make", "-n", "--no-print-directory", *argv,
                           f"ARTIFACTS={tmp_path / 'art'}"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    runs = _isic_lines(proc.stdout)
    goals = [a for a in argv if "=" not in a]
    args = next((a.split("=", 1)[1] for a in argv if a.startswith("ARGS=")), "")
    if args:  # ARGS only on the command of the named stage
        assert sum(args in shlex.join(r) for r in runs) == len(goals), proc.stdout
    for run in runs:
        if run[0] == "compare":
            continue
        assert main([*run, "--print-config"]) == 0, (run, capsys.readouterr().err)


@pytest.mark.parametrize("example", ISIC_EXAMPLES)
def test_isic_example(example: str, tmp_path: Path, capsys):
    argv = shlex.split(_fill(example, tmp_path))[1:]
    assert main([*argv, "--print-config"]) == 0, capsys.readouterr().err


@pytest.mark.skipif(shutil.which("make") is None, reason="no make on PATH")
def test_stack_after_clone_runs_what_it_needs(tmp_path: Path):
    """`make stack` on a fresh artifacts folder trains the tabular stage first, once."""
    art = tmp_path / "art"

    def plan() -> list[str]:
        out = subprocess.run(["make", "-n", "--no-print-directory", "stack", f"ARTIFACTS={art}"],
                             cwd=REPO, capture_output=True, text=True, timeout=60, check=True)
        return [r[0] for r in _isic_lines(out.stdout)]

    fresh = plan()
    assert "train-tabular" in fresh and fresh[-1] == "stack"
    (art / "oof").mkdir(parents=True)
    (art / "oof" / "lgbm.parquet").write_bytes(b"")
    assert "train-tabular" not in plan() and plan()[-1] == "stack"


@pytest.mark.skipif(shutil.which("make") is None, reason="no make on PATH")
@pytest.mark.parametrize(("profile", "steps"), [("default", ["optim.steps=60"]), ("smoke", [])])
def test_fused_run_starts_from_the_image_only_models(tmp_path: Path, profile: str,
                                                     steps: list[str]):
    """`make train-image` on a fresh folder trains the image-only run first and starts the fused
    run from it, with the profile's fused step budget (configs/chain.yaml's profile_args,
    else its own)."""
    out = subprocess.run(["make", "-n", "--no-print-directory", "train-image",
                          f"ARTIFACTS={tmp_path / 'art'}", f"PROFILE={profile}"], cwd=REPO,
                         capture_output=True, text=True, timeout=60, check=True)
    runs = [r for r in _isic_lines(out.stdout) if r[0] == "train-image"]
    assert len(runs) == 2 and "name=imgonly" in runs[0] and "name=fused" in runs[1]
    assert "init_from=vision_imgonly" in runs[1]
    assert [a for a in runs[1] if a.startswith(("steps=", "optim.steps="))] == steps


@pytest.mark.skipif(shutil.which("make") is None, reason="no make on PATH")
def test_args_with_all_is_an_error():
    proc = subprocess.run(["make", "-n", "all", "ARGS=bags=5"], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode != 0 and "ARGS_<stage>" in proc.stderr
