"""One run of the grid: its configuration (presets, RunConfig, ResolvedRun), its record (RunRecord,
results/runs/<run_id>/record.json) and `run_one`, which trains, evaluates and records it."""
