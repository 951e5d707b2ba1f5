"""The suite's common currency: a bench's summary rows, and the table, JSON and plot made of them.

Every bench module (bench_run, bench_stage, bench_casd, bench_expiry, bench_bst, bench_callgrind)
writes its raw figures as JSON and offers `rows(raw) -> [Row]`: one Row per figure worth a line in
the README, rebox next to its BuildBox peer measured in the same run. `scripts/bench` gathers the
rows of every bench it ran and renders them here: a text table on stdout, and on request Markdown
(for the README's Performance section), JSON (rows and raw figures) and an SVG plot of the ratios.

A ratio is always rebox's median over the peer's median, so for figures where higher is better
(throughput) a ratio above 1 is good. The plot shows *relative cost* instead, so that every bar
reads the same way: the ratio for lower-is-better figures, its inverse otherwise; left of the
BuildBox line is better.
"""

import html
import math
import statistics
from dataclasses import asdict, dataclass, field


@dataclass
class Stats:
    """A figure over repeated measurements."""

    median: float
    min: float
    max: float
    n: int

    @classmethod
    def of(cls, samples, scale=1.0):
        """Stats of `samples`, each multiplied by `scale` (e.g. 1e3 for seconds -> ms)."""
        values = [s * scale for s in samples]
        if not values:
            raise ValueError("no samples")
        return cls(statistics.median(values), min(values), max(values), len(values))

    @classmethod
    def single(cls, value):
        return cls(value, value, value, 1)


@dataclass
class Target:
    """What an issue asks of a figure: `of` is "ratio" (rebox/peer) or "rebox" (rebox's own
    median, in the row's unit); `op` is "<=" or ">="."""

    op: str
    bound: float
    of: str = "ratio"

    def met(self, row):
        value = row.ratio if self.of == "ratio" else row.rebox.median
        if value is None:
            return None
        return value <= self.bound if self.op == "<=" else value >= self.bound

    def __str__(self):
        bound = f"{self.bound:g}"
        return f"{self.op} {bound}x" if self.of == "ratio" else f"{self.op} {bound}"


@dataclass
class Row:
    """One figure: rebox's, its peer's (None when BuildBox has no counterpart), and the target."""

    bench: str
    label: str
    unit: str
    rebox: Stats
    peer: Stats | None = None
    higher_is_better: bool = False
    target: Target | None = None
    note: str = ""
    ratio: float | None = field(init=False, default=None)

    def __post_init__(self):
        if self.peer is not None and self.peer.median:
            self.ratio = self.rebox.median / self.peer.median

    @property
    def relative_cost(self):
        """The ratio turned so that below 1 is always better than BuildBox."""
        if not self.ratio:
            return None
        return 1 / self.ratio if self.higher_is_better else self.ratio

    @property
    def verdict(self):
        met = self.target.met(self) if self.target else None
        if met is None:
            return ""
        return f"{self.target} {'met' if met else 'NOT met'}"

    def to_json(self):
        out = asdict(self)
        out["target"] = str(self.target) if self.target else None
        out["target_met"] = self.target.met(self) if self.target else None
        return out


def figure(value):
    """A number with as many digits as it deserves."""
    magnitude = abs(value)
    if magnitude >= 10000:
        return f"{value / 1000:.1f}k"
    if magnitude >= 100 or value == int(value):
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def spread(stats):
    if stats is None:
        return "-"
    if stats.n == 1 or stats.min == stats.max:
        return figure(stats.median)
    return f"{figure(stats.median)} ({figure(stats.min)}-{figure(stats.max)})"


def text_table(rows):
    """Fixed-width lines for a terminal."""
    head = ("bench", "figure", "unit", "BuildBox median (min-max)", "rebox median (min-max)", "ratio", "target")
    lines = [[r.bench, r.label, r.unit, spread(r.peer), spread(r.rebox), ratio_text(r), r.verdict] for r in rows]
    widths = [min(60, max(len(h), *(len(line[i]) for line in lines))) if lines else len(h) for i, h in enumerate(head)]
    out = ["  ".join(h.ljust(w) for h, w in zip(head, widths))]
    for line in lines:
        out.append("  ".join(cell[:60].ljust(w) for cell, w in zip(line, widths)).rstrip())
    return "\n".join(out)


def ratio_text(row):
    return f"{row.ratio:.2f}" if row.ratio is not None else "-"


def markdown_table(rows):
    """The README's table: one line per figure."""
    out = [
        "| bench | figure | BuildBox | rebox | ratio | target |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        unit = f" {row.unit}"
        peer = spread(row.peer) + unit if row.peer else "–"
        label = row.label + (f" ({row.note})" if row.note else "")
        out.append(
            f"| {row.bench} | {label} | {peer} | {spread(row.rebox)}{unit} | {ratio_text(row).replace('-', '–')} "
            f"| {row.verdict or '–'} |"
        )
    return "\n".join(out)


def svg_plot(rows, title):
    """A horizontal bar per figure that has a peer: rebox's relative cost on a log axis, with
    BuildBox at 1 and the target (as a relative cost) marked. Plain SVG, no plotting library."""
    rows = [r for r in rows if r.relative_cost]
    label_w, plot_w, bar_h, gap, top = 430, 420, 16, 6, 48
    lo, hi = 0.01, 10.0
    lo = min(lo, *(r.relative_cost for r in rows)) if rows else lo
    hi = max(hi, *(r.relative_cost for r in rows)) if rows else hi
    span = math.log10(hi) - math.log10(lo)

    def x(value):
        return label_w + (math.log10(value) - math.log10(lo)) / span * plot_w

    height = top + len(rows) * (bar_h + gap) + 40
    width = label_w + plot_w + 70
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="10" y="20" font-size="14" font-weight="bold">{html.escape(title)}</text>',
        f'<text x="10" y="38" fill="#555">rebox cost relative to BuildBox 1.4.25 (log scale; '
        f"left of 1 is better; | marks the target)</text>",
    ]
    decade = math.floor(math.log10(lo))
    while 10**decade <= hi:
        gx = x(10**decade)
        if gx >= label_w - 0.5:
            parts.append(
                f'<line x1="{gx:.1f}" y1="{top - 4}" x2="{gx:.1f}" y2="{height - 30}" '
                f'stroke="{"#333" if decade == 0 else "#ddd"}"/>'
            )
            parts.append(f'<text x="{gx:.1f}" y="{height - 14}" text-anchor="middle">{10**decade:g}</text>')
        decade += 1
    for index, row in enumerate(rows):
        y = top + index * (bar_h + gap)
        cost = row.relative_cost
        met = row.target.met(row) if row.target else None
        colour = {True: "#2b8a3e", False: "#c92a2a", None: "#1c7ed6" if cost <= 1 else "#e8590c"}[met]
        label = f"{row.bench}: {row.label}"
        if len(label) > 70:
            label = label[:69] + "…"
        parts.append(
            f'<text x="{label_w - 8}" y="{y + bar_h - 4}" text-anchor="end">{html.escape(label)}</text>'
        )
        x1 = x(1.0)
        x2 = x(cost)
        parts.append(
            f'<rect x="{min(x1, x2):.1f}" y="{y}" width="{max(1.0, abs(x2 - x1)):.1f}" height="{bar_h}" '
            f'fill="{colour}"/>'
        )
        parts.append(f'<text x="{label_w + plot_w + 8}" y="{y + bar_h - 4}">{cost:.2f}</text>')
        if row.target and row.target.of == "ratio":
            bound = 1 / row.target.bound if row.higher_is_better else row.target.bound
            tx = x(bound)
            parts.append(
                f'<line x1="{tx:.1f}" y1="{y - 2}" x2="{tx:.1f}" y2="{y + bar_h + 2}" stroke="#000" '
                f'stroke-width="2"/>'
            )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
