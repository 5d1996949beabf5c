"""What the GPU check carries to a GPU machine that has no network, and the image it runs on there.

bundle.py   `make gpu-bundle`: wheels the image lacks, the FID weights (fid_half.py) and VQCT's prior,
            at most 56 MiB, with a MANIFEST
image.py    requirements/gpu_image.txt (the image's packages) and the CPU rehearsal's venv from it
bundled.py  the bundle seen from the GPU machine (the carried prior made VQCT's default)
The check itself is bench/gpu_check.sh; its measuring sections are bench.speed.gpu.
"""
