"""Self-describing, pickle-free checkpoints: one ``.safetensors`` file.

The file holds the weights and, in the safetensors header's ``metadata`` (str -> str), one
key ``"segpipe"`` whose value is a JSON document with everything needed to rebuild and
feed the network:

    format_version  int, FORMAT_VERSION
    architecture    {arch, encoder, in_channels, out_channels, kwargs, num_parameters}
    spec            pipeline.spec.ModelSpec.to_dict(): bands, context, normalization,
                    class names and colours, activation, tile, overlap
    provenance      {created (ISO UTC), segpipe_version, torch_version, smp_version,
                     source {kind, ...}, notes}
    training        optional dict (filled by training code)
    weights_sha256  SHA-256 of the weights (``integrity.weights_digest``), verified on load;
                    absent in files written before it existed (they load, unverified)

Loading never unpickles anything: safetensors stores raw tensor bytes behind a JSON header.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import segmentation_models_pytorch as smp
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

import pipeline
from pipeline.errors import CheckpointError, ConfigError, OutputError
from pipeline.files import file_sha256  # re-exported: models.checkpoint.file_sha256
from pipeline.spec import ModelSpec, Normalization, default_colors

from .integrity import DIGEST_KEY, chmod_as_created, pickle_kind, pickled_error, verify_weights, weights_digest
from .unet import build_model, check_state_dict, count_parameters, pick_prefix, read_state_dict

FORMAT_VERSION = 1
METADATA_KEY = "segpipe"


class _Architecture(BaseModel):
    model_config = ConfigDict(extra="allow")

    arch: str
    encoder: str
    in_channels: int = Field(ge=1)
    out_channels: int = Field(ge=1)
    kwargs: dict[str, Any] = Field(default_factory=dict)


class _Document(BaseModel):
    """The metadata JSON. Unknown top-level keys are kept: a v1 reader tolerates v1 additions."""

    model_config = ConfigDict(extra="allow")

    format_version: int
    architecture: _Architecture
    spec: dict[str, Any]
    provenance: dict[str, Any] = Field(default_factory=dict)
    training: dict[str, Any] | None = None


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A network ready for inference, with the contract the engine needs to feed it.

    Attributes:
        module: the network in eval mode, returning logits.
        spec: input/output contract (bands, normalization, classes, activation, tiling).
        metadata: the whole "segpipe" JSON document.
        sha256: hex digest of the file's bytes (for run records: which model made an output).
        path: the file it was loaded from.
        weights_verified: the weights matched the digest stored in the file (False: an
            older file without one).
    """

    module: torch.nn.Module
    spec: ModelSpec
    metadata: dict[str, Any]
    sha256: str
    path: Path
    arch: str
    encoder: str
    weights_verified: bool = False


def save_checkpoint(
    model: torch.nn.Module,
    spec: ModelSpec,
    path: str | Path,
    *,
    arch: str,
    encoder: str,
    arch_kwargs: Mapping[str, Any] | None = None,
    provenance: Mapping[str, Any] | None = None,
    training: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model`` and its ``spec`` to one .safetensors file, atomically.

    The weights are checked against ``build_model(arch, encoder, ...)`` first, so a file that
    could not be loaded back is never written. The file appears under its name only when
    complete (temporary name in the same folder, then ``os.replace``).

    Args:
        provenance: merged over the defaults (created, versions); give ``source`` (e.g.
            ``{"kind": "trained"}``) and ``notes`` here.
        training: free-form training record (data, epochs, metrics), stored as is.
    """
    path = Path(path)
    arch_kwargs = dict(arch_kwargs or {})
    state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
    reference = build_model(arch, encoder, spec.in_channels, spec.out_channels, **arch_kwargs)
    check_state_dict(state, reference.state_dict(), path)
    document = {
        "format_version": FORMAT_VERSION,
        "architecture": {
            "arch": arch, "encoder": encoder, "in_channels": spec.in_channels,
            "out_channels": spec.out_channels, "kwargs": arch_kwargs,
            "num_parameters": count_parameters(reference),
        },
        "spec": spec.to_dict(),
        "provenance": {**_default_provenance(), **dict(provenance or {})},
        DIGEST_KEY: weights_digest(state),
    }
    if training is not None:
        document["training"] = dict(training)
    try:
        text = json.dumps(document, sort_keys=False)
    except TypeError as exc:
        raise ConfigError(f"{path}: provenance/training must be JSON-serialisable: {exc}") from exc
    _write_atomic(state, {METADATA_KEY: text, "format": "pt"}, path)
    return path


def _default_provenance() -> dict[str, Any]:
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "segpipe_version": pipeline.__version__,
        "torch_version": torch.__version__,
        "smp_version": smp.__version__,
        "source": {"kind": "unspecified"},
        "notes": "",
    }


def _write_atomic(state: dict[str, torch.Tensor], metadata: dict[str, str], path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(state, str(tmp), metadata=metadata)
        chmod_as_created(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write checkpoint: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Rebuild the network a checkpoint describes and load its weights, in eval mode.

    Raises:
        CheckpointError: one line naming the file: missing, not safetensors (or truncated),
            a pickled state dict (to wrap with ``segpipe model import``), no segpipe metadata,
            unsupported format_version, bad metadata or spec, weights that do not fit the
            architecture, or weights that differ from the digest stored with them.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    state, data, document = _read_file(path)
    arch = document.architecture
    spec = _spec(document, path)
    try:
        module = build_model(arch.arch, arch.encoder, arch.in_channels, arch.out_channels, **arch.kwargs)
    except (ConfigError, CheckpointError) as exc:
        raise CheckpointError(f"{path}: cannot rebuild the network: {exc}") from exc
    check_state_dict(state, module.state_dict(), path)  # names and shapes first: the more precise message
    verified = verify_weights(path, state, data)
    module.load_state_dict(state, strict=True)
    module.to(device).eval()
    return LoadedModel(
        module=module, spec=spec, metadata=data, sha256=file_sha256(path),
        path=path, arch=arch.arch, encoder=arch.encoder, weights_verified=verified,
    )


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The checkpoint's "segpipe" JSON document, validated, without building the network."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    _, data, document = _read_file(path, tensors=False)
    _spec(document, path)
    return data


def _read_file(path: Path, tensors: bool = True) -> tuple[dict[str, torch.Tensor], dict[str, Any], _Document]:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            raw = (f.metadata() or {}).get(METADATA_KEY)
            state = {k: f.get_tensor(k) for k in f.keys()} if tensors else {}
    except (SafetensorError, OSError, ValueError) as exc:
        kind = pickle_kind(path)
        if kind is not None:
            raise pickled_error(path, kind) from exc
        raise CheckpointError(
            f"{path}: not a readable safetensors file (corrupt or truncated?): {exc}"
        ) from exc
    if raw is None:
        raise CheckpointError(
            f"{path}: safetensors file has no {METADATA_KEY!r} metadata; wrap plain weights with "
            "`segpipe model import`"
        )
    return state, *_parse_document(raw, path)


def _parse_document(raw: str, path: Path) -> tuple[dict[str, Any], _Document]:
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: {METADATA_KEY!r} metadata is not valid JSON: {exc}") from exc
    version = data.get("format_version") if isinstance(data, dict) else None
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError(f"{path}: metadata has no integer format_version (got {version!r})")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: format_version {version} is not supported (this segpipe {pipeline.__version__} "
            f"reads {FORMAT_VERSION}); use a segpipe that matches the file"
        )
    try:
        return data, _Document.model_validate(data)
    except ValidationError as exc:
        fields = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3])
        raise CheckpointError(f"{path}: metadata is malformed: {fields}") from exc


def _spec(document: _Document, path: Path) -> ModelSpec:
    try:
        spec = ModelSpec.from_dict(document.spec)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: invalid model spec: {exc}") from exc
    arch = document.architecture
    if (spec.in_channels, spec.out_channels) != (arch.in_channels, arch.out_channels):
        raise CheckpointError(
            f"{path}: spec says {spec.in_channels} in / {spec.out_channels} out channels, "
            f"architecture says {arch.in_channels} / {arch.out_channels}"
        )
    return spec


def import_state_dict(
    state_dict_path: str | Path,
    out: str | Path,
    *,
    in_channels: int,
    classes: int,
    encoder: str = "resnet34",
    arch: str = "Unet",
    class_names: Iterable[str] | None = None,
    class_colors: Iterable[str | Iterable[int]] | None = None,
    bands: Iterable[int] | None = None,
    mean: Iterable[float] | None = None,
    std: Iterable[float] | None = None,
    scale: float | None = None,
    tile: int = 512,
    overlap: int = 64,
    context: int = 1,
    notes: str = "",
) -> Path:
    """Wrap a plain smp state dict trained elsewhere into a segpipe checkpoint.

    The weights are loaded (strictly) into the network they claim to be before anything is
    written, so a wrong ``in_channels``/``classes``/``encoder`` fails here, not at night.

    Args:
        classes: 1 for a sigmoid binary model (classes "background" and one name, default
            "foreground"); K > 1 for softmax over K classes (default "class_0"...).
        bands: 1-based source bands in channel order; default 1..in_channels/context.
        mean, std: per-band statistics for "meanstd" normalization.
        scale: factor for "scale" normalization (x * scale). Neither: "none".
    """
    source = Path(state_dict_path)
    try:
        names = _class_names(classes, class_names)
        spec = ModelSpec(
            in_channels=in_channels,
            bands=tuple(bands) if bands is not None else tuple(range(1, in_channels // max(context, 1) + 1)),
            class_names=names,
            # Stored explicitly, so the file still renders the same if the default palette changes.
            class_colors=tuple(parse_color(c) for c in class_colors or ()) or default_colors(len(names)),
            normalization=_normalization(mean, std, scale),
            context=context,
            activation="sigmoid" if classes == 1 else "softmax",
            tile=tile,
            overlap=overlap,
        )
    except (CheckpointError, ConfigError) as exc:  # the spec rejects our arguments, not a file
        raise ConfigError(f"cannot import {source}: {exc}") from exc
    try:
        model = build_model(arch, encoder, in_channels, spec.out_channels)
    except ConfigError as exc:
        raise ConfigError(f"cannot import {source}: {exc}") from exc
    state = pick_prefix(read_state_dict(source), model.state_dict().keys())
    check_state_dict(state, model.state_dict(), source)
    model.load_state_dict(state, strict=True)
    provenance = {
        "source": {"kind": "imported", "file": str(source.resolve()), "sha256": file_sha256(source)},
        "notes": notes,
    }
    return save_checkpoint(model, spec, out, arch=arch, encoder=encoder, provenance=provenance)


def _class_names(classes: int, names: Iterable[str] | None) -> tuple[str, ...]:
    if classes < 1:
        raise ConfigError(f"classes must be >= 1 (1 = sigmoid binary), got {classes}")
    names = tuple(names or ())
    if classes == 1:
        if len(names) == 1:
            names = ("background", *names)
        names = names or ("background", "foreground")
        if len(names) != 2:
            raise ConfigError(f"a 1-class (sigmoid) model takes 1 class name (or background + 1), got {names}")
        return names
    names = names or tuple(f"class_{i}" for i in range(classes))
    if len(names) != classes:
        raise ConfigError(f"{len(names)} class names for {classes} classes: {names}")
    return names


def _normalization(mean, std, scale) -> Normalization:
    if (mean is None) != (std is None):
        raise ConfigError("give both mean and std for meanstd normalization, or neither")
    if mean is not None and scale is not None:
        raise ConfigError("give either mean/std or scale, not both")
    if mean is not None:
        return Normalization(kind="meanstd", mean=tuple(map(float, mean)), std=tuple(map(float, std)))
    if scale is not None:
        return Normalization(kind="scale", factor=float(scale))
    return Normalization()


def parse_color(value: str | Iterable[int]) -> tuple[int, int, int]:
    """'#rrggbb' (or 'rrggbb') or an (r, g, b) triple -> (r, g, b) of 0..255 ints."""
    if isinstance(value, str):
        text = value.lstrip("#")
        try:
            if len(text) != 6:
                raise ValueError
            return tuple(int(text[i:i + 2], 16) for i in (0, 2, 4))  # type: ignore[return-value]
        except ValueError:
            raise ConfigError(f"colour {value!r} is not '#rrggbb'") from None
    rgb = tuple(int(c) for c in value)
    if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
        raise ConfigError(f"colour {rgb} is not an (r, g, b) triple of 0..255")
    return rgb  # type: ignore[return-value]


from .info import describe  # noqa: E402 - re-exported: models.checkpoint.describe
