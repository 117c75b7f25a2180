"""Entry points, run as ``python -m experiments.<name>``."""
