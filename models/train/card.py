"""Model card: what the model is, what it was trained on, and how well it does, next to it.

``model.safetensors`` gets ``model.card.json`` (machine-readable, the whole record) and
``model.card.md`` (for people). Scores come from held-out inputs segmented by the
production engine (``validate.py``), not from training tiles.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.files import write_text_atomic


def card_paths(checkpoint: str | Path) -> tuple[Path, Path]:
    """(markdown, json) paths next to ``checkpoint``."""
    p = Path(checkpoint)
    base = p.name[: -len(".safetensors")] if p.name.endswith(".safetensors") else p.name
    return p.with_name(f"{base}.card.md"), p.with_name(f"{base}.card.json")


def write_card(checkpoint: str | Path, doc: dict[str, Any]) -> tuple[Path, Path]:
    md_path, json_path = card_paths(checkpoint)
    write_text_atomic(json_path, json.dumps(doc, indent=2, default=str) + "\n")
    write_text_atomic(md_path, render_markdown(doc))
    return md_path, json_path


def read_card(checkpoint: str | Path) -> dict[str, Any]:
    return json.loads(card_paths(checkpoint)[1].read_text())


def _fmt(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f}"


def _score_table(scores: dict[str, Any]) -> list[str]:
    lines = ["| class | IoU | Dice | labelled pixels |", "| --- | ---: | ---: | ---: |"]
    for name, s in scores["per_class"].items():
        lines.append(f"| {name} | {_fmt(s['iou'])} | {_fmt(s['dice'])} | {s['support']:,} |")
    lines.append(f"| **mean** | **{_fmt(scores['mean_iou'])}** | **{_fmt(scores['mean_dice'])}** | |")
    return lines


def render_markdown(doc: dict[str, Any]) -> str:
    m, t, d = doc["model"], doc["training"], doc["data"]
    spec = m["spec"]
    norm = spec["normalization"]
    lines = [
        f"# Model card: {Path(m['path']).name}",
        "",
        f"- **Network**: {m['arch']} with a {m['encoder']} encoder ({m.get('num_parameters', 0):,} parameters), "
        f"arguments {m.get('arch_kwargs') or {}}",
        f"- **sha256**: `{m.get('sha256', '-')}`",
        f"- **Input**: {spec['in_channels']} channels = bands {spec['bands']} x context {spec['context']}; "
        f"normalisation `{norm['kind']}`" + (f" mean {_round(norm['mean'])} std {_round(norm['std'])}"
                                            if norm["kind"] == "meanstd" else ""),
        f"- **Classes**: {', '.join(f'{i} {n}' for i, n in enumerate(spec['class_names']))}",
        f"- **Recommended tiling**: tile {spec['tile']} px, overlap {spec['overlap']} px",
        f"- **Data**: {d['kind']}s, {len(d['train'])} for training, {len(d['val'])} held out "
        f"({d['source']})",
        f"- **Training**: {t['steps_done']} steps of batch {t['batch_size']} x {t['tile']} px tiles, "
        f"{t['epochs_done']} epoch(s), best epoch {t.get('best_epoch')}, {t['wall_s']:.0f} s on {t['device']}"
        + (f" ({t['precision']}, {t.get('precision_reason')})" if t.get("precision") else "")
        + (" (stopped early)" if t.get("stopped_early") else ""),
        "",
    ]
    for key, title in (("validation", "Held-out validation"), ("test", "Fresh held-out test data")):
        if doc.get(key):
            v = doc[key]
            lines += [f"## {title} (through the production engine)", "",
                      f"{len(v.get('per_input', {}))} input(s), {v.get('engine', '')}. "
                      f"Pixel accuracy {_fmt(v['pixel_accuracy'])}.", "", *_score_table(v), ""]
    if not doc.get("validation"):
        lines += ["## Validation", "", "No held-out data was given: this model is **unvalidated**.", ""]
    if doc.get("history"):
        lines += ["## History", "", "| epoch | step | train loss | val mean IoU |", "| ---: | ---: | ---: | ---: |"]
        lines += [f"| {h['epoch']} | {h['step']} | {h['train_loss']:.4f} | {_fmt(h.get('val_mean_iou'))} |"
                  for h in doc["history"]]
        lines.append("")
    if doc.get("notes"):
        lines += ["## Notes", "", doc["notes"], ""]
    return "\n".join(lines)


def _round(v: Any) -> list[float]:
    return [round(float(x), 4) for x in v]
