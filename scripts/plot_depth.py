#!/usr/bin/env python3
"""A table metric against depth per method (default: accuracy after the first epoch).

Writes results/figures/<name>.png, .pdf and the tidy .csv it drew. Example:
    python scripts/plot_depth.py --root results/sweeps/smoke --out results/figures
See --help for --table / --where / --by.
"""

import sys

from initbench.results.plots import main_depth, run_script

if __name__ == "__main__":
    run_script(main_depth, sys.argv[1:])
