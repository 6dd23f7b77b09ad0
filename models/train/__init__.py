"""Training the ResNet-U-Net on labelled scenes (GeoTIFF) and volumes (NIfTI).

    config.py    TrainConfig / AugmentConfig (pydantic, checked at the edge)
    dataset.py   pairs: manifest or images/ + labels/ folders, grid/geometry checks, reading
    stats.py     normalisation statistics from the training data, normalised planes
    volumes.py   volumes as 2D/2.5D slice planes, cut as the volume engine cuts them
    sampling.py  class-balanced random tiles, skipping tiles without labelled pixels
    augment.py   albumentations pipelines applied to image and mask together
    loss.py      Dice + cross-entropy (focal optional), ignore index 255
    loop.py      Trainer and train(): AdamW, cosine, bf16 on GPU, clipping, early stopping
    state.py     pickle-free training state for resume
    validate.py  held-out validation through the production engine
    metrics.py   confusion matrix, per-class IoU / Dice
    card.py      model card (markdown + JSON) next to the checkpoint
    evaluate.py  score a checkpoint on more data and add it to its card

Nothing here imports prefect (``flows/train_flow.py`` wraps :func:`train`).
"""

from .card import card_paths, read_card, write_card
from .config import AugmentConfig, TrainConfig, make_config
from .dataset import IGNORE_INDEX, Pair, check_scene_pair, check_volume_pair, find_pairs
from .evaluate import evaluate
from .loop import EpochReport, Trainer, TrainProgress, TrainResult, lr_at, train
from .state import load_state, state_path_for
from .validate import validate

__all__ = [
    "IGNORE_INDEX", "AugmentConfig", "EpochReport", "Pair", "TrainConfig", "TrainProgress", "TrainResult",
    "Trainer", "card_paths", "check_scene_pair", "check_volume_pair", "evaluate", "find_pairs", "load_state",
    "lr_at", "make_config", "read_card", "state_path_for", "train", "validate", "write_card",
]
