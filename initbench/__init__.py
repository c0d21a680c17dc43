"""initbench: a harness for studying neural-network initialization."""

__version__ = "0.1.0"
