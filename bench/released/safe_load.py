"""Reading a checkpoint file without running anything it contains.

A released checkpoint is untrusted input: a pickle can name any Python callable and have it called
while it is read, so `torch.load(weights_only=False)` on a downloaded file can run arbitrary code.
Here a file is read only as safetensors or with `torch.load(weights_only=True)`, whose unpickler
builds tensors and plain containers (dict, list, tuple, str, numbers) and nothing else.

Training frameworks store bookkeeping objects beside the weights: PyTorch Lightning keeps its
callback classes (`ModelCheckpoint` as a dict key), numpy scalars in the callback state, and
`argparse.Namespace` / `AttributeDict` hyperparameters; LlamaGen keeps its `argparse.Namespace`.
Read strictly, every released taming checkpoint would be refused for a class vqbench never uses.
So a short, fixed list of such names (METADATA_STAND_INS) is read as `StandIn` objects: vqbench's
own inert class, which only stores the values it is handed; the named class itself is never
imported or called. Nothing outside that list is allowed, and no real class is ever allowlisted.
A weight that turns out to be a stand-in is refused where it is used (`tensor_dict`).

Any other object in the file is refused with one line naming it and the way out: if you trust the
file, keep only its weights (`torch.save(checkpoint["state_dict"], "weights.pt")` in an environment
that can unpickle it) and pass that file instead.
"""
from __future__ import annotations

import pickle
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bench.core.errors import UserError

# Bookkeeping objects of training frameworks, read as StandIn (never built). Each entry: the name as a
# pickle refers to it, and why it is in released checkpoints.
METADATA_STAND_INS: dict[str, str] = {
    "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint": "Lightning 1.x callback state key",
    "pytorch_lightning.callbacks.early_stopping.EarlyStopping": "Lightning 1.x callback state key",
    "pytorch_lightning.callbacks.lr_monitor.LearningRateMonitor": "Lightning 1.x callback state key",
    "pytorch_lightning.utilities.parsing.AttributeDict": "Lightning hyper_parameters",
    "lightning.pytorch.callbacks.model_checkpoint.ModelCheckpoint": "Lightning 2.x callback state key",
    "lightning.fabric.utilities.data.AttributeDict": "Lightning 2.x hyper_parameters",
    "argparse.Namespace": "training arguments (LlamaGen's `args`, Lightning hparams)",
    "numpy.core.multiarray.scalar": "numpy scalars in callback state (numpy 1.x)",
    "numpy._core.multiarray.scalar": "numpy scalars in callback state (numpy 2.x)",
    "numpy.dtype": "dtype of a numpy scalar",
    "numpy.dtypes.Float64DType": "dtype of a numpy scalar",
    "numpy.dtypes.Float32DType": "dtype of a numpy scalar",
    "numpy.dtypes.Int64DType": "dtype of a numpy scalar",
}


class StandIn:
    """What a bookkeeping object of METADATA_STAND_INS is read as: the values the pickle hands it,
    kept as data. `source` names the class the file referred to."""

    source: str = ""

    # Pickles make objects by calling the class (REDUCE) or by cls.__new__ alone (NEWOBJ), so the
    # values are kept in __new__.
    def __new__(cls, *args: Any, **kwargs: Any) -> StandIn:
        obj = super().__new__(cls)
        obj.args, obj.kwargs, obj.state = args, kwargs, None
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<stand-in for {self.source}>"


def _stand_in_classes() -> list[tuple[type, str]]:
    # One subclass per name: as dict keys (Lightning's callback classes) they stay distinct, and a
    # refusal can say which object a weight turned out to be.
    return [(type("StandIn", (StandIn,), {"source": name}), name) for name in METADATA_STAND_INS]


@dataclass
class CheckpointFile:
    path: Path
    format: str  # "safetensors" | "torch"
    content: Any  # safetensors: dict of tensors; torch: tensors in plain containers, StandIns for metadata
    metadata: dict[str, str] = field(default_factory=dict)  # safetensors header metadata
    stand_ins: list[str] = field(default_factory=list)  # METADATA_STAND_INS names the file referred to


def resave_hint(path: Path, key: str | None) -> str:
    """The way out for a refused file, as one sentence."""
    part = f"c[{key!r}]" if key else "c"
    return (f"if you trust the file, keep only its weights: python -c \"import torch; c = torch.load('{path}', "
            f"map_location='cpu', weights_only=False); torch.save({part}, 'weights.pt')\" in an environment that "
            f"can unpickle it, and pass weights.pt")


def read_checkpoint(path: Path | str, weights_key: str | None = None) -> CheckpointFile:
    """Read a .safetensors file, or a torch.save file with the weights-only unpickler (module
    docstring). `weights_key` names the entry a refusal tells the user to keep."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist" if not path.exists() else f"checkpoint {path} is not a file")
    size = path.stat().st_size
    if size == 0:
        raise UserError(f"checkpoint {path} is an empty file (0 bytes)")
    if _is_safetensors(path):
        return _read_safetensors(path)
    stand_ins = _stand_in_classes()
    try:
        with torch.serialization.safe_globals(stand_ins), warnings.catch_warnings():
            # bare pickles of protocol > 2 make torch warn before it refuses them: the refusal says enough
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            content = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UserError(_refusal(path, exc, weights_key)) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"checkpoint {path} ({size} bytes) cannot be read as a PyTorch or safetensors file: "
                        f"{detail}") from None
    return CheckpointFile(path, "torch", content, stand_ins=sorted(_stand_ins_in(content)))


def _is_safetensors(path: Path) -> bool:
    """safetensors: 8-byte little-endian header length, then a JSON header starting with '{'."""
    if path.suffix == ".safetensors":
        return True
    with path.open("rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < path.stat().st_size


def _read_safetensors(path: Path) -> CheckpointFile:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"checkpoint {path} cannot be read as safetensors: {detail}") from None
    return CheckpointFile(path, "safetensors", tensors, metadata=metadata)


def _refusal(path: Path, exc: Exception, weights_key: str | None) -> str:
    """One line: what the file needs that vqbench will not build, why, and the way out."""
    try:  # a static scan of the pickle's GLOBAL opcodes: lists every object it names, runs nothing
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:
        names = _bare_pickle_globals(path)
    names = [n for n in names if n not in METADATA_STAND_INS and n not in _torch_allowed()]
    if names:
        what = "the Python object" + ("s " if len(names) > 1 else " ") + ", ".join(names[:5])
        what += f" (and {len(names) - 5} more)" if len(names) > 5 else ""
    else:
        what = "more than tensors and plain containers (" + _first_line(exc) + ")"
    return (f"refused checkpoint {path}: reading it would build {what}; vqbench reads only tensors and plain "
            f"containers from a checkpoint, because building other objects can run arbitrary code; "
            + resave_hint(path, weights_key))


def _torch_allowed() -> set[str]:
    """Names torch's weights-only unpickler builds by default (tensor rebuilds, OrderedDict, ...)."""
    try:
        from torch._weights_only_unpickler import _get_allowed_globals

        return set(_get_allowed_globals())
    except (ImportError, AttributeError):  # a private helper: without it, nothing is filtered out
        return set()


def _bare_pickle_globals(path: Path) -> list[str]:
    """The objects a bare pickle (pickle.dump, not torch.save) names, read off its opcodes by
    pickletools (disassembly only). STACK_GLOBAL takes its names from the two strings pushed before."""
    import pickletools

    names: list[str] = []
    strings: list[str] = []
    try:
        with path.open("rb") as f:
            for op, arg, _ in pickletools.genops(f):
                if op.name == "GLOBAL":
                    names.append(str(arg).replace(" ", "."))
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    names.append(f"{strings[-2]}.{strings[-1]}")
                elif isinstance(arg, str):
                    strings.append(arg)
    except Exception:
        pass
    return list(dict.fromkeys(names))


def _first_line(exc: Exception) -> str:
    # torch's message opens with its own advice (weights_only=False); the reason is the
    # "WeightsUnpickler error:" part.
    text = str(exc)
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1]
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


def _stand_ins_in(obj: Any, seen: set[int] | None = None) -> set[str]:
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return set()
    seen.add(id(obj))
    if isinstance(obj, type) and issubclass(obj, StandIn):
        return {obj.source}
    if isinstance(obj, StandIn):  # and what it was handed (a numpy scalar's dtype)
        return {obj.source} | _stand_ins_in([obj.args, obj.kwargs, obj.state], seen)
    found: set[str] = set()
    if isinstance(obj, dict):
        for k, v in obj.items():
            found |= _stand_ins_in(k, seen) | _stand_ins_in(v, seen)
    elif isinstance(obj, (list, tuple, set)):
        for v in obj:
            found |= _stand_ins_in(v, seen)
    return found


def tensor_dict(obj: Any, path: Path, where: str) -> dict[str, torch.Tensor]:
    """`obj` as a flat {name: tensor}; a value that is not a tensor is a UserError naming its key."""
    if not isinstance(obj, dict):
        raise UserError(f"checkpoint {path}: {where} is a {type(obj).__name__}, not a dict of named tensors")
    out: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not isinstance(key, str):
            raise UserError(f"checkpoint {path}: {where} has a key that is not a name: {key!r}")
        if not isinstance(value, torch.Tensor):
            raise UserError(f"checkpoint {path}: key {key!r} in {where} holds a {_kind(value)}, not a tensor")
        out[key] = value
    return out


def _kind(value: Any) -> str:
    return repr(value) if isinstance(value, StandIn) else type(value).__name__
