"""Running a grid of runs: the driver (grid.run_grid), planning cells (plan), per-machine preparation
(prepare), the status line (progress), what a run asks for (resources), records the driver writes
itself (driver_records), and the backends that execute the cells (backends/: local, ray). Only the
backends/ray* modules import Ray, and lazily."""
