"""Dice + cross-entropy (optionally focal) for multi-class segmentation with an ignore index.

Cross-entropy gives every pixel a gradient from the first step; soft Dice is computed per
class over the batch and averaged over classes present in the target, so a class covering
2 % of the pixels weighs as much as the background. Focal (gamma > 0) down-weights the
easy pixels of the cross-entropy term. Ignored pixels (IGNORE_INDEX) take no part.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .dataset import IGNORE_INDEX

_EPS = 1.0  # Dice smoothing, in pixels: keeps the loss finite for a class absent from batch and prediction


class SegLoss(torch.nn.Module):
    """``ce_weight * CE (or focal) + dice_weight * (1 - mean soft Dice)`` on logits (N, K, H, W)."""

    def __init__(self, num_classes: int, *, dice_weight: float = 1.0, ce_weight: float = 1.0,
                 focal_gamma: float = 0.0, ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        self.k, self.dice_weight, self.ce_weight = num_classes, dice_weight, ce_weight
        self.gamma, self.ignore_index = focal_gamma, ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        target = target.long()
        valid = target != self.ignore_index
        if not valid.any():
            return logits.sum() * 0.0  # keeps the graph; nothing to learn from this batch
        loss = logits.new_zeros(())
        if self.ce_weight > 0:
            loss = loss + self.ce_weight * self._ce(logits, target, valid)
        if self.dice_weight > 0:
            loss = loss + self.dice_weight * self._dice(logits, target, valid)
        return loss

    def _ce(self, logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        ce = F.cross_entropy(logits, target, ignore_index=self.ignore_index, reduction="none")
        if self.gamma > 0:
            pt = torch.exp(-ce)
            ce = (1 - pt) ** self.gamma * ce
        return ce[valid].mean()

    def _dice(self, logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(logits, dim=1) * valid[:, None]
        onehot = F.one_hot(torch.where(valid, target, 0), self.k).permute(0, 3, 1, 2).to(probs.dtype)
        onehot = onehot * valid[:, None]
        dims = (0, 2, 3)
        inter = (probs * onehot).sum(dims)
        denom = probs.sum(dims) + onehot.sum(dims)
        dice = (2 * inter + _EPS) / (denom + _EPS)
        present = onehot.sum(dims) > 0
        return 1.0 - dice[present].mean()
