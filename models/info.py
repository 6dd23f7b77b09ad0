"""``segpipe model info``: a checkpoint described in a few lines a reviewer can read."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline.spec import ModelSpec, Normalization

from .integrity import DIGEST_KEY
from .unet import count_parameters


def describe(item: Any, sha256: str | None = None) -> str:
    """A human-readable multi-line summary of a checkpoint (``segpipe model info``)."""
    if isinstance(item, Mapping):
        meta, title, verified = dict(item), "(metadata)", None
        n_params = meta.get("architecture", {}).get("num_parameters")
    else:  # a LoadedModel (not imported here: models.checkpoint imports this module)
        meta, sha256, title, verified = item.metadata, item.sha256, str(item.path), item.weights_verified
        n_params = count_parameters(item.module)
    arch, prov = meta["architecture"], meta.get("provenance", {})
    spec = ModelSpec.from_dict(meta["spec"])
    norm = spec.normalization
    lines = [
        f"segpipe checkpoint {title}",
        f"  sha256         {sha256 or '-'}",
        f"  weights        {_describe_digest(meta.get(DIGEST_KEY), verified)}",
        f"  format         {meta['format_version']}",
        f"  network        {arch['arch']} / {arch['encoder']}"
        + (f", {n_params:,} parameters" if n_params else "")
        + (f", kwargs {arch['kwargs']}" if arch.get("kwargs") else ""),
        f"  input          {spec.in_channels} channels = bands {list(spec.bands)} x context {spec.context}",
        f"  normalization  {_describe_norm(norm)}",
        f"  output         {spec.activation}, {spec.out_channels} channel(s), {spec.num_classes} classes:",
        *(
            f"    {i:>3} {name:<20} #{r:02x}{g:02x}{b:02x}"
            for i, (name, (r, g, b)) in enumerate(zip(spec.class_names, spec.colors()))
        ),
        f"  tiling         tile {spec.tile} px, overlap {spec.overlap} px",
        f"  created        {prov.get('created', '-')} by segpipe {prov.get('segpipe_version', '-')} "
        f"(torch {prov.get('torch_version', '-')}, smp {prov.get('smp_version', '-')})",
        f"  source         {_describe_source(prov.get('source'))}",
    ]
    if prov.get("notes"):
        lines.append(f"  notes          {prov['notes']}")
    if meta.get("training"):
        lines.append(f"  training       {', '.join(sorted(meta['training']))}")
    return "\n".join(lines)


def _describe_norm(norm: Normalization) -> str:
    if norm.kind == "meanstd":
        return f"meanstd mean={list(norm.mean)} std={list(norm.std)}"
    if norm.kind == "scale":
        return f"scale x * {norm.factor:g} + {norm.offset:g}"
    if norm.kind in ("percentile", "zscore"):
        return f"{norm.kind} {norm.low:g}..{norm.high:g} %" + (" (nonzero mask)" if norm.nonzero else "")
    if norm.kind == "ct_window":
        return f"ct_window [{norm.window_low:g}, {norm.window_high:g}]"
    return norm.kind


def _describe_source(source: Any) -> str:
    if not isinstance(source, Mapping):
        return str(source or "-")
    if source.get("kind") == "imported":
        return f"imported from {source.get('file')} (sha256 {source.get('sha256')})"
    return ", ".join(f"{k}={v}" for k, v in source.items())


def _describe_digest(digest: Any, verified: bool | None) -> str:
    if digest is None:
        return "no digest stored (written before segpipe kept one): the weights cannot be verified"
    state = "verified on load" if verified else "not checked (metadata only)"
    return f"sha256 {digest} ({state})"
