"""Training: the loop every task shares (trainer.py) and the job runner around it (runner.py, job_lock.py)."""
