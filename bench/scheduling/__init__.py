"""Running a grid of runs: planning cells, per-machine preparation, progress, and the backends that
execute them (backends/: local, ray). Only the backends import Ray."""
