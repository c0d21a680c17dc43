#!/usr/bin/env python3
"""Write a paper's table: our runs (mean ± std over seeds, n) beside the reported numbers and the difference.

Prints Markdown and writes results/tables/<name>.md, .tex and .csv (same as `initbench table NAME`):
    python scripts/make_tables.py fixup_cifar10 [--root results] [--dataset cifar10=cifar10_jpeg]
    python scripts/make_tables.py --list
"""

import sys

from initbench.cli import table_main

if __name__ == "__main__":
    table_main(sys.argv[1:])
