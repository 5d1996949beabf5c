"""The (B, H, W, D, K) shapes the quantizer rows are measured at."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Shape:
    B: int
    H: int
    W: int
    D: int  # channels of one code vector (the `dim` a quantizer is built with)
    K: int

    @property
    def n(self) -> int:
        """Latent vectors in one batch: the rows of the code search."""
        return self.B * self.H * self.W


# Paper-like latents (8 images of 16x16 tokens, 256-d codes) across codebook sizes, and the memory
# stress case: 65,536 latent vectors against 65,536 codes (a full distance matrix would be 16 GB).
FULL_SHAPES = [Shape(8, 16, 16, 256, k) for k in (512, 1024, 4096, 16384, 65536)]
STRESS_SHAPE = Shape(16, 64, 64, 32, 65536)
QUICK_SHAPES = [Shape(4, 16, 16, 64, k) for k in (512, 1024, 4096)]
