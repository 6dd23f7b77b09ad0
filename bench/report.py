"""The benchmarks' printout: every precision side by side, in-round ratios, medians against the targets.

A ratio is only taken between measurements of the same round (seconds apart), never across
rounds, so load that comes and goes on a shared machine spreads the rounds instead of
biasing one figure; the medians are over rounds.
"""

from __future__ import annotations

from collections.abc import Sequence

# Issue 14's targets (on an AMX/AVX512-BF16 CPU; the speed-up one on an idle machine).
E2E_VS_MODEL = 0.9      # end-to-end >= 0.9 x model-only at the same precision
E2E_VS_MONAI = 1.0      # end-to-end (from disk) >= 1.0 x MONAI (input already in memory)
SPEEDUP_SHARE = 0.8     # end-to-end speed-up (auto vs fp32) >= 0.8 x the model-only speed-up
SPEEDUP = 2.5           # end-to-end speed-up (auto vs fp32) >= 2.5 x on an idle machine


def median(values: Sequence[float]) -> float:
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])


def label(p: str, facts: dict) -> str:
    """'fp32' or 'auto = bf16' (what ``auto`` resolved to)."""
    used = facts.get("precision", p)
    return p if used == p else f"{p} = {used}"


def _rate(amount: float, seconds: float | None, unit: str) -> str:
    return "-" if seconds is None else f"{amount / seconds:8.2f} {unit}/s ({seconds:6.1f} s)"


def _ok(value: float, target: float) -> str:
    return "ok" if value >= target else "BELOW"


def print_rounds(unit: str, amount: float, rounds: list[dict[str, dict]]) -> None:
    """Each round: model-only, end-to-end and MONAI rates of every precision, side by side."""
    precisions = list(rounds[0])
    heads = [label(p, rounds[0][p]["result"]["facts"]) for p in precisions]
    for i, one in enumerate(rounds, 1):
        loads = " / ".join(f"{one[p]['load']:.1f}" for p in precisions)
        print(f"round {i}/{len(rounds)} (load average before each precision: {loads})")
        print(f"  {'':18}" + "".join(f"{h:>30}" for h in heads))
        for name, key in (("model-only", "model_s"), ("end-to-end", "e2e_s"), ("MONAI in memory", "monai_s")):
            print(f"  {name:18}" + "".join(f"{_rate(amount, one[p][key], unit):>30}" for p in precisions))


def print_summary(rounds: list[dict[str, dict]]) -> None:
    """Medians over rounds of the in-round ratios, each next to its target."""
    precisions = list(rounds[0])
    heads = {p: label(p, rounds[0][p]["result"]["facts"]) for p in precisions}
    n = len(rounds)
    print(f"ratios, median of {n} round(s), each taken within one round:")
    for p in precisions:
        r = median([one[p]["model_s"] / one[p]["e2e_s"] for one in rounds])
        print(f"  end-to-end / model-only        {heads[p]:>12}: {r:6.3f}   target >= {E2E_VS_MODEL} {_ok(r, E2E_VS_MODEL)}")
    for p in precisions:
        if rounds[0][p]["monai_s"] is None:
            continue
        r = median([one[p]["monai_s"] / one[p]["e2e_s"] for one in rounds])
        print(f"  end-to-end vs MONAI in memory  {heads[p]:>12}: {r:6.3f}x  (MONAI s / end-to-end s) "
              f"target >= {E2E_VS_MONAI} {_ok(r, E2E_VS_MONAI)}")
    if "fp32" not in precisions:
        return
    for p in precisions:
        if p == "fp32" or heads[p] in ("auto = fp32",):
            continue
        mo = [one["fp32"]["model_s"] / one[p]["model_s"] for one in rounds]
        e2e = [one["fp32"]["e2e_s"] / one[p]["e2e_s"] for one in rounds]
        share = median([e / m for e, m in zip(e2e, mo)])
        print(f"  speed-up {heads[p]} vs fp32: model-only {median(mo):.2f}x, end-to-end {median(e2e):.2f}x "
              f"(target >= {SPEEDUP}x on an idle machine: {_ok(median(e2e), SPEEDUP)})")
        print(f"  end-to-end speed-up / model-only speed-up: {share:.3f}   target >= {SPEEDUP_SHARE} "
              f"{_ok(share, SPEEDUP_SHARE)}")


def print_peaks(rounds: list[dict[str, dict]]) -> None:
    peaks = {p: max(one[p]["result"]["peak_rss_mb"] for one in rounds) for p in rounds[0]}
    print("peak RSS (end-to-end process): " + ", ".join(f"{p} {v:.0f} MiB" for p, v in peaks.items()))
