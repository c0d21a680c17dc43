"""Tidy result files: their schemas, atomic writes, and gathering them into one table."""
