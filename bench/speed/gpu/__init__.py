"""The measurements of the GPU check (bench/gpu_check.sh), one section per call:
`python -m bench.speed.gpu SECTION --summary PATH --device cuda|cpu [--quick]`.

Sections (one module each): `peak` (the bf16 matmul rate MFU is taken against, written to peak.json
beside the summary), `steps` (training steps of the gpu and paper presets: ms, images/s, TFLOP/s, MFU,
memory; fp32, --compile, channels-last vs contiguous), `eval` (Inception and LPIPS images/s),
`search` (nearest-code search vs its matmul bound up to K = 262,144), `resume` (a short run end to end,
killed and resumed, and repeated: the differences). Each appends a heading, a line on what it measures
and a markdown table to the summary, row by row as measured (`section`); `--quick` is the CPU
rehearsal's small sizes.
"""
