"""Training state for resume, pickle-free: a second ``.safetensors`` file next to the checkpoint.

``<out>.state.safetensors`` holds the *last* weights (the checkpoint itself holds the
best), the optimizer's tensors (``optim.<param index>.<name>``), the torch RNG state, and
a JSON document with the step, epoch, history, best score, the model spec (so the
normalisation statistics are reused, not recomputed) and the sampler's RNG state.
The learning rate is a pure function of the step, so the schedule needs no state.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from pipeline.errors import CheckpointError, OutputError

from ..integrity import chmod_as_created

STATE_KEY = "segpipe_training_state"
STATE_VERSION = 1


def state_path_for(checkpoint: str | Path) -> Path:
    """``model.safetensors`` -> ``model.state.safetensors`` (a state path is returned as is)."""
    p = Path(checkpoint)
    if p.name.endswith(".state.safetensors"):
        return p
    base = p.name[: -len(".safetensors")] if p.name.endswith(".safetensors") else p.name
    return p.with_name(f"{base}.state.safetensors")


@dataclass
class TrainingState:
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    torch_rng: torch.Tensor | None
    meta: dict[str, Any]

    @property
    def step(self) -> int:
        return int(self.meta["step"])


def save_state(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
               meta: dict[str, Any]) -> Path:
    """Write the state atomically (temporary name, then rename)."""
    path = Path(path)
    tensors = {f"model.{k}": v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    for idx, st in opt["state"].items():
        for name, value in st.items():
            t = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"optim.{idx}.{name}"] = t.detach().to("cpu", copy=True).contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    groups = [{k: v for k, v in g.items()} for g in opt["param_groups"]]
    doc = {"state_version": STATE_VERSION, **meta, "param_groups": groups}
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(tmp), metadata={STATE_KEY: json.dumps(doc)})
        chmod_as_created(tmp)  # safetensors writes 0600; follow the umask like every other output
        os.replace(tmp, path)
    except (OSError, TypeError) as exc:
        raise OutputError(f"{path}: cannot write the training state: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_state(path: str | Path) -> TrainingState:
    """Read a state file written by :func:`save_state`.

    Raises:
        CheckpointError: missing, unreadable, or not a segpipe training state.
    """
    path = state_path_for(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: training state not found; resume needs the .state.safetensors file "
                              "written next to the checkpoint during training")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            raw = (f.metadata() or {}).get(STATE_KEY)
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"{path}: not a readable training state: {exc}") from exc
    if raw is None:
        raise CheckpointError(f"{path}: has no {STATE_KEY!r} metadata; not a segpipe training state")
    meta = json.loads(raw)
    if meta.get("state_version") != STATE_VERSION:
        raise CheckpointError(f"{path}: training state version {meta.get('state_version')} is not {STATE_VERSION}")
    model = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    state: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, idx, name = k.split(".", 2)
            state.setdefault(int(idx), {})[name] = v
    optimizer = {"state": state, "param_groups": meta.pop("param_groups")}
    return TrainingState(model, optimizer, tensors.get("rng.torch"), meta)
