"""The speed benchmark, `python -m bench.speed` (main): quantizer rows against the distance-matmul
bound, their peers and the reference method (quantizers, with the peer and comparison table in
peers), full training steps per preset (training), metric throughput (evaluation), on shapes from
shapes, timed by timing and memory. `python -m bench.speed.short_run` trains a few hundred steps per
method for the GPU check (bench/gpu_check.sh); `python -m bench.speed.loader` sets the trainer's data
loader against its training step, `python -m bench.speed.inception` rFID's Inception against its
FLOP bound. `python -m bench.speed.gpu SECTION` is one section of the GPU check's summary
(bench/speed/gpu/: the matmul peak, training steps with MFU, evaluation networks, code search,
kill-and-resume)."""
