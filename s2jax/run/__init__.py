"""Orchestration: the typed experiment config (config), the stages of a distillation (stages),
their sequence and `s2jax run`'s resolution of a config (pipeline), and the fit planner
(plan)."""
