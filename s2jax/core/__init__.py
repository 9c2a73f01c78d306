"""Plumbing every other package may use: errors, atomic writes, JSONL and shard-resumable
artifacts, run-dir ownership, progress bars, process-wide settings (compile cache, host malloc)
and the JAX-free `TextGenerator` seam between prompt programs and samplers. Imports nothing
above it."""
