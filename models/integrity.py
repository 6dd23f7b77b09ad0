"""Is this checkpoint file the one that was written? Weights digest, pickles, file mode.

A safetensors header carries its tensors' offsets but no checksum, so flipped bits in the
weights load silently and the network just predicts worse. segpipe therefore stores a
SHA-256 of the weights in its own metadata (``weights_sha256`` in the "segpipe" JSON
document) and loading recomputes it. The digest is taken over the tensors, not the file's
bytes: the metadata holding it is part of the file, and a tensor's bytes do not depend on
where safetensors puts them.

Checkpoints written before the digest existed keep loading (``model info`` says they are
unverified). A PyTorch pickle given where a checkpoint is expected is recognised by its
first bytes so the user is told to wrap it, instead of safetensors' "header too large".
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch

from pipeline.errors import CheckpointError

DIGEST_KEY = "weights_sha256"


def weights_digest(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 hex over every tensor in name order: its name, dtype and shape, then its raw bytes."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().to("cpu").contiguous()
        h.update(json.dumps([name, str(t.dtype).removeprefix("torch."), list(t.shape)]).encode())
        h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
    return h.hexdigest()


def verify_weights(path: Path, state: Mapping[str, torch.Tensor], document: Mapping[str, object]) -> bool:
    """Check ``state`` against the digest stored in ``document``; False when the file has none.

    Raises:
        CheckpointError: the weights read from ``path`` are not the weights that were written.
    """
    stored = document.get(DIGEST_KEY)
    if stored is None:
        return False
    actual = weights_digest(state)
    if actual != stored:
        raise CheckpointError(
            f"{path}: the weights do not match the digest stored in the file (sha256 {str(stored)[:12]}... "
            f"written, {actual[:12]}... read): the file is corrupt or was altered; copy or export it again")
    return True


def pickle_kind(path: Path) -> str | None:
    """'zip' for a ``torch.save`` archive, 'pickle' for a legacy pickle, None for anything else.

    Called only once safetensors has refused the file, so a valid checkpoint whose header
    length happens to start with a pickle opcode is never mistaken for one.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(2)
        if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
            return "pickle"
        if head == b"PK" and zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                if any(n.endswith("data.pkl") for n in z.namelist()):
                    return "zip"
    except (OSError, zipfile.BadZipFile):
        return None
    return None


def pickled_error(path: Path, kind: str) -> CheckpointError:
    what = "a torch.save archive" if kind == "zip" else "a Python pickle"
    return CheckpointError(
        f"{path}: this is a pickled state dict ({what}, .pt/.pth), not a segpipe checkpoint: wrap it with "
        f"`segpipe model import {path.name} --out model.safetensors --in-channels C --classes K`")


def umask() -> int:
    """This process's umask, read without changing it where Linux tells (``os.umask`` is process-wide)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def chmod_as_created(path: Path) -> None:
    """Give ``path`` the mode a plain ``open(path, "w")`` would (0644 under umask 022).

    safetensors writes its files 0600, so a checkpoint shared with a service account or a
    colleague would be unreadable to them.
    """
    os.chmod(path, 0o666 & ~umask())
