"""What every HTML report shares: the page style, inline PNG plots, tables, and JSON of numpy values."""

from __future__ import annotations

import base64
import html
import io

import numpy as np

STYLE = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}"
         "table{border-collapse:collapse;font-size:13px;margin:.5em 0}"
         "td,th{border:1px solid #ccc;padding:3px 7px;text-align:left}"
         "th{background:#f3f3f3}tr.ok td{background:#eefbea}tr.bad td{background:#fde8e8}.ok{color:#176b1c}"
         "pre{background:#f7f7f7;padding:.6em;font-size:13px}img{max-width:100%}")


def png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def accuracy_plot(fig, ax, xlabel: str, ylabel: str) -> str:
    """Finish a plot of accuracy against T (log2 axis, grid, legend) and return it as an inline PNG."""
    import matplotlib.pyplot as plt

    ax.set_xscale("log", base=2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    out = png(fig)
    plt.close(fig)
    return out


def table(rows: list[list], header: list[str], cls: list[str] | None = None) -> str:
    h = "".join(f"<th>{html.escape(str(c))}</th>" for c in header)
    body = []
    for i, r in enumerate(rows):
        c = f' class="{cls[i]}"' if cls and cls[i] else ""
        body.append(f"<tr{c}>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r) + "</tr>")
    return f"<table><thead><tr>{h}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o).__name__)
