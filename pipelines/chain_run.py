"""``isic chain <run>``: run a declared run of ``configs/chain.yaml`` (``make <run>`` calls it).

What ``make`` did with a target per run, prerequisites and ``*_ARGS`` variables is done here
from the one declaration (:mod:`isicstack.settings.chain`): a run whose ``needs`` are missing from
``artifacts/oof`` first runs the runs that provide them (as declared, plus their ``--args``),
then itself with the user's overrides; a provider is rerun only when its output is missing,
as make did. After a run, every name it ``provides`` must exist, so a chain entry that drifts
from its stage's output names fails on the spot, naming the entry.
"""

from __future__ import annotations

import logging
import os
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from isicstack.conditions import launcher_rank
from isicstack.data.layout import oof_path
from isicstack.pipelines.stages import STAGES, stage_config
from isicstack.settings.chain import Chain, ChainRun, load_chain
from isicstack.settings.layers import ConfigError

log = logging.getLogger(__name__)

ALL = "all"  # `isic chain all`: every run, in order
RUN_ENV = "ISIC_CHAIN_RUN"  # the run being executed (inherited by the DDP ranks it starts)
PROVIDE = "provide:"  # `isic chain provide:lgbm`: the provider of oof/lgbm, when it is missing


@dataclass
class ChainCall:
    """One run to execute: the declared run and every override it gets, in order."""

    run: ChainRun
    overrides: list[str] = field(default_factory=list)

    def command(self, profile: str) -> str:
        """The equivalent ``isic`` command line (printed by ``--dry-run`` and logged)."""
        return shlex.join(["isic", self.run.stage, "--profile", profile, *self.overrides])


def _missing(chain: Chain, run: ChainRun, artifacts: str, planned: set[str]) -> list[ChainRun]:
    """Providers of ``run``'s missing needs, their own missing needs first (each once)."""
    out: list[ChainRun] = []
    for need in run.needs:
        if oof_path(artifacts, need).is_file():
            continue
        provider = chain.provider(need)
        if provider is None:  # parse_chain guarantees one; a hand-built chain may not
            raise ConfigError(f"{chain.source}: run {run.name!r} needs {need!r}, which no run "
                              "provides")
        if provider.name in planned:
            continue
        planned.add(provider.name)
        out += [*_missing(chain, provider, artifacts, planned), provider]
    return out


def plan(chain: Chain, target: str, profile: str, artifacts: str, common: list[str],
         run_args: dict[str, list[str]], goal_args: list[str]) -> list[ChainCall]:
    """The calls ``isic chain <target>`` makes. ``common`` (data_dir, artifacts) reaches every
    run, ``run_args[<run>]`` that run wherever it runs, ``goal_args`` only the named target."""
    def call(run: ChainRun, goal: bool) -> ChainCall:
        extra = [*run_args.get(run.name, []), *(goal_args if goal else [])]
        return ChainCall(run, [*common, *run.overrides(profile), *extra])

    if target == ALL:
        if goal_args:
            raise ConfigError("overrides after `isic chain all` would reach every run; give a "
                              "run its own with --args <run>='key=value ...'")
        return [call(r, False) for r in chain.runs]
    run = chain.get(target)
    first = _missing(chain, run, artifacts, {run.name})
    return [*(call(r, False) for r in first), call(run, True)]


def resolve_calls(calls: list[ChainCall], profile: str) -> list[tuple[Any, Callable]]:
    """Every call's resolved config and its stage's ``run``, before anything runs: an unknown
    stage or a bad override fails here, not after the runs before it have trained."""
    resolved = []
    for c in calls:
        if c.run.stage not in STAGES:
            raise ConfigError(f"chain run {c.run.name!r}: unknown stage {c.run.stage!r}; known: "
                              f"{', '.join(STAGES)}")
        resolved.append(stage_config(c.run.stage, profile, c.overrides))
    return resolved


def execute(calls: list[ChainCall], resolved: list[tuple[Any, Callable]], profile: str,
            artifacts: str) -> dict[str, float]:
    """Run the calls in order with their configs (:func:`resolve_calls`); each run's outputs
    are checked. Returns seconds per run."""
    seconds: dict[str, float] = {}
    for c, (cfg, run) in zip(calls, resolved, strict=True):
        log.info("chain: %s = %s", c.run.name, c.command(profile))
        t0 = time.perf_counter()
        os.environ[RUN_ENV] = c.run.name  # a DDP rank started from this command runs it alone
        try:
            run(cfg)
        finally:
            os.environ.pop(RUN_ENV, None)
        seconds[c.run.name] = round(time.perf_counter() - t0, 3)
        absent = [n for n in c.run.provides if not oof_path(artifacts, n).is_file()]
        if absent and launcher_rank() == 0:  # only global rank 0 writes a run's files
            raise ConfigError(f"chain run {c.run.name!r} declares provides {absent} but wrote "
                              f"no {oof_path(artifacts, absent[0])}: its stage's output names "
                              "and the chain entry disagree")
    return seconds


def parse_run_args(items: list[str]) -> dict[str, list[str]]:
    """``["train-tabular=bags=1 seed=2"]`` -> ``{"train-tabular": ["bags=1", "seed=2"]}``."""
    out: dict[str, list[str]] = {}
    for item in items:
        name, sep, args = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"--args {item!r}: expected <run>='key=value ...'")
        try:
            out.setdefault(name, []).extend(shlex.split(args))
        except ValueError as err:  # an unclosed quote
            raise ConfigError(f"--args {item!r}: {err}") from None
    return out


def provider_of(chain: Chain, output: str) -> str:
    """The run providing OOF name ``output`` (``isic chain provide:lgbm``: the stages outside
    the chain, such as tuning and subgroups, need the tabular scores made when missing)."""
    run = chain.provider(output)
    if run is None:
        raise ConfigError(f"{chain.source}: no run provides {output!r}; providers: "
                          + ", ".join(f"{n} ({r.name})" for r in chain.runs for n in r.provides))
    return run.name


def run_chain(target: str, profile: str = "default", data_dir: str = "auto",
              artifacts: str = "artifacts", run_args: dict[str, list[str]] | None = None,
              goal_args: list[str] | None = None, dry_run: bool = False,
              chain: Chain | None = None) -> list[ChainCall]:
    """``isic chain``: plan the target's calls and (unless ``dry_run``) execute them."""
    chain = chain or load_chain()
    run_args = run_args or {}
    unknown = sorted(set(run_args) - set(chain.names()))
    if unknown:
        raise ConfigError(f"--args names run(s) {unknown} not in the chain ({chain.source}); "
                          f"declared: {', '.join(chain.names())}")
    common = [f"data_dir={data_dir}", f"artifacts={artifacts}"]
    if target.startswith(PROVIDE):  # only when missing, with no overrides of the user's
        output = target.removeprefix(PROVIDE)
        if oof_path(artifacts, output).is_file():
            return []
        target, goal_args = provider_of(chain, output), []
    calls = plan(chain, target, profile, artifacts, common, run_args, goal_args or [])
    current = os.environ.get(RUN_ENV)
    if current:  # a DDP rank Lightning started by running this command again: the run that
        calls = [c for c in calls if c.run.name == current]  # started it, nothing else
    resolved = resolve_calls(calls, profile)
    if dry_run:
        for c in calls:
            print(c.command(profile))
        return calls
    seconds = execute(calls, resolved, profile, artifacts)
    log.info("chain: %s done (%s)", target,
             ", ".join(f"{k} {v:.0f}s" for k, v in seconds.items()))
    return calls
