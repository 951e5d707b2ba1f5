"""The bench report's own checks: ratios, verdicts and renderings of known figures.

Each is fed figures whose ratio and verdict are known, including the cases that are easy to get
backwards: a throughput (higher is better, so its plotted cost is the inverse), a target on
rebox's own figure rather than the ratio, a row without a peer.
"""

import xml.etree.ElementTree as ElementTree

from bench_report import Row, Stats, Target, markdown_table, svg_plot, text_table


def known_rows():
    return [
        Row("run", "an action", "ms", Stats.of([0.010, 0.011, 0.009], 1e3), Stats.of([0.040], 1e3),
            target=Target("<=", 0.15)),
        Row("casd", "uploads", "blobs/s", Stats.single(50_000), Stats.single(12_500), higher_is_better=True,
            target=Target(">=", 3)),
        Row("run", "runner RSS", "MB", Stats.single(7.5), Stats.single(20.0), target=Target("<=", 15, of="rebox")),
        Row("callgrind", "instructions, no peer", "Minstr", Stats.single(12.0)),
    ]


def test_ratios_and_verdicts(check):
    action, uploads, rss, alone = known_rows()
    check(action.rebox.median == 10.0 and action.rebox.min == 9.0 and action.rebox.max == 11.0,
          f"Stats.of: median/min/max of 9, 10, 11 ms came out {action.rebox}")
    check(abs(action.ratio - 0.25) < 1e-9, f"ratio of 10 ms to 40 ms came out {action.ratio}")
    check(action.verdict == "<= 0.15x NOT met", f"0.25 against <= 0.15x judged {action.verdict!r}")
    check(abs(uploads.ratio - 4.0) < 1e-9 and abs(uploads.relative_cost - 0.25) < 1e-9,
          f"a throughput 4x BuildBox's: ratio {uploads.ratio}, relative cost {uploads.relative_cost}")
    check(uploads.verdict == ">= 3x met", f"4x against >= 3x judged {uploads.verdict!r}")
    check(rss.verdict == "<= 15 met", f"7.5 MB against <= 15 (rebox's own figure) judged {rss.verdict!r}")
    check(alone.ratio is None and alone.verdict == "", f"a row without a peer got ratio {alone.ratio}")


def test_renderings(check):
    rows = known_rows()
    table = text_table(rows)
    check("NOT met" in table and "0.25" in table and "10 (9-11)" in table,
          f"the text table lacks the figures:\n{table}")
    markdown = markdown_table(rows)
    lines = markdown.splitlines()
    check(len(lines) == 2 + len(rows), f"Markdown: {len(lines)} lines for {len(rows)} rows")
    check(all(line.count("|") == 7 for line in lines), f"Markdown: a line with a wrong cell count:\n{markdown}")
    check("≤ 0.15x NOT met" in markdown, "Markdown: the verdict is missing")
    svg = svg_plot(rows, "selftest")
    try:
        root = ElementTree.fromstring(svg)
    except ElementTree.ParseError as error:
        check(False, f"the plot is not well-formed XML: {error}")
        return
    namespace = "{http://www.w3.org/2000/svg}"
    labels = [t.text for t in root.iter(f"{namespace}text")]
    plotted = [label for label in labels if label and label.startswith(("run:", "casd:", "callgrind:"))]
    check(len(plotted) == 3, f"the plot shows {plotted}: every row with a peer, and only those")
    check("0.25" in labels, "the plot does not show the throughput's relative cost 0.25")


def run_all(check):
    test_ratios_and_verdicts(check)
    test_renderings(check)
