"""Train the colorization GAN: ``python -m experiments.train --preset t4_128 [--set k=v ...]``.

Re-running the same command resumes from the latest checkpoint in the workdir. On an
accelerator, a train step that cannot fit its memory stops the run before the first step with
the settings that would fit (``--no-plan`` skips the check).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from experiments.cli import add_config_args, config_from_args, run_cli


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_args(parser)
    parser.add_argument("--workdir", help="run directory (default: runs/<preset>)")
    parser.add_argument(
        "--no-plan",
        action="store_true",
        help="skip the start-up check that the train step fits the device's memory",
    )
    args = parser.parse_args(argv)
    config = config_from_args(args)
    workdir = args.workdir or f"runs/{args.preset}"

    from colorjax.training.checkpoint import CheckpointWriteError, NoRestorableCheckpointError
    from colorjax.training.fit import StepDoesNotFitError
    from colorjax.training.lock import WorkdirBusyError
    from colorjax.training.loop import NonFiniteLossError, train_and_evaluate

    try:
        summary = train_and_evaluate(config, workdir, plan=not args.no_plan)
    except (
        StepDoesNotFitError,
        NonFiniteLossError,
        WorkdirBusyError,
        NoRestorableCheckpointError,
        CheckpointWriteError,
    ) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    print(json.dumps(summary, indent=2))
    if summary["interrupted"]:
        raise SystemExit(130)


if __name__ == "__main__":
    run_cli(main)
