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
        value = row.ratio if self.of == "ratio" else row.rebox.median if row.rebox else None
        if value is None:
            return None
        return value <= self.bound if self.op == "<=" else value >= self.bound

    def __str__(self):
        bound = f"{self.bound:g}"
        return f"{self.op} {bound}x" if self.of == "ratio" else f"{self.op} {bound}"


@dataclass
class Row:
    """One figure: rebox's, its peer's (None when BuildBox has no counterpart), and the target.
    rebox's is None when it could not be measured; the note then says why."""

    bench: str
    label: str
    unit: str
    rebox: Stats | None
    peer: Stats | None = None
    higher_is_better: bool = False
    target: Target | None = None
    note: str = ""
    ratio: float | None = field(init=False, default=None)

    def __post_init__(self):
        if self.rebox is not None and self.peer is not None and self.peer.median:
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
    head = ("bench", "figure", "unit", "BuildBox median (min-max)", "rebox median (min-max)", "ratio", "target", "note")
    lines = [
        [r.bench, r.label, r.unit, spread(r.peer), spread(r.rebox), ratio_text(r), r.verdict, r.note] for r in rows
    ]
    widths = [min(60, max(len(h), *(len(line[i]) for line in lines))) if lines else len(h) for i, h in enumerate(head)]
    out = ["  ".join(h.ljust(w) for h, w in zip(head, widths))]
    for line in lines:
        out.append("  ".join(cell[:60].ljust(w) for cell, w in zip(line, widths)).rstrip())
    return "\n".join(out)


def ratio_text(row):
    return ratio_figure(row.ratio) if row.ratio is not None else "-"


def ratio_figure(ratio):
    """Two decimals, or two significant digits for a ratio under 0.1 (0.0042, not 0.00)."""
    return f"{ratio:.2f}" if ratio >= 0.1 else f"{ratio:.2g}"


def markdown_table(rows):
    """The README's table: one line per figure."""
    out = [
        "| bench | figure | BuildBox | rebox | ratio | target |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        unit = f" {row.unit}"
        peer = spread(row.peer).replace("-", "–") + unit if row.peer else "–"
        rebox = spread(row.rebox).replace("-", "–") + unit if row.rebox else "–"
        label = row.label + (f" ({row.note})" if row.note else "")
        out.append(
            f"| {row.bench} | {label} | {peer} | {rebox} | {ratio_text(row).replace('-', '–')} "
            f"| {row.verdict.replace('<=', '≤').replace('>=', '≥') or '–'} |"
        )
    return "\n".join(out)


# Bar colours: a target met or missed, or no target and better or worse than BuildBox.
MET, MISSED, BETTER, WORSE = "#2b8a3e", "#c92a2a", "#1c7ed6", "#e8590c"
LEGEND = [(MET, "target met"), (MISSED, "target missed"), (BETTER, "no target, better"), (WORSE, "no target, worse")]


class LogAxis:
    """Maps a relative cost to an x position: [lo, hi] on a log scale over [left, left + width]."""

    def __init__(self, costs, left, width):
        self.lo, self.hi = min(0.01, *costs), max(10.0, *costs)
        self.left, self.width = left, width

    def x(self, value):
        span = math.log10(self.hi) - math.log10(self.lo)
        return self.left + (math.log10(value) - math.log10(self.lo)) / span * self.width

    def decades(self):
        decade = math.floor(math.log10(self.lo))
        while 10**decade <= self.hi:
            if 10**decade >= self.lo:
                yield 10**decade
            decade += 1


def svg_plot(rows, title):
    """A horizontal bar per figure that has a peer: rebox's relative cost on a log axis, from
    BuildBox's 1, with the target (as a relative cost) marked. Plain SVG, no plotting library."""
    rows = [r for r in rows if r.relative_cost]
    label_w, plot_w, bar_h, gap, top = 430, 420, 16, 6, 48
    axis = LogAxis([r.relative_cost for r in rows], label_w, plot_w)
    bottom = top + len(rows) * (bar_h + gap)
    width, height = label_w + plot_w + 70, bottom + 48
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="10" y="20" font-size="14" font-weight="bold">{html.escape(title)}</text>',
        '<text x="10" y="38" fill="#555">rebox cost relative to BuildBox (log scale; left of 1 is better; '
        "throughputs inverted; | marks the target)</text>",
    ]
    for value in axis.decades():
        gx = axis.x(value)
        parts.append(
            f'<line x1="{gx:.1f}" y1="{top - 4}" x2="{gx:.1f}" y2="{bottom}" '
            f'stroke="{"#333" if value == 1 else "#ddd"}"/>'
        )
        parts.append(f'<text x="{gx:.1f}" y="{bottom + 14}" text-anchor="middle">{value:g}</text>')
    for index, row in enumerate(rows):
        parts += svg_bar(row, axis, top + index * (bar_h + gap), bar_h)
    legend_x = 10
    for colour, text in LEGEND:
        parts.append(f'<rect x="{legend_x}" y="{bottom + 26}" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{legend_x + 14}" y="{bottom + 35}" fill="#555">{text}</text>')
        legend_x += 14 + 7 * len(text) + 12
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def svg_bar(row, axis, y, bar_h):
    """One row of the plot: its label, a bar from 1 to its relative cost, the figure, the target."""
    cost = row.relative_cost
    met = row.target.met(row) if row.target else None
    colour = {True: MET, False: MISSED, None: BETTER if cost <= 1 else WORSE}[met]
    label = f"{row.bench}: {row.label}"
    if len(label) > 70:
        label = label[:69] + "…"
    one, end = axis.x(1.0), axis.x(cost)
    parts = [
        f'<text x="{axis.left - 8}" y="{y + bar_h - 4}" text-anchor="end">{html.escape(label)}</text>',
        f'<rect x="{min(one, end):.1f}" y="{y}" width="{max(1.0, abs(end - one)):.1f}" height="{bar_h}" '
        f'fill="{colour}"/>',
        f'<text x="{axis.left + axis.width + 8}" y="{y + bar_h - 4}">{ratio_figure(cost)}</text>',
    ]
    if row.target and row.target.of == "ratio":
        tx = axis.x(1 / row.target.bound if row.higher_is_better else row.target.bound)
        parts.append(
            f'<line x1="{tx:.1f}" y1="{y - 2}" x2="{tx:.1f}" y2="{y + bar_h + 2}" stroke="#000" stroke-width="2"/>'
        )
    return parts
