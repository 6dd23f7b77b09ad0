"""Prefect flow for ``segpipe train``: the same training, observable in the Prefect UI.

Thin by design: one task trains (``models.train.train``) and returns paths, one task
scores the checkpoint on extra held-out data if given. Tasks pass paths, never arrays or
models (a flow keeps every task result in memory until it ends).
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task


@task(name="train-model", retries=0)
def train_task(config: dict[str, Any]) -> dict[str, str | float | int | None]:
    from models.train import make_config, train

    logger = get_run_logger()
    cfg = make_config(**config)
    last = {"step": 0}

    def progress(p: Any) -> None:
        if p.step - last["step"] >= max(1, p.total_steps // 20):
            last["step"] = p.step
            logger.info("step %d/%d loss %.4f lr %.2e %.1f tiles/s", p.step, p.total_steps, p.loss, p.lr,
                        p.tiles_per_s)

    def on_epoch(r: Any) -> None:
        logger.info("epoch %d: loss %.4f, val mean IoU %s%s", r.epoch, r.train_loss, r.val_mean_iou,
                    " (best)" if r.improved else "")

    result = train(cfg, progress=progress, on_epoch=on_epoch)
    return {"checkpoint": str(result.checkpoint), "card": str(result.card_md), "state": str(result.state),
            "best_mean_iou": result.best_mean_iou, "steps": result.steps_done}


@task(name="evaluate-model", retries=0)
def evaluate_task(checkpoint: str, data: str, device: str = "auto") -> float:
    from models.train import evaluate

    return float(evaluate(checkpoint, data, device=device)["mean_iou"])


@flow(name="segpipe-train")
def train_flow(data: str, out: str, test: str | None = None, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train on ``data`` into ``out``; ``options`` are :class:`models.train.TrainConfig` fields
    (e.g. ``{"epochs": 5, "encoder": "resnet18"}``). With ``test``, also score the result there."""
    options = dict(options or {})
    result = train_task({"data": data, "out": out, **options})
    if test:
        result["test_mean_iou"] = evaluate_task(result["checkpoint"], test, options.get("device", "auto"))
    get_run_logger().info("model %s, card %s", result["checkpoint"], result["card"])
    return result


__all__ = ["evaluate_task", "train_flow", "train_task"]
