"""Where readers marked cases as looking synthetic: per-case counts and heat maps over the image.

Drawn with matplotlib's object-oriented `Figure` API (no pyplot state in the web process).
"""

import io

import numpy as np
import pydicom
from django.db.models import Q
from matplotlib.figure import Figure
from scipy import ndimage

from readerstudy.imaging.pool import find_rendition, rendition_files
from readerstudy.reading.models import Read
from readerstudy.studies.config import stratum_key, validate_config

from .charts import DPI, FONT

HEAT_SIGMA = 0.04  # of the image side


def case_marks(study, case=None) -> dict:
    """{study case id: {"marks": [...], "comments": [...]}} over every reader's submitted answer
    (a repeat counts for its original); with `case`, that case only."""
    out = {}
    reads = Read.objects.filter(assigned_case__assignment__study=study, assigned_case__assignment__preview=False,
                                submitted_at__isnull=False).exclude(answers={})
    if case is not None:
        reads = reads.filter(Q(assigned_case__case=case) | Q(assigned_case__case__repeat_of=case))
    reads = reads.values_list("assigned_case__case_id", "assigned_case__case__repeat_of_id", "answers")
    for case_id, repeat_of, answers in reads:
        entry = out.setdefault(repeat_of or case_id, {"marks": [], "comments": []})
        entry["marks"] += (answers or {}).get("marks", [])
        if (answers or {}).get("comment"):
            entry["comments"].append(answers["comment"])
    return out


def heatmap_png(study, case) -> bytes:
    """The served slice with the most marks, under a smoothed density of all readers' marks."""
    marks = case_marks(study, case).get(case.pk, {}).get("marks", [])
    item = case.item
    rows, cols, depth = validate_config(study.config)["presets"][stratum_key(item.modality, item.dimensionality)]
    counts = {}
    for m in marks:
        counts[m["slice"]] = counts.get(m["slice"], 0) + 1
    shown = max(counts, key=counts.get) if counts else (depth + 1) // 2
    rendition = find_rendition(item, rows, cols, depth)
    image = pydicom.dcmread(rendition_files(rendition)[min(shown, depth) - 1]).pixel_array.astype(float)
    lo, hi = np.percentile(image, (1, 99))
    density = np.zeros((rows, cols))
    for m in (m for m in marks if m["slice"] == shown):
        y = min(rows - 1, int(m["y"] * rows))
        x = min(cols - 1, int(m["x"] * cols))
        density[y, x] += 1
    density = ndimage.gaussian_filter(density, sigma=HEAT_SIGMA * max(rows, cols))
    fig = Figure(figsize=(4.2, 4.6))
    ax = fig.add_subplot()
    ax.imshow(image, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1)
    if density.max() > 0:
        ax.imshow(np.ma.masked_less(density / density.max(), 0.05), cmap="inferno", alpha=0.55, vmin=0, vmax=1)
    ax.set_title(f"Case {case.pk}: {len(marks)} mark(s), slice {shown} of {depth}", fontsize=FONT)
    ax.axis("off")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return buffer.getvalue()
