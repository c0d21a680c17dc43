#!/usr/bin/env python3
"""Signal at init against depth, per init: output/input RMS and first/last-layer weight-gradient RMS (log axes).

Reads every probe.csv under --root (a sweep probed with task=probe). Example:
    python -m initbench -m +sweep=plain_depth task=probe probe.hessian=false
    python scripts/plot_signal.py --root results/sweeps/plain_depth --out results/figures
"""

import sys

from initbench.results.plots import main_signal, run_script

if __name__ == "__main__":
    run_script(main_signal, sys.argv[1:])
