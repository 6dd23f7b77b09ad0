"""Build segmentation networks (smp U-Net and friends) without ever downloading anything.

The network is an encoder-decoder: a ResNet encoder (its residual blocks, y = x + F(x),
let gradients reach the first layers of a deep network) down-samples the tile 5 times
(stride 32, see ``pipeline.spec.MODEL_STRIDE``), and the U-Net decoder up-samples it back,
joining each encoder stage through a skip connection so fine edges survive.

Pretrained encoder weights come only from a local file (a torchvision/timm ResNet state
dict). smp would fetch ``encoder_weights="imagenet"`` from the Hugging Face hub; segpipe
runs on machines without internet and must never try, so it always passes ``None`` to smp.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path

import segmentation_models_pytorch as smp
import torch

from pipeline.errors import CheckpointError, ConfigError

log = logging.getLogger(__name__)

# Keys of an ImageNet classifier's head; an encoder has no head, so these are dropped.
HEAD_PREFIXES = ("fc.", "classifier.", "head.", "last_linear.")
# Prefixes that training wrappers put in front of every key (DataParallel, Lightning, ...).
WRAPPER_PREFIXES = ("module.", "model.")
# Containers that training scripts nest the weights in.
NESTING_KEYS = ("state_dict", "model")


def build_model(
    arch: str = "Unet",
    encoder: str = "resnet34",
    in_channels: int = 3,
    out_channels: int = 2,
    encoder_weights: str | Path | None = None,
    **arch_kwargs,
) -> torch.nn.Module:
    """Build an smp network returning logits; optionally load local encoder weights.

    The network returns logits: the engine applies ``ModelSpec.activation`` itself, so an
    ``activation`` argument (which would apply it twice) is refused.

    Args:
        arch: smp architecture name ("Unet", "UnetPlusPlus", "FPN", ...; any case).
        encoder: smp encoder name. resnet18/34/50/101 are the tested ones.
        in_channels: channels of the model input (bands x context).
        out_channels: 1 for a sigmoid binary model, else one per class.
        encoder_weights: None for random initialisation, or the path of a local ResNet state
            dict (.pth/.pt read with ``weights_only=True``, or .safetensors). Its first
            convolution is adapted to ``in_channels`` as smp does for its own weights.
        **arch_kwargs: passed to the smp architecture (e.g. ``decoder_attention_type``).

    Raises:
        CheckpointError: ``encoder_weights`` is not an existing file, or does not fit.
        ConfigError: unknown architecture or encoder, or an ``activation`` argument.
    """
    if arch_kwargs.get("activation") is not None:
        raise ConfigError(
            f"activation={arch_kwargs['activation']!r} given to the network; it must return logits "
            "because the engine applies the spec's activation. Drop the argument."
        )
    weights_file = _weights_file(encoder_weights)
    try:
        model = smp.create_model(
            arch, encoder_name=encoder, encoder_weights=None,
            in_channels=in_channels, classes=out_channels, **arch_kwargs,
        )
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise ConfigError(
            f"cannot build {arch} with encoder {encoder!r} ({in_channels} in, {out_channels} out): {exc}"
        ) from exc
    if weights_file is not None:
        load_encoder_weights(model, weights_file, in_channels)
    return model


def _weights_file(encoder_weights: str | Path | None) -> Path | None:
    if encoder_weights is None:
        return None
    path = Path(encoder_weights).expanduser()
    if not path.is_file():
        raise CheckpointError(
            f"encoder weights {str(encoder_weights)!r} is not an existing file; segpipe never downloads "
            "weights (no 'imagenet' from the hub). Pass the path of a local ResNet state dict "
            "(.pth or .safetensors), or None for random initialisation."
        )
    return path


def load_encoder_weights(model: torch.nn.Module, path: Path, in_channels: int) -> None:
    """Load a torchvision/timm classifier state dict into ``model.encoder``.

    Every encoder parameter must be in the file (a missing one would silently stay random);
    the classifier head is dropped. The first convolution's 3 RGB kernels are adapted to
    ``in_channels`` the way smp adapts its pretrained weights.
    """
    encoder = model.encoder
    expected = encoder.state_dict()
    state = pick_prefix(read_state_dict(path), expected.keys())
    state = {k: v for k, v in state.items() if not k.startswith(HEAD_PREFIXES)}
    for key, tensor in state.items():
        if key in expected and _is_rgb_kernel_for(tensor, expected[key].shape, in_channels):
            state[key] = adapt_first_conv(tensor, in_channels)
    # Old files lack BatchNorm's step counter; it only matters for momentum=None.
    check_state_dict(state, expected, path, optional=("num_batches_tracked",))
    torch.nn.Module.load_state_dict(encoder, state, strict=False)
    log.info("loaded encoder weights from %s (%d tensors, %d input channels)", path, len(state), in_channels)


def adapt_first_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Fit an RGB (3-channel) conv kernel to N input channels, as smp's ``patch_first_conv``.

    One channel sums the RGB kernels (a grey image is R=G=B); N channels cycle through
    R, G, B and scale by 3/N so the first layer's activations keep their magnitude.
    """
    if in_channels == 1:
        return weight.sum(1, keepdim=True)
    cycled = weight[:, [i % 3 for i in range(in_channels)]]
    return (cycled * (3 / in_channels)).contiguous()


def _is_rgb_kernel_for(weight: torch.Tensor, shape: torch.Size, in_channels: int) -> bool:
    """True for the first conv's RGB kernel where the encoder expects ``in_channels`` instead."""
    return (
        in_channels != 3 and weight.ndim == 4 and len(shape) == 4 and weight.shape[1] == 3
        and shape[1] == in_channels and weight.shape[0] == shape[0] and weight.shape[2:] == shape[2:]
    )


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a plain state dict, never running pickled code.

    Accepts .safetensors, or a torch.save file read with ``weights_only=True``; weights
    nested under "state_dict" or "model" (training checkpoints) are unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: state dict file not found")
    try:
        if _is_safetensors(path):
            from safetensors.torch import load_file

            obj = load_file(path, device="cpu")
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch/safetensors raise many types for a bad file
        raise CheckpointError(
            f"{path}: cannot read as a weights-only state dict ({type(exc).__name__}: {_first_line(exc)}); "
            "save it with torch.save(model.state_dict(), ...) or as .safetensors"
        ) from exc
    while isinstance(obj, Mapping) and not _is_tensor_dict(obj):
        inner = next((obj[k] for k in NESTING_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping) or not obj or not _is_tensor_dict(obj):
        raise CheckpointError(
            f"{path}: holds no state dict (expected a dict of name -> tensor, possibly under "
            f"{' or '.join(repr(k) for k in NESTING_KEYS)}); got {type(obj).__name__}"
        )
    return dict(obj)


def pick_prefix(state: dict[str, torch.Tensor], expected: Iterable[str]) -> dict[str, torch.Tensor]:
    """Strip wrapper prefixes ("module.", "model.") when that makes more keys match ``expected``."""
    expected = set(expected)
    best = state
    candidate = state
    while True:
        prefix = next((p for p in WRAPPER_PREFIXES if all(k.startswith(p) for k in candidate)), None)
        if prefix is None:
            return best
        candidate = {k[len(prefix):]: v for k, v in candidate.items()}
        if len(expected & candidate.keys()) > len(expected & best.keys()):
            best = candidate


def check_state_dict(
    state: Mapping[str, torch.Tensor],
    expected: Mapping[str, torch.Tensor],
    path: Path,
    optional: tuple[str, ...] = (),
) -> None:
    """Raise a one-line CheckpointError naming a few missing, unexpected or misshapen keys."""
    missing = [k for k in expected if k not in state and not k.endswith(optional)]
    unexpected = [k for k in state if k not in expected]
    misshapen = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items() if k in state and state[k].shape != v.shape
    ]
    problems = [
        f"{len(items)} {what} (e.g. {', '.join(items[:3])})"
        for what, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatches", misshapen))
        if items
    ]
    if problems:
        raise CheckpointError(
            f"{path}: weights do not match the architecture: {'; '.join(problems)}. "
            "Check encoder, in_channels and classes."
        )


def _is_tensor_dict(obj: Mapping) -> bool:
    return bool(obj) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def _is_safetensors(path: Path) -> bool:
    """A safetensors file starts with an 8-byte header length, then the JSON header's '{'."""
    if path.suffix == ".safetensors":
        return True
    with path.open("rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else ""


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
