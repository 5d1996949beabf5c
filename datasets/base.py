"""What the harness may ask of every dataset, declared once instead of probed with hasattr."""
from __future__ import annotations

from typing import Any, Sequence

from torch.utils.data import Dataset


class ImageDataset(Dataset):
    """A split of uint8 (3, R, R) images. Subclasses set `protocol` (how the images were made: name,
    split, resolution, preprocessing; it goes into every record) and may override the rest."""

    protocol: dict[str, Any] = {}
    # Whether items may be asked for by (index, epoch) keys, so that random augmentation draws anew
    # every epoch while a resumed run still sees exactly the batches it would have seen.
    takes_epoch: bool = False
    # Class labels, for datasets that have them (the stage-2 prior conditions on them): `labels[i]` is
    # the class of item i, an index into `label_names`. None for an unlabelled dataset. A dataset that
    # sets them sets both, and the same `label_names` for every split, so that an index means one class.
    labels: Sequence[int] | None = None
    label_names: Sequence[str] | None = None

    def stats(self) -> dict[str, Any]:
        """Counts of what reading this split met (bad files skipped, images upscaled); {} for none."""
        return {}
