"""Measurements of a network: λ1 of the loss Hessian (hessian.py, the maths; curvature.py, along training) and
signal propagation at init (signal.py). They take models and batches; which batches is the task's business."""
