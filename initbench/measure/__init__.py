"""Measurements of a network outside training: the probe at initialization (`task=probe`)."""
