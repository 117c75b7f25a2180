"""Command-line pieces shared by the entry points: ``--preset NAME`` and repeatable ``--set``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from colorjax.config import Config, ConfigError, apply_overrides
from experiments.presets import PRESETS, get_preset


def add_config_args(parser: argparse.ArgumentParser, default_preset: str = "demo") -> None:
    """Add ``--preset`` and ``--set`` to ``parser``."""
    parser.add_argument(
        "--preset",
        default=default_preset,
        help=f"named configuration ({', '.join(sorted(PRESETS))})",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, e.g. model.norm=group",
    )


def config_from_args(args: argparse.Namespace) -> Config:
    """The preset named by ``args.preset`` with ``args.overrides`` applied."""
    return apply_overrides(get_preset(args.preset), args.overrides)


def run_cli(
    main, argv: Sequence[str] | None = None, *, errors: tuple[type[Exception], ...] = ()
) -> None:
    """Run ``main(argv)`` and exit with the status it returns; a ConfigError (or one of
    ``errors``: bad input the message explains) becomes a one-line message and status 2."""
    try:
        status = main(argv)
    except (ConfigError, *errors) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    raise SystemExit(status)
