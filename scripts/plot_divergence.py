#!/usr/bin/env python3
"""Share of diverged runs against the learning rate, per method and warmup.

Writes results/figures/<name>.png, .pdf and the tidy .csv it drew. Example:
    python scripts/plot_divergence.py --root results/sweeps/smoke --out results/figures
See --help for --table / --where / --by.
"""

import sys

from initbench.results.plots import main_divergence, run_script

if __name__ == "__main__":
    run_script(main_divergence, sys.argv[1:])
