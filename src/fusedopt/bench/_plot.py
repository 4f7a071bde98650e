"""The figure of ``--plot``: throughput against size per kernel, with the measured ceiling
as a roofline; bars of time per call for the kernels with one size (multi, overhead, neighbour)."""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

from ._cases import FIXED, KERNEL_ORDER, KERNELS
from ._overhead import PAIRED
from ._peers import PEER_LABEL, PEERS

Row = Dict[str, Any]
COLORS = {"fusedopt": "C0", "ceiling": "k", "numpy": "C1", "torch": "C2", "deepspeed": "C3",
          "baseline": "C5"}


def _bar_items(kernel: str, krows: List[Row]) -> List[Tuple[str, float, str]]:
    """(label, ms per call, colour) per implementation and thread count."""
    items = []
    first = min(r["threads"] for r in krows)
    for r in sorted(krows, key=lambda r: r["threads"]):
        k = r["threads"]
        if kernel in PAIRED:
            parts = [(r["label"], r["fusedopt"], "fusedopt"),
                     (r["baseline"]["label"], r["baseline"], "baseline")]
        else:
            parts = [(name, part, name) for name, part in
                     [("ceiling", r["ceiling"]), ("fusedopt", r["fusedopt"])] +
                     list(r["peers"].items()) if name != "numpy" or k == first]
        items += [(f"{name}, {k}t" if kernel in PAIRED else f"{name}\n{k}t",
                   part["time_s"] * 1e3, COLORS.get(c, "C4")) for name, part, c in parts]
    return items


def _bars(ax: Any, kernel: str, krows: List[Row]) -> None:
    items = _bar_items(kernel, krows)
    ax.bar(range(len(items)), [v for _, v, _ in items], color=[c for _, _, c in items])
    ax.set_xticks(range(len(items)))
    slanted = kernel in PAIRED            # long labels
    ax.set_xticklabels([label for label, _, _ in items], fontsize=7,
                       rotation=30 if slanted else 0, ha="right" if slanted else "center")
    ax.set_ylabel(f"ms per {'call' if kernel in PAIRED else 'step'} (lower is better)")
    ax.set_yscale("log")
    ax.set_title(KERNELS[kernel]["label"], fontsize=10)


def _lines(ax: Any, kernel: str, krows: List[Row]) -> None:
    spec = KERNELS[kernel]
    key = "gbps" if spec["unit"] == "GB/s" else "melem_per_s"
    threads = sorted({r["threads"] for r in krows})
    styles = {1: "-", 2: "--"}
    for k in threads:
        ls = styles.get(k, ":")
        rk = sorted((r for r in krows if r["threads"] == k), key=lambda r: r["n"])
        ns = [r["n"] for r in rk]
        ax.plot(ns, [r["ceiling"][key] for r in rk], color=COLORS["ceiling"], ls=ls,
                lw=2.5, alpha=0.35, label=f"ceiling ({spec['pattern']} stream), {k}t")
        ax.plot(ns, [r["fusedopt"][key] for r in rk], color=COLORS["fusedopt"], ls=ls,
                marker="o", label=f"fusedopt, {k}t")
        for peer in PEERS:
            pts = [(r["n"], r["peers"][peer][key]) for r in rk if peer in r["peers"]]
            if not pts or (peer == "numpy" and k != threads[0]):
                continue
            ax.plot(*zip(*pts), color=COLORS[peer], ls=ls, marker=".",
                    label=f"{PEER_LABEL[peer]}" + ("" if peer == "numpy" else f", {k}t"))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("elements")
    ax.set_ylabel(spec["unit"] + (f" ({spec['bpe']} B/element)" if key == "gbps" else ""))
    ax.set_title(spec["label"], fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=6)


def plot(rows: List[Row], path: str, plt: Any) -> None:
    """Saves the figure of the measured rows to ``path`` (``plt``: matplotlib.pyplot)."""
    measured = [r for r in rows if "skipped" not in r]
    kernels = [k for k in KERNEL_ORDER if any(r["kernel"] == k for r in measured)]
    if not kernels:
        return
    ncol = min(3, len(kernels))
    nrow = (len(kernels) + ncol - 1) // ncol
    fig, axes = plt.subplots(nrow, ncol, figsize=(5.2 * ncol, 4 * nrow), squeeze=False)
    for ax, kernel in zip(axes.flat, kernels):
        krows = [r for r in measured if r["kernel"] == kernel]
        (_bars if kernel in FIXED or kernel in PAIRED else _lines)(ax, kernel, krows)
    for ax in list(axes.flat)[len(kernels):]:
        ax.set_visible(False)
    fig.suptitle("fusedopt vs peers and the measured bandwidth ceiling", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
