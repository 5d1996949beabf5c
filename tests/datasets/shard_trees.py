"""One set of tiny images written three ways: an image folder, WebDataset tar shards and a Hugging
Face-style parquet file (image struct {bytes, path}, optional label), under the same names."""
from __future__ import annotations

import io
import tarfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = (20, 18)  # (w, h): above the test resolution, not square


def image_bytes(name: str, size: tuple[int, int] = SIZE, fmt: str = "PNG") -> bytes:
    """A deterministic noisy image whose content depends on its name."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


def names(n: int = 64) -> list[str]:
    return [f"img_{k:03d}.png" for k in range(n)]


def write_folder(folder: Path, images: dict[str, bytes]) -> Path:
    for name, data in images.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


def write_tar(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def write_tars(folder: Path, images: dict[str, bytes], shards: int = 2, prefix: str = "shard",
               labels: dict[str, int] | None = None) -> list[Path]:
    """`prefix-0.tar` ... in WebDataset's layout: KEY.png, and KEY.cls when labelled."""
    keys = list(images)
    per = -(-len(keys) // shards)
    out = []
    for s in range(shards):
        members: dict[str, bytes] = {}
        for name in keys[s * per:(s + 1) * per]:
            members[name] = images[name]
            if labels is not None:
                members[name.rsplit(".", 1)[0] + ".cls"] = str(labels[name]).encode()
        out.append(write_tar(folder / f"{prefix}-{s}.tar", members))
    return out


def write_parquet(path: Path, images: dict[str, bytes | None], labels: dict[str, int] | None = None,
                  row_group_size: int = 16, class_names: list[str] | None = None) -> Path:
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {"image": [{"bytes": data, "path": name} for name, data in images.items()]}
    if labels is not None:
        columns["label"] = [labels[n] for n in images]
    table = pa.table(columns)
    if class_names is not None:  # as Hugging Face stores a ClassLabel feature
        meta = {"info": {"features": {"image": {"_type": "Image"}, "label": {"_type": "ClassLabel", "names": class_names}}}}
        table = table.replace_schema_metadata({b"huggingface": json.dumps(meta).encode()})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def three_sources(root: Path, n: int = 64) -> dict[str, str]:
    """{source: dataset name} of the same n images as a folder, two tar shards and one parquet file."""
    images = {name: image_bytes(name) for name in names(n)}
    write_folder(root / "folder", images)
    write_tars(root / "tars", images)
    write_parquet(root / "pq" / "data.parquet", images)
    return {"imagefolder": f"imagefolder:{root / 'folder'}",
            "webdataset": f"webdataset:{root / 'tars'}/shard-{{0..1}}.tar",
            "parquet": f"parquet:{root / 'pq' / 'data.parquet'}"}
