"""Meshes, the logical-axis rules table and multi-process start-up (JAX's multi-controller
runtime)."""
