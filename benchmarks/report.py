"""Markdown tables, targets and PNG plots from run_all.py's rows.

    write_report(out_dir, rows, machine, rates, models)
writes latency.json, latency.md, machine.md and four PNGs into out_dir.
"""
from __future__ import annotations

import json
import math
import os
import time
from typing import Dict, List, Optional

PEERS = ["torch", "pyloop", "ct2_f32", "ct2_int8"]
LABELS = {"ltg": "ltg_engine", "ltg_int8": "ltg_engine int8", "pyloop": "Python search loop (same ONNX)", "torch": "PyTorch eager",
          "ct2_f32": "CTranslate2 float32", "ct2_int8": "CTranslate2 int8"}
COLORS = {"ltg": "tab:blue", "ltg_int8": "tab:cyan", "pyloop": "tab:orange", "torch": "tab:red", "ct2_f32": "tab:green",
          "ct2_int8": "tab:olive"}


def ratio(row: dict, peer: str) -> Optional[float]:
    """ltg tokens/s over the peer's; > 1 means ltg_engine is faster."""
    e = row["engines"]
    if peer not in e:
        return None
    return e["ltg"]["tokens_per_s"] / e[peer]["tokens_per_s"]


def step_ratio(row: dict, peer: str) -> Optional[float]:
    """Peer's mean decoder-step time over ltg's: the decode loop alone, encoder excluded."""
    e = row["engines"]
    if peer not in e or not e[peer]["per_token_ms"]:
        return None
    return e[peer]["per_token_ms"]["mean"] / e["ltg"]["per_token_ms"]["mean"]


def int8_cell(row: dict) -> str:
    """ltg_engine int8 tokens/s, and its ratio to CTranslate2 int8 where measured."""
    e = row["engines"]
    if "ltg_int8" not in e:
        return "–"
    tps = e["ltg_int8"]["tokens_per_s"]
    return f"{tps:.0f}" + (f" ({tps / e['ct2_int8']['tokens_per_s']:.2f}x)" if "ct2_int8" in e else "")


def _f(x, fmt="{:.2f}") -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else fmt.format(x)


def config_name(r: dict) -> str:
    return f"{r['arch']} S={r['context']} B={r['batch']} K={r['beams']}"


# ---------------------------------------------------------------- markdown

def headline_table(rows: List[dict]) -> List[str]:
    out = ["| arch | context | batch | beams | ltg tok/s | vs PyTorch | vs PyTorch, per step | vs Python loop "
           "| vs CT2 f32 | vs CT2 int8 | ltg int8 tok/s (vs CT2 int8) | overhead median (min) | per-token p50 ms "
           "| floor ms | achieved/floor |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ltg = r["engines"]["ltg"]
        p50 = ltg["per_token_ms"]["p50"] if ltg["per_token_ms"] else None
        mean = ltg["per_token_ms"]["mean"] if ltg["per_token_ms"] else None
        out.append(f"| {r['arch']} | {r['context']} | {r['batch']} | {r['beams']} | {ltg['tokens_per_s']:.0f} | "
                   + f"{_f(ratio(r, 'torch'), '{:.2f}x')} | {_f(step_ratio(r, 'torch'), '{:.2f}x')} | "
                   + " | ".join(_f(ratio(r, p), "{:.2f}x") for p in PEERS[1:]) + f" | {int8_cell(r)}"
                   + f" | {_f(ltg['overhead_share'], '{:.1%}')} ({_f(ltg.get('overhead_share_min'), '{:.1%}')}) | {_f(p50)} | {r['floor_ms_per_token']:.2f} | "
                   f"{_f(mean / r['floor_ms_per_token'] if mean else None, '{:.1f}')} |")
    return out


def engine_table(rows: List[dict]) -> List[str]:
    out = ["| arch | context | batch | beams | engine | tok/s | first token ms | per-token p50 / p90 / p99 ms "
           "| encoder ms | overhead | run s (median) |",
           "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        for name, e in r["engines"].items():
            pt = e["per_token_ms"]
            pts = f"{pt['p50']:.2f} / {pt['p90']:.2f} / {pt['p99']:.2f}" if pt else "–"
            out.append(f"| {r['arch']} | {r['context']} | {r['batch']} | {r['beams']} | {LABELS[name]} | "
                       f"{e['tokens_per_s']:.0f} | {_f(e['first_token_ms'], '{:.1f}')} | {pts} | "
                       f"{_f(e['encoder_ms'], '{:.1f}')} | {_f(e['overhead_share'], '{:.1%}')} | {e['seconds_per_run']:.3f} |")
    return out


def context_growth(rows: List[dict]) -> List[dict]:
    """Per-token cost exponent between consecutive contexts: d log(ms) / d log(S) (1.0 = linear)."""
    out = []
    for arch in sorted({r["arch"] for r in rows}):
        for beams in (1, 4):
            series = sorted((r for r in rows if r["arch"] == arch and r["batch"] == 1 and r["beams"] == beams),
                            key=lambda r: r["context"])
            for a, b in zip(series, series[1:]):
                ta, tb = a["engines"]["ltg"]["per_token_ms"]["mean"], b["engines"]["ltg"]["per_token_ms"]["mean"]
                out.append({"arch": arch, "beams": beams, "from": a["context"], "to": b["context"],
                            "ms_from": ta, "ms_to": tb,
                            "exponent": math.log(tb / ta) / math.log(b["context"] / a["context"])})
    return out


def targets(rows: List[dict], growth: List[dict]) -> List[str]:
    b1 = [r for r in rows if r["batch"] == 1]
    lines = ["| target | measured | verdict |", "|---|---|---|"]

    def add(name, values, goal, higher_better=True, fmt="{:.2f}x"):
        if not values:
            lines.append(f"| {name} | not measured | – |")
            return
        worst_cfg, worst = min(values, key=lambda v: v[1]) if higher_better else max(values, key=lambda v: v[1])
        ok = worst >= goal if higher_better else worst <= goal
        span = f"{fmt.format(min(v for _, v in values))} – {fmt.format(max(v for _, v in values))}"
        verdict = "met" if ok else (f"missed: worst {fmt.format(worst)} at {worst_cfg} "
                                    f"({'short by' if higher_better else 'over by'} {fmt.format(abs(goal - worst))})")
        lines.append(f"| {name} | {span} over {len(values)} configs | {verdict} |")

    add(">= 5x PyTorch eager tokens/s at batch 1",
        [(config_name(r), ratio(r, "torch")) for r in b1 if ratio(r, "torch")], 5.0)
    add(">= 5x PyTorch eager at batch 1, decode steps only (encoder excluded)",
        [(config_name(r), step_ratio(r, "torch")) for r in b1 if step_ratio(r, "torch")], 5.0)
    add("engine overhead <= 2% with beam 4",
        [(config_name(r), r["engines"]["ltg"]["overhead_share"]) for r in rows if r["beams"] == 4], 0.02,
        higher_better=False, fmt="{:.1%}")
    add("engine overhead <= 2% with beam 4, least-disturbed run",
        [(config_name(r), r["engines"]["ltg"]["overhead_share_min"]) for r in rows if r["beams"] == 4], 0.02,
        higher_better=False, fmt="{:.1%}")
    add(">= 1.0x CTranslate2 float32 (same weights)",
        [(config_name(r), ratio(r, "ct2_f32")) for r in rows if ratio(r, "ct2_f32")], 1.0)
    add("per-token cost grows no faster than linearly in context (exponent <= 1)",
        [(f"{g['arch']} K={g['beams']} {g['from']}->{g['to']}", g["exponent"]) for g in growth], 1.0,
        higher_better=False, fmt="{:.2f}")
    return lines


def write_markdown(path: str, rows, machine, rates, models, quick: bool, tiny: bool) -> None:
    growth = context_growth(rows)
    L = ["# Latency: ltg_engine side by side with PyTorch, a Python loop and CTranslate2", "",
         f"Generated by `python benchmarks/run_all.py{' --quick' if quick else ''}{' --tiny' if tiny else ''}` "
         f"finished {machine.get('finished') or time.strftime('%Y-%m-%d %H:%M')}, {machine['suite_seconds']:.0f} s. "
         f"Machine: {machine['cpu']}, {machine['logical_cpus']} cores, threads per engine: {machine['threads']}; load average "
         f"{machine['load_average_start'][0]:.2f} at start, {machine['load_average_end'][0]:.2f} at end "
         f"(shared machine: absolute times drift, ratios of alternated runs hold). Details: [machine.md](machine.md).",
         "",
         f"Every run generates exactly {rows[0]['new_tokens']} tokens per row (min_new_tokens = max_new_tokens) "
         "from random source ids of exactly `context` tokens. Engines alternate run by run after a warm-up; "
         "numbers are medians. Ratios are ltg_engine tokens/s over the peer's (> 1: ltg_engine faster).", ""]
    if quick or tiny:
        L += ["**Smoke run** (--quick/--tiny): too few repetitions/too small models for conclusions.", ""]
    L += ["## Models", ""]
    for arch, m in models.items():
        L.append(f"- {arch}: `{json.dumps(m.get('model_config', {}))}`")
    L += ["", "## Headline", "", *headline_table(rows), "",
          "vs PyTorch: tokens/s ratio of whole requests (encoder included: it dominates at long context); "
          "per step: PyTorch's mean decoder-step time over ltg_engine's. "
          "overhead: share of ltg_engine's wall time outside onnxruntime runs. floor: roofline time per "
          f"decoder step, max(FLOPs / {rates['gemm_gflops']:.1f} GFLOP/s, bytes / {rates['bandwidth_gbs']:.1f} GB/s) "
          "measured on this machine in the same run (numpy float32 matmul; numpy copy).", "",
          "## Targets", "", *targets(rows, growth), "",
          "What the profile shows and what would close each gap: [analysis.md](analysis.md).", "",
          "## Per-token cost vs context (ltg_engine, batch 1)", "",
          "| arch | beams | context | ms/token | exponent (1.0 = linear) |", "|---|---:|---|---|---:|"]
    for g in growth:
        L.append(f"| {g['arch']} | {g['beams']} | {g['from']} -> {g['to']} | {g['ms_from']:.2f} -> {g['ms_to']:.2f} "
                 f"| {g['exponent']:.2f} |")
    L += ["", "## Every engine", "", *engine_table(rows), "",
          "Plots: ![per-token latency vs context](latency_vs_context.png) ![tokens/s vs batch](tokens_per_s_vs_batch.png) "
          "![overhead](overhead.png) ![ltg_engine vs peers](vs_peers.png)", ""]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(L))


def write_machine(path: str, machine: dict, rates: dict) -> None:
    L = ["# Machine", "", "| | |", "|---|---|"]
    for k, v in machine.items():
        L.append(f"| {k} | {v if not isinstance(v, float) else f'{v:.2f}'} |")
    L += [f"| measured GEMM (numpy float32 1024^3) | {rates['gemm_gflops']:.1f} GFLOP/s |",
          f"| measured memory bandwidth (numpy copy, 256 MiB, read+write) | {rates['bandwidth_gbs']:.1f} GB/s |", ""]
    try:
        import ctranslate2
        import torch

        L += [f"torch {torch.__version__}, ctranslate2 {ctranslate2.__version__}", ""]
    except ImportError:
        pass
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(L))


# ---------------------------------------------------------------- plots

def write_plots(out_dir: str, rows: List[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    archs = sorted({r["arch"] for r in rows})
    _latency_vs_context(plt, out_dir, rows, archs)
    _tokens_vs_batch(plt, out_dir, rows, archs)
    _overhead(plt, out_dir, rows)
    _vs_peers(plt, out_dir, rows)


def _latency_vs_context(plt, out_dir, rows, archs):
    fig, axes = plt.subplots(1, len(archs), figsize=(6 * len(archs), 4.5), squeeze=False)
    for ax, arch in zip(axes[0], archs):
        for beams, style in ((1, "-"), (4, "--")):
            series = sorted((r for r in rows if r["arch"] == arch and r["batch"] == 1 and r["beams"] == beams),
                            key=lambda r: r["context"])
            if not series:
                continue
            xs = [r["context"] for r in series]
            for name in ("ltg", "ltg_int8", "pyloop", "torch"):
                pts = [(r["context"], r["engines"][name]["per_token_ms"]["mean"]) for r in series if name in r["engines"]]
                if pts:
                    ax.plot(*zip(*pts), style, marker="o", color=COLORS[name], label=f"{LABELS[name]}, beam {beams}")
            ax.plot(xs, [r["floor_ms_per_token"] for r in series], style, color="gray", label=f"roofline floor, beam {beams}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("context (source tokens)")
        ax.set_ylabel("ms per token (mean step time)")
        ax.set_title(f"{arch}, batch 1")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "latency_vs_context.png"), dpi=110)
    plt.close(fig)


def _tokens_vs_batch(plt, out_dir, rows, archs):
    fig, axes = plt.subplots(1, len(archs), figsize=(6 * len(archs), 4.5), squeeze=False)
    for ax, arch in zip(axes[0], archs):
        ctx = min(r["context"] for r in rows if r["arch"] == arch)
        sel = sorted((r for r in rows if r["arch"] == arch and r["context"] == ctx), key=lambda r: (r["beams"], r["batch"]))
        names = [n for n in ("ltg", "ltg_int8", "pyloop", "torch", "ct2_f32", "ct2_int8") if n in sel[0]["engines"]]
        width = 0.8 / len(names)
        for i, name in enumerate(names):
            ax.bar([j + i * width for j in range(len(sel))], [r["engines"][name]["tokens_per_s"] for r in sel],
                   width, color=COLORS[name], label=LABELS[name])
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(sel))])
        ax.set_xticklabels([f"batch {r['batch']}\nbeam {r['beams']}" for r in sel])
        ax.set_yscale("log")
        ax.set_ylabel("tokens/s (higher is better)")
        ax.set_title(f"{arch}, context {ctx}")
        ax.grid(True, axis="y", which="both", alpha=0.3)
        lo, hi = ax.get_ylim()
        ax.set_ylim(lo, hi * 4)                                  # room above the bars for the legend
        ax.legend(fontsize=7, loc="upper left", ncol=2)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "tokens_per_s_vs_batch.png"), dpi=110)
    plt.close(fig)


def _overhead(plt, out_dir, rows):
    fig, ax = plt.subplots(figsize=(max(6, 0.55 * len(rows)), 4.5))
    xs = range(len(rows))
    for off, name in ((-0.2, "ltg"), (0.2, "pyloop")):
        ax.bar([x + off for x in xs], [100 * (r["engines"].get(name, {}).get("overhead_share") or 0) for r in rows], 0.4,
               color=COLORS[name], label=LABELS[name])
    ax.axhline(2, color="black", lw=1, ls="--", label="2% target")
    ax.set_xticks(list(xs))
    ax.set_xticklabels([f"{r['arch'][:4]} S={r['context']}\nB={r['batch']} K={r['beams']}" for r in rows],
                       rotation=60, fontsize=7, ha="right")
    ax.set_ylabel("% of wall time outside onnxruntime")
    ax.set_yscale("symlog", linthresh=1)
    ax.set_title("engine overhead share")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "overhead.png"), dpi=110)
    plt.close(fig)


def _vs_peers(plt, out_dir, rows):
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(rows)), 4.5))
    peers = [p for p in PEERS if any(p in r["engines"] for r in rows)]
    width = 0.8 / len(peers)
    for i, peer in enumerate(peers):
        ax.bar([x + i * width for x in range(len(rows))], [ratio(r, peer) or 0 for r in rows], width,
               color=COLORS[peer], label=f"vs {LABELS[peer]}")
    ax.axhline(1, color="black", lw=1)
    ax.axhline(5, color="tab:red", lw=1, ls=":", label="5x (PyTorch target)")
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(rows))])
    ax.set_xticklabels([f"{r['arch'][:4]} S={r['context']}\nB={r['batch']} K={r['beams']}" for r in rows],
                       rotation=60, fontsize=7, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("ltg_engine tokens/s / peer tokens/s")
    ax.set_title("ltg_engine speed-up over each peer (> 1: faster)")
    ax.grid(True, axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "vs_peers.png"), dpi=110)
    plt.close(fig)


def write_report(out_dir: str, rows, machine, rates, models, quick: bool = False, tiny: bool = False) -> None:
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "latency.json"), "w", encoding="utf-8") as f:
        json.dump({"machine": machine, "machine_rates": rates, "models": models, "rows": rows}, f, indent=1)
        f.write("\n")
    write_markdown(os.path.join(out_dir, "latency.md"), rows, machine, rates, models, quick, tiny)
    write_machine(os.path.join(out_dir, "machine.md"), machine, rates)
    write_plots(out_dir, rows)
