"""Charts for the analyst dashboard, drawn with matplotlib from the analysis dict (PNG bytes).

They use matplotlib's object-oriented `Figure` API: no pyplot state machine in
the web process, so charts drawn in parallel threads cannot interfere.
"""

import io

from matplotlib.figure import Figure

CHARTS = ("confusion", "ratings", "reader-accuracy", "roc")

# Legibility: drawn at twice the page's pixel density (the dashboard shows them with
# srcset="... 2x", so text is 11 pt at 96 CSS dpi and sharp on high-density screens), in
# Okabe-Ito colours (distinct with colour-blindness; >= 3:1 against white, as WCAG asks of
# graphics), text in 11 pt and never smaller than 9 pt.
DPI = 192
FONT = 11
SMALL = 9
REAL_COLOUR = "#0072B2"       # Okabe-Ito blue
SYNTHETIC_COLOUR = "#D55E00"  # Okabe-Ito vermillion
CHANCE_COLOUR = "#555555"


def _figure(width: float, height: float, ncols: int = 1):
    fig = Figure(figsize=(width, height))
    axes = fig.subplots(1, ncols, squeeze=False)
    for ax in axes[0]:
        ax.tick_params(labelsize=FONT)
    return fig, axes


def _png(fig) -> bytes:
    for ax in fig.axes:
        ax.title.set_fontsize(FONT + 1)
        ax.xaxis.label.set_fontsize(FONT)
        ax.yaxis.label.set_fontsize(FONT)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return buffer.getvalue()


def text_colour(rgb) -> str:
    """Black or white, whichever contrasts more with a cell of colour `rgb` (WCAG relative luminance)."""
    def channel(c):
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
    luminance = 0.2126 * channel(rgb[0]) + 0.7152 * channel(rgb[1]) + 0.0722 * channel(rgb[2])
    return "black" if (luminance + 0.05) / 0.05 >= 1.05 / (luminance + 0.05) else "white"


def _message(text: str) -> bytes:
    fig, axes = _figure(5, 1.2)
    ax = axes[0][0]
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, fontsize=FONT)
    return _png(fig)


def _number(value):
    return value if isinstance(value, (int, float)) else None


def confusion_chart(analysis) -> bytes:
    det = analysis.get("detection")
    if not isinstance(det, dict) or "pooled" not in det:
        return _message("No answers yet")
    table = det["pooled"]["confusion"]
    rows, cols = ["synthetic", "real"], ["fake", "unsure", "real"]
    data = [[table[r][c] for c in cols] for r in rows]
    fig, axes = _figure(4.2, 3)
    ax = axes[0][0]
    image = ax.imshow(data, cmap="Blues")
    for i, row in enumerate(data):
        for j, value in enumerate(row):
            ax.text(j, i, str(value), ha="center", va="center", fontsize=FONT + 2,
                    color=text_colour(image.cmap(image.norm(value))))
    ax.set_xticks(range(3), ["said synthetic", "unsure", "said real"])
    ax.set_yticks(range(2), ["synthetic", "real"])
    ax.set_title("All readers (regular cases)")
    return _png(fig)


def ratings_chart(analysis) -> bytes:
    criteria = {k: v for k, v in (analysis.get("scores") or {}).items() if isinstance(v, dict) and "real" in v}
    if not criteria:
        return _message("No ratings yet")
    fig, axes = _figure(4 * len(criteria), 3, len(criteria))
    for ax, (name, data) in zip(axes[0], criteria.items()):
        codes = [o["code"] for o in data["scale"]]
        for offset, truth, colour in ((-0.2, "real", REAL_COLOUR), (0.2, "synthetic", SYNTHETIC_COLOUR)):
            props = [(_number(data[truth]["proportions"][str(o["value"])]) or 0) for o in data["scale"]]
            ax.bar([i + offset for i in range(len(codes))], props, width=0.4, label=truth, color=colour)
        ax.set_xticks(range(len(codes)), codes)
        ax.set_title(data["title"])
        ax.set_ylim(0, 1)
    axes[0][0].set_ylabel("share of ratings")
    axes[0][0].legend(fontsize=FONT)
    return _png(fig)


def reader_accuracy_chart(analysis) -> bytes:
    det = analysis.get("detection")
    if not isinstance(det, dict) or not det.get("per_reader"):
        return _message("No answers yet")
    names, estimates, lows, highs = [], [], [], []
    for reader, metrics in det["per_reader"].items():
        acc = metrics["accuracy"]
        if _number(acc["estimate"]) is None or not isinstance(acc["ci95"], list):
            continue
        names.append(reader)
        estimates.append(acc["estimate"])
        lows.append(acc["estimate"] - acc["ci95"][0])
        highs.append(acc["ci95"][1] - acc["estimate"])
    fig, axes = _figure(5, 0.35 * len(names) + 1.2)
    ax = axes[0][0]
    ax.errorbar(estimates, range(len(names)), xerr=[lows, highs], fmt="o", capsize=3, color=REAL_COLOUR)
    ax.axvline(0.5, color=CHANCE_COLOUR, linestyle="--", label="chance")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"accuracy ({analysis['settings']['ci_method']} 95% CI; unsure: "
                  f"{analysis['settings']['unsure_policy']})")
    ax.legend(loc="lower right", fontsize=FONT)
    return _png(fig)


def roc_chart(analysis) -> bytes:
    per_reader = ((analysis.get("roc") or {}).get("per_reader")) or {}
    curves = {r: v for r, v in per_reader.items() if isinstance(v, dict) and "roc_points" in v}
    if not curves:
        return _message("ROC needs real and synthetic answers")
    fig, axes = _figure(4.2, 4)
    ax = axes[0][0]
    for reader, data in curves.items():
        xs, ys = zip(*data["roc_points"])
        ax.plot(xs, ys, marker=".", label=f"{reader} (AUC {data['auc']:.2f})")
    ax.plot([0, 1], [0, 1], color=CHANCE_COLOUR, linestyle="--")
    ax.set_xlabel("1 - specificity (real called synthetic)")
    ax.set_ylabel("sensitivity (synthetic called synthetic)")
    ax.legend(fontsize=SMALL, loc="lower right")
    return _png(fig)


RENDERERS = {"confusion": confusion_chart, "ratings": ratings_chart, "reader-accuracy": reader_accuracy_chart,
             "roc": roc_chart}
