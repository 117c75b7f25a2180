"""``python -m experiments.bench``: see the package docstring."""

from experiments.bench import main
from experiments.cli import run_cli

run_cli(main)
