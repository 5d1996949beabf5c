"""An in-memory dataset of uint8 images, with the preprocessing it applied recorded for the protocol."""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .base import ImageDataset


class UInt8Images(ImageDataset):
    """Holds a uint8 tensor (N, 3, R, R). `protocol` describes how the images were made."""

    takes_epoch = True  # (index, epoch) keys work; the epoch changes nothing here

    def __init__(self, images: Tensor, names: list[str], protocol: dict[str, Any]) -> None:
        assert images.dtype == torch.uint8 and images.ndim == 4 and images.shape[1] == 3, images.shape
        assert len(names) == len(images)
        self.images = images
        self.names = names
        self.protocol = protocol

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: int | tuple[int, int]) -> Tensor:
        # (index, epoch) keys are accepted like the disk datasets'; in-memory images have no augmentation
        return self.images[key[0] if isinstance(key, tuple) else key]
