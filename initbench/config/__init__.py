"""A run's config in five modules, from the bottom up:

- `schema`: the typed dataclasses Hydra merges `configs/` into (an unknown key or a wrong type fails at composition),
  with what each setting is for beside it (run control, or the task a section belongs to);
- `values`: settings parsed once into typed values (seeds, warmup, the λ1 schedule) that the code receives;
- `features`: which optional features (fused runs, compile, λ1, mixup, ...) a config uses, and which combinations
  no task supports;
- `identity`: what a run computes, as a digest: run ids, recipe digests, job folder names;
- `checks`: every check that needs no data, asking the registries (datasets, models, inits, optimizers, schedules,
  tasks) for what they allow.

This file imports nothing, so each module sits at its own layer (tests/test_layout.py).
"""
