#!/usr/bin/env python3
"""λ1 of the loss Hessian against the optimizer step, per method, with the stability limits 2/η and (2 + 2β)/η.

Writes results/figures/<name>.png, .pdf and the tidy .csv it drew. Example:
    python scripts/plot_curvature.py --table curvature_trajectory --root results/sweeps/curvature_trajectory
See --help for --table / --where / --by.
"""

import sys

from initbench.results.plots import main_curvature, run_script

if __name__ == "__main__":
    run_script(main_curvature, sys.argv[1:])
