"""What the harness may ask of every dataset, declared once instead of probed with hasattr."""
from __future__ import annotations

from typing import Any

from torch.utils.data import Dataset


class ImageDataset(Dataset):
    """A split of uint8 (3, R, R) images. Subclasses set `protocol` (how the images were made: name,
    split, resolution, preprocessing; it goes into every record) and may override the rest."""

    protocol: dict[str, Any] = {}
    # Whether items may be asked for by (index, epoch) keys, so that random augmentation draws anew
    # every epoch while a resumed run still sees exactly the batches it would have seen.
    takes_epoch: bool = False

    def stats(self) -> dict[str, Any]:
        """Counts of what reading this split met (bad files skipped, images upscaled); {} for none."""
        return {}
