"""Training: optimizers and LR schedules, K runs trained together, and the runner that drives a job."""
