#!/usr/bin/env python3
"""Training and test curves per method (mean over seeds, ±1 std band).

Writes results/figures/<name>.png, .pdf and the tidy .csv it drew. Example:
    python scripts/plot_curves.py --root results/sweeps/smoke --out results/figures
See --help for --table / --where / --by.
"""

import sys

from initbench.results.plots import main_curves, run_script

if __name__ == "__main__":
    run_script(main_curves, sys.argv[1:])
