"""``segpipe model import|info``: wrap foreign weights, inspect checkpoints.

The top-level CLI (``flows/cli.py``) calls :func:`add_model_commands` on its subparsers and
then ``args.func(args)``, which returns an exit code. Errors are raised as segpipe errors;
the top-level CLI prints them as one ``segpipe: error: ...`` line.
"""

from __future__ import annotations

import argparse
import json

# torch and smp are imported by the commands, not to build their parsers (``segpipe --help``).


def add_model_commands(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``model`` with its ``import`` and ``info`` subcommands; return the ``model`` parser."""
    model = subparsers.add_parser("model", help="import and inspect model checkpoints")
    sub = model.add_subparsers(dest="model_command", required=True, metavar="{import,info}")

    imp = sub.add_parser(
        "import", help="wrap a plain smp state dict (.pth/.pt/.safetensors) into a segpipe checkpoint",
        description="Load a state dict trained elsewhere into the network it describes (strictly) "
        "and write a self-describing .safetensors checkpoint.",
    )
    imp.add_argument("state_dict", help="weights file: torch.save(state_dict) .pth/.pt, or .safetensors")
    imp.add_argument("--out", required=True, help="checkpoint to write (.safetensors)")
    imp.add_argument("--arch", default="Unet", help="smp architecture (default: Unet)")
    imp.add_argument("--encoder", default="resnet34", help="smp encoder (default: resnet34)")
    imp.add_argument("--in-channels", type=int, required=True, help="network input channels")
    imp.add_argument("--classes", type=int, required=True, help="1 = sigmoid binary; K > 1 = softmax over K")
    imp.add_argument("--class-names", nargs="+", metavar="NAME", help="one name per class (background first)")
    imp.add_argument("--class-colors", nargs="+", metavar="#RRGGBB", help="one colour per class")
    imp.add_argument("--bands", nargs="+", type=int, metavar="N", help="1-based source bands (default 1..C)")
    imp.add_argument("--context", type=int, default=1, help="2.5D slices stacked as channels (default 1)")
    imp.add_argument("--mean", nargs="+", type=float, help="per-band mean (meanstd normalization)")
    imp.add_argument("--std", nargs="+", type=float, help="per-band std (meanstd normalization)")
    imp.add_argument("--scale", type=float, help="scale normalization factor, e.g. 0.0001")
    imp.add_argument("--tile", type=int, default=512, help="recommended tile, px (default 512)")
    imp.add_argument("--overlap", type=int, default=64, help="recommended overlap, px (default 64)")
    imp.add_argument("--notes", default="", help="free-form provenance notes")
    imp.set_defaults(func=run_import)

    info = sub.add_parser("info", help="describe a segpipe checkpoint")
    info.add_argument("checkpoint", help="segpipe .safetensors checkpoint")
    info.add_argument("--json", action="store_true", help="print the stored metadata JSON instead")
    info.set_defaults(func=run_info)
    return model


def run_import(args: argparse.Namespace) -> int:
    from .checkpoint import file_sha256, import_state_dict

    out = import_state_dict(
        args.state_dict, args.out, encoder=args.encoder, arch=args.arch,
        in_channels=args.in_channels, classes=args.classes, class_names=args.class_names,
        class_colors=args.class_colors, bands=args.bands, mean=args.mean, std=args.std,
        scale=args.scale, tile=args.tile, overlap=args.overlap, context=args.context, notes=args.notes,
    )
    print(f"{out}  sha256 {file_sha256(out)}")
    return 0


def run_info(args: argparse.Namespace) -> int:
    from .checkpoint import load_checkpoint
    from .info import describe

    # Load fully (not only the header): info then also proves the weights fit the network
    # and match their digest.
    loaded = load_checkpoint(args.checkpoint)
    if args.json:
        print(json.dumps(loaded.metadata, indent=2))
    else:
        print(describe(loaded))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """The hook ``flows/cli.py`` calls on every command module (COMMAND_MODULES)."""
    add_model_commands(subparsers)
