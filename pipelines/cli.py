"""``isic``: one subcommand per stage, each a thin wrapper around an importable ``run(cfg)``.

Usage: ``isic <stage> [--profile P] [key=value ...]``. The config of a stage is resolved from
``configs/<stage>.yaml`` (profile, then tuned parameters, then overrides) and saved with the
run's outputs by the stage itself. ``isic <stage> --help`` lists every key of it with its type,
default and meaning (:mod:`isicstack.settings.help`).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import re
import sys
import traceback
import typing
from collections.abc import Callable

import yaml

from isicstack.data.io import DataError
from isicstack.extras import MissingExtraError
from isicstack.pipelines.stages import STAGES, config_class, stage_config
from isicstack.settings.command import CommandExit
from isicstack.settings.help import epilog
from isicstack.settings.layers import ConfigError


def flag_type(cls: type, key: str) -> type:
    """What ``--<key>`` parses as: the config field's int or float, else the text as given
    (a list such as ``--isic-ids ISIC_1,ISIC_2`` is read as YAML by the key=value path)."""
    hint = typing.get_type_hints(cls).get(key)
    if hint is None:
        raise KeyError(f"{cls.__name__} has no field {key!r} for its --{key} flag")
    return hint if hint in (int, float) else str


class StageParser(argparse.ArgumentParser):
    """A stage's parser: its ``--help`` ends with every config key, default and meaning, read
    from the stage's config class only when help is asked for (its light ``config`` module is
    imported, never the stage's run module)."""

    stage: str | None = None
    help_profile = "default"

    def format_help(self) -> str:
        if self.stage is not None and self.epilog is None:
            self.epilog = epilog(config_class(self.stage), STAGES[self.stage].yaml,
                                 self.help_profile)
        return super().format_help()


def _profile(argv: list[str]) -> str:
    """``--profile P`` of ``argv`` (the defaults ``--help`` shows are that profile's)."""
    for i, arg in enumerate(argv):
        if arg == "--profile" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--profile="):
            return arg.split("=", 1)[1]
    return os.environ.get("PROFILE") or "default"


def build_parser(profile: str = "default") -> argparse.ArgumentParser:
    """``isic`` and one subcommand per stage; ``profile`` sets the defaults its help shows."""
    parser = argparse.ArgumentParser(prog="isic", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="stage", required=True, metavar="STAGE",
                                parser_class=StageParser)
    cmp_ = sub.add_parser(
        "compare", help="paired test B vs A of two evaluations or sets of stage runs",
        description="B - A, paired by fold assignment: corrected repeated-CV t-test over the "
                    "folds of every paired seed and a patient bootstrap of the pooled OOF "
                    "pAUC, each with a 95%% interval (README: Comparing runs).")
    for side in ("run_a", "run_b"):
        cmp_.add_argument(side, help="an `isic evaluate` name or JSON path, or "
                          "<artifacts folder or glob>:<oof name>, e.g. "
                          "'artifacts/bench_pipeline/seed{0,1,2}:stack'")
    cmp_.add_argument("--model", default=None, help="compare this model only (evaluations)")
    cmp_.add_argument("--artifacts", default=os.environ.get("ARTIFACTS") or "artifacts",
                      help="where evaluation names are looked up (<artifacts>/evals/)")
    cmp_.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicates (0: none)")
    cmp_.add_argument("--allow-different-conditions", action="store_true",
                      help="compare runs whose recorded conditions differ (marked in the "
                           "output) instead of refusing")
    cmp_.add_argument("--out", default=None, help="also write the result as JSON here")
    cmp_.add_argument("--print-config", action="store_true",
                      help="print the parsed arguments and exit")
    chain = sub.add_parser(
        "chain", help="run a run of configs/chain.yaml (`make <run>`), its missing inputs first",
        description="Runs a declared run of configs/chain.yaml (or `all` of them, in order): "
                    "first the runs providing any OOF file it needs that is missing, then the "
                    "run with its declared overrides and the key=value ones given here.")
    chain.add_argument("run", help="a run name of the chain (`make help` lists them), `all`, "
                       "or provide:<oof name> (its provider, only when the file is missing)")
    chain.add_argument("--profile", default=os.environ.get("PROFILE") or "default")
    chain.add_argument("--data-dir", default="auto", help="every run's data_dir")
    chain.add_argument("--artifacts", default=os.environ.get("ARTIFACTS") or "artifacts",
                       help="every run's artifacts folder")
    chain.add_argument("--args", action="append", default=[], metavar="RUN=ARGS",
                       help="overrides of one run wherever it runs, e.g. "
                            "--args 'train-tabular=bags=1 seed=3' (make's ARGS_<run>)")
    chain.add_argument("--dry-run", "--print-config", action="store_true",
                       help="print the isic commands it would run (each run's overrides "
                            "resolved by the stage at run time), run nothing")
    for name, spec in STAGES.items():
        p = sub.add_parser(name, help=spec.help, description=spec.help,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.stage, p.help_profile = name, profile
        p.add_argument("--profile", default=os.environ.get("PROFILE") or "default",
                       help="config profile (smoke, default, full, ...)")
        p.add_argument("--print-config", action="store_true",
                       help="print the resolved config and exit")
        for flag in spec.flags:
            p.add_argument(f"--{flag.replace('_', '-')}", type=flag_type(config_class(name), flag),
                           dest=f"flag_{flag}")
        p.set_defaults(overrides=[])
        p.usage = f"isic {name} [--profile P] [--print-config] [key=value ...]"
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``isic`` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_profile(argv))
    args, rest = parser.parse_known_args(argv)
    flags = [a for a in rest if a.startswith("-")]
    if flags:
        parser.error(f"unrecognized arguments: {' '.join(flags)}")
    args.overrides = rest
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if args.stage == "compare":
        return _compare(args)
    if args.stage == "chain":
        return _chain(args)
    overrides = list(args.overrides)
    if args.stage in ("tune", "runs") and overrides and "=" not in overrides[0]:
        overrides[0] = f"stage={overrides[0]}"  # `isic tune tabular ...`, `isic runs image`
    for key, value in vars(args).items():
        if key.startswith("flag_") and value is not None:
            overrides.append(f"{key[5:]}={value}")
    return _guarded(args.stage, args.verbose,
                    lambda: _run_stage(args.stage, args.profile, overrides, args.print_config))


def _run_stage(stage: str, profile: str, overrides: list[str], print_config: bool) -> None:
    """Resolve the stage's config, then print it (``--print-config``) or run the stage."""
    cfg, run = stage_config(stage, profile, overrides)
    if print_config:
        print(yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False), end="")
    else:
        run(cfg)


def _guarded(name: str, verbose: bool, call: Callable[[], object]) -> int:
    """Exit status of ``call()``: bad input is one line (2: a config or a missing extra, 1:
    data, files, a bad-input error from a DataLoader worker); any other error propagates."""
    try:
        call()
    except CommandExit as done:  # finished, with a status to report (monitor alerts: 3)
        print(f"isic {name}: {done}", file=sys.stderr)
        return done.code
    except (ConfigError, MissingExtraError) as err:
        return _fail(name, err, 2, verbose)
    except (FileNotFoundError, ValueError, KeyError) as err:
        return _fail(name, err, 1, verbose)
    except RuntimeError as err:
        if worker_error(err) is None:
            raise
        return _fail(name, err, 1, verbose)
    return 0


# Bad input raised inside a DataLoader worker comes back as a RuntimeError (or the same type)
# whose message is "Caught <Type> in DataLoader worker process N. Original Traceback ...".
WORKER_ERROR = re.compile(r"Caught (\w+) in DataLoader worker process \d+")
INPUT_ERRORS = {"BadImageError", "DataError", "FileNotFoundError", "ConfigError"}


def worker_error(err: BaseException) -> str | None:
    """The original one-line message of a bad-input error raised in a DataLoader worker."""
    text = str(err)
    m = WORKER_ERROR.search(text)
    if m is None or m.group(1) not in INPUT_ERRORS:
        return None
    last = text.strip().splitlines()[-1]  # "<module>.<Type>: <message>"
    return last.split(": ", 1)[1] if ": " in last else last


def _fail(stage: str, err: BaseException, code: int, verbose: bool) -> int:
    """One line for bad input; with ``-v`` the traceback too (a bug must stay debuggable).

    ``DataError``/``ConfigError``/missing files are the user's input and already name the file,
    column or key. Any other ValueError/KeyError may be a bug: its type is printed and ``-v``
    shows where it came from.
    """
    from_worker = worker_error(err)
    expected = from_worker is not None or isinstance(
        err, (DataError, ConfigError, FileNotFoundError, MissingExtraError))
    if verbose:
        traceback.print_exception(err, file=sys.stderr)
    message = from_worker or (str(err) if expected else f"{type(err).__name__}: {err}")
    hint = "" if expected or verbose else f" (run `isic -v {stage} ...` for the traceback)"
    print(f"isic {stage}: error: {message}{hint}", file=sys.stderr)
    return code


def _chain(args: argparse.Namespace) -> int:
    from isicstack.pipelines.chain_run import parse_run_args, run_chain

    return _guarded("chain", args.verbose, lambda: run_chain(
        args.run, args.profile, args.data_dir, args.artifacts, parse_run_args(args.args),
        args.overrides, args.dry_run))


def _compare(args: argparse.Namespace) -> int:
    from isicstack.evaluation.evaluate import compare

    if args.print_config:
        print({k: v for k, v in vars(args).items() if k not in ("stage", "verbose")})
        return 0
    try:
        compare(args.run_a, args.run_b, args.model, args.artifacts, args.n_boot,
                args.allow_different_conditions, args.out)
    except (FileNotFoundError, ValueError, KeyError) as err:  # DataError is a ValueError
        return _fail("compare", err, 1, args.verbose)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
