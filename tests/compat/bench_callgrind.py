"""Instruction counts of one action (issue #7): deterministic cost figures where timing is too noisy.

The action is bench_run's: `/bin/true` in a 3-file busybox root, run as BuildStream runs it
(`--action=F --action-result=F --no-logs-capture`, stdin /dev/null, its own session). Each
configuration runs it once natively first (it must succeed, so that a failure under valgrind is
valgrind's), then --runs times under
  valgrind --tool=callgrind --trace-children=no --separate-threads=yes --callgrind-out-file=F.%p
Configurations:
  run+casd        the candidate runner (through a `buildbox-run` symlink), --remote to the candidate
                  daemon (rebox casd when the candidate is rebox)
  embedded        `rebox run --cas-dir DIR` (only when the candidate is rebox): DIR a store the
                  candidate daemon filled and then left; with --sim-hints=fuse-compatible, because
                  the runner then serves the FUSE stage it uses itself, and without the hint
                  valgrind's big lock deadlocks it (a stat of the stage never returns)
  bb-run+bb-casd  buildbox-run --remote to buildbox-casd (with buildbox-fuse on its PATH, as
                  BuildStream runs it)
What is counted: callgrind's Ir (instructions executed in user space; system calls and the
kernel's work are not instructions here) of the runner's process, from exec to exit, all its
threads added up (their profiles are per thread; the main thread's alone is in the JSON: the
other threads, gRPC's pollers in buildbox-run, vary by a few 100k from run to run with timing).
Not counted: the daemon (another process, not under valgrind), and whatever the runner's children
run after they exec (with --trace-children=no valgrind execs them natively): buildbox-run forks
and execs bwrap, so bwrap (all of the sandbox's set-up) and the command are not counted, nor the
fork child's few instructions before its exec (valgrind writes no profile for a process that
execs). rebox's runner clones its sandbox's init without an exec, so valgrind cannot let go of
the init: it runs under valgrind and writes its own profile (as pid 1 of its pid namespace; after
its pivot often nowhere), reported separately when found and never added to the runner's count.
So both runners' figures are their own process's work: reading the action, talking to the
daemon, spawning and waiting for the sandbox, writing the result.
A configuration valgrind cannot run to the end (it reports an unhandled system call, or fails an
assertion, or the run is still going after --timeout) is reported as not measurable, with
valgrind's own words and the runner's error, and gives no figure; the bench fails only if no
configuration could be measured. Valgrind 3.19 (Debian 12's) cannot run rebox's runner: it has
no wrapper for openat2 (437), which rebox uses to open the stage, nor for pidfd_open (434), nor
for the mount API the sandbox's init uses (open_tree 428, move_mount 429, fsopen 430, fsconfig
431, fsmount 432, mount_setattr 442), and the unhandled calls fail with ENOSYS.
Every counted run must exit 0 with an ActionResult of exit_code 0. Repeatability: the counted
runs of a configuration should agree closely; the spread ((max - min) / median) is reported.
Also reported per configuration, from its first counted run: instructions by ELF object (self
cost: the binary, libc, the dynamic loader...) and the top functions by inclusive and by self
cost (callgrind_annotate, summed over threads), to guide work on per-action overhead.
With --daemon-actions K (default 0: skipped), the daemon's side: each daemon under callgrind
(with the FUSE hint: rebox casd serves its FUSE stages in-process) for a session of start, upload
of the action's blobs, K actions with the native runner of its configuration, SIGTERM; minus a
session without the actions; divided by K: the daemon's instructions per action. buildbox-casd
then runs without buildbox-fuse on its PATH (its hardlink stager), so that its staging work is in
the counted process as rebox's in-process stager's is. Two pairs of sessions, for the spread.
Costs about 25 s on an idle machine (buildbox-run takes ~5 s under callgrind), plus ~70 s with
--daemon-actions 5 (buildbox-casd takes ~8 s to start and stop under callgrind); the daemon's
figure then still spreads by ~10%.

    bench_callgrind.py [--candidate PATH] [--candidate-casd PATH] [--baseline-run PATH] [--baseline-casd PATH]
                       [--runs N] [--daemon-actions K] [--timeout S] [--dir DIR] [--json FILE]
"""

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict

from buildstream._protos.build.bazel.remote.execution.v2 import remote_execution_pb2 as re_pb2

from bench_report import Row, Stats
from bench_run import add_runner_options, candidate_daemon, fill_store, true_action
from casd import Daemon, HarnessError, bundled_buildbox
from runner import runner_link

VALGRIND_OPTIONS = ["--tool=callgrind", "--trace-children=no", "--separate-threads=yes"]
# For a process serving a FUSE mount that it also uses (see the docstring); not for the runners
# that clone a sandbox: valgrind 3.19 then fails an assertion on close_range in the clone.
FUSE_HINT = "--sim-hints=fuse-compatible"
NATIVE_TIMEOUT = 60
TOP = 10
# x86-64 numbers of the system calls newer than valgrind 3.19's tables, to name them in reports.
SYSCALL_NAMES = {
    424: "pidfd_send_signal",
    425: "io_uring_setup",
    426: "io_uring_enter",
    427: "io_uring_register",
    428: "open_tree",
    429: "move_mount",
    430: "fsopen",
    431: "fsconfig",
    432: "fsmount",
    433: "fspick",
    434: "pidfd_open",
    435: "clone3",
    436: "close_range",
    437: "openat2",
    438: "pidfd_getfd",
    439: "faccessat2",
    440: "process_madvise",
    441: "epoll_pwait2",
    442: "mount_setattr",
    443: "quotactl_fd",
    444: "landlock_create_ruleset",
    445: "landlock_add_rule",
    446: "landlock_restrict_self",
    447: "memfd_secret",
    448: "process_mrelease",
    449: "futex_waitv",
    450: "set_mempolicy_home_node",
    451: "cachestat",
    452: "fchmodat2",
}


class Unmeasurable(Exception):
    """Valgrind could not run this configuration to the end; the message says what it reported."""


class Configuration:
    """One way of running the action: the argv without the action files, and its figures."""

    def __init__(self, name, argv, workdir, hints=()):
        self.name, self.argv, self.workdir, self.hints = name, argv, workdir, list(hints)
        self.runs = []  # per counted run: {"runner": process_figures(), "others": {pid: instructions}}
        self.unmeasurable = None
        self.profile = None

    def run(self, action_bytes, valgrind=None, label="native", timeout=NATIVE_TIMEOUT):
        """One run, natively or under `valgrind` (its argv prefix); returns the runner's pid. A
        failure raises HarnessError natively, Unmeasurable under valgrind."""
        base = os.path.join(self.workdir, f"{self.name}-{label}")
        with open(base + ".action", "wb") as out:
            out.write(action_bytes)
        argv = (valgrind or []) + self.argv
        argv += [f"--action={base}.action", f"--action-result={base}.result", "--no-logs-capture"]
        with open(base + ".stderr", "wb") as err:
            process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True
            )
            try:
                code = process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                code = None
        with open(base + ".stderr", errors="replace") as err:
            stderr = err.read()
        result = re_pb2.ActionResult()
        if os.path.exists(base + ".result"):
            with open(base + ".result", "rb") as out:
                result.ParseFromString(out.read())
        if code == 0 and os.path.exists(base + ".result") and result.exit_code == 0:
            return process.pid
        if code is None:
            what = f"still running after {timeout}s (killed)"
        else:
            what = f"exited {code}, result exit_code {result.exit_code if os.path.exists(base + '.result') else 'none'}"
        if valgrind is None:
            raise HarnessError(f"{self.name}: the native run {what}\n{stderr[-2000:]}")
        raise Unmeasurable(f"{what}; {valgrind_trouble(stderr, process.pid)}")


def valgrind_prefix(valgrind, out_file, extra=()):
    return [valgrind, *VALGRIND_OPTIONS, *extra, f"--callgrind-out-file={out_file}.%p"]


def valgrind_trouble(stderr, runner_pid):
    """What valgrind said it could not do, and the runner's own last error line."""
    found = []
    for pid, number in re.findall(r"^--(\d+)-- WARNING: unhandled amd64-linux syscall: (\d+)", stderr, re.M):
        name = SYSCALL_NAMES.get(int(number), "?")
        where = (
            "the runner"
            if int(pid) == runner_pid
            else f"pid {pid}" + (" (a sandbox's init)" if pid == "1" else "")
        )
        found.append(f"valgrind: unhandled syscall {number} ({name}) in {where}")
    found += [f"valgrind: {line.strip()}" for line in re.findall(r"^valgrind: (.*)$", stderr, re.M)]
    found += re.findall(r"^==\d+== ((?:Process terminating|Unsupported) .*)$", stderr, re.M)
    errors = [
        line for line in stderr.splitlines() if not line.startswith(("==", "--")) and "error" in line.lower()
    ]
    if errors:
        found.append(f"runner: {errors[-1].strip()}")
    return "; ".join(found) if found else "valgrind reported nothing (see the run's stderr)"


def totals(path):
    """The program total of a callgrind profile (its `totals:` line, else `summary:`)."""
    found = {}
    with open(path, errors="replace") as profile:
        for line in profile:
            match = re.match(r"(totals|summary): (\d+)", line)
            if match:
                found[match.group(1)] = int(match.group(2))
    if not found:
        raise HarnessError(f"no totals in callgrind profile {path}")
    return found.get("totals", found.get("summary"))


def profiles(out_file):
    """{pid: [paths]} of the callgrind profiles written for `out_file`.%p, one per thread
    (`out_file`.PID-NN, with --separate-threads; thread 01 is the main thread)."""
    directory, prefix = os.path.dirname(out_file), os.path.basename(out_file) + "."
    found = defaultdict(list)
    for name in sorted(os.listdir(directory)):
        match = re.fullmatch(re.escape(prefix) + r"(\d+)-(\d+)", name)
        if match:
            found[int(match.group(1))].append(os.path.join(directory, name))
    return dict(found)


def process_figures(paths):
    """A process's instructions: all its threads, and its main thread alone."""
    counts = [totals(path) for path in paths]
    return {"all_threads": sum(counts), "main_thread": counts[0], "threads": len(counts)}


def self_cost_by_object(path):
    """{ELF object: instructions executed in its code} from a callgrind profile: every cost line
    counts for the current `ob=`, except the inclusive cost line that follows a `calls=` line."""
    names, costs = {}, defaultdict(int)
    current, after_call = "???", False

    def resolve(spec):
        match = re.match(r"\((\d+)\)(?: (.*))?", spec)
        if not match:
            return spec
        if match.group(2) is not None:
            names[match.group(1)] = match.group(2)
        return names.get(match.group(1), "???")

    with open(path, errors="replace") as profile:
        for line in profile:
            line = line.rstrip("\n")
            if line.startswith("ob="):
                current = resolve(line[3:])
            elif line.startswith("cob="):
                resolve(line[4:])
            elif line.startswith("calls="):
                after_call = True
            elif line[:1].isdigit() or line[:1] in "+-*":
                if after_call:
                    after_call = False
                    continue
                fields = line.split()
                if len(fields) >= 2:
                    costs[current] += int(fields[1])
    return dict(sorted(costs.items(), key=lambda item: -item[1]))


def top_functions(paths, inclusive, count=TOP):
    """The `count` costliest functions of a process by callgrind_annotate, summed over its threads'
    profiles (their call trees are disjoint), as [instructions, "file:function [object]"]."""
    costs = defaultdict(int)
    for path in paths:
        out = subprocess.run(
            [
                "callgrind_annotate",
                f"--inclusive={'yes' if inclusive else 'no'}",
                "--auto=no",
                "--threshold=100",
                path,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for line in out.splitlines():
            match = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*)$", line)
            if match and match.group(2) != "PROGRAM TOTALS":
                costs[match.group(2)] += int(match.group(1).replace(",", ""))
    return [[cost, function] for function, cost in sorted(costs.items(), key=lambda item: -item[1])[:count]]


def measure(config, action, valgrind, runs, timeout):
    """The native check, then `runs` counted runs (stopping at the first valgrind cannot do)."""
    config.run(action)
    for index in range(runs):
        out_file = os.path.join(config.workdir, f"cg-{config.name}-{index}")
        try:
            pid = config.run(action, valgrind_prefix(valgrind, out_file, config.hints), f"cg{index}", timeout)
        except Unmeasurable as error:
            config.unmeasurable = str(error)
            print(f"  {config.name:15} NOT MEASURABLE under valgrind: {error}", flush=True)
            return
        found = profiles(out_file)
        if pid not in found:
            raise HarnessError(f"{config.name}: no callgrind profile for the runner's pid {pid} ({found})")
        paths = found.pop(pid)
        runner = process_figures(paths)
        others = {p: process_figures(other)["all_threads"] for p, other in found.items()}
        config.runs.append({"runner": runner, "others": others})
        print(
            f"  {config.name:15} run {index + 1}: {runner['all_threads']:>12,} instructions in "
            f"{runner['threads']} threads (main thread {runner['main_thread']:,})"
            + (f"; other processes {others}" if others else ""),
            flush=True,
        )
        if index == 0:
            config.profile = profile(paths)


def profile(paths):
    """Where a process's instructions went: by ELF object (self cost), and its top functions."""
    by_object = defaultdict(int)
    for path in paths:
        for obj, cost in self_cost_by_object(path).items():
            by_object[obj] += cost
    return {
        "by_object": dict(sorted(by_object.items(), key=lambda item: -item[1])),
        "top_inclusive": top_functions(paths, inclusive=True),
        "top_self": top_functions(paths, inclusive=False),
    }


def daemon_session(binary, valgrind, workdir, name, blobs, runner_argv, action, actions, fuse_dir, timeout):
    """Instructions of the daemon (under callgrind) for: start, upload `blobs`, `actions` runs of
    the action with `runner_argv` (native) against it, SIGTERM."""
    daemon = Daemon(binary, workdir, name, fuse_dir=fuse_dir)
    out_file = os.path.join(daemon.root, "cg")
    wrapper = os.path.join(daemon.root, "bin", "under-valgrind")
    with open(wrapper, "w") as script:
        prefix = " ".join(valgrind_prefix(valgrind, out_file, [FUSE_HINT]))
        script.write(f'#!/bin/sh\nexec {prefix} {daemon.argv0} "$@"\n')
    os.chmod(wrapper, 0o755)
    daemon.argv0 = wrapper  # the daemon itself still runs as its `buildbox-casd` symlink
    try:
        daemon.start()
        daemon.upload(blobs)
        config = Configuration(name, runner_argv + [f"--remote={daemon.url}"], daemon.root)
        for index in range(actions):
            config.run(action, label=f"a{index}", timeout=timeout)
        pid = daemon.process.pid
        daemon.stop()
    finally:
        daemon.kill()
    found = profiles(out_file)
    if pid not in found:
        raise HarnessError(f"{name}: no callgrind profile for the daemon's pid {pid} ({found})")
    return process_figures(found[pid])["all_threads"]


def measure_daemon(
    binary, runner, valgrind, workdir, name, blobs, action, actions, fuse_dir, timeout, pairs=2
):
    """The daemon's instructions per action: (session with `actions` actions - session without) /
    `actions`, for `pairs` pairs."""
    per_action, sessions = [], []
    for pair in range(pairs):
        idle = daemon_session(
            binary, valgrind, workdir, f"{name}-idle{pair}", blobs, runner, action, 0, fuse_dir, timeout
        )
        busy = daemon_session(
            binary, valgrind, workdir, f"{name}-busy{pair}", blobs, runner, action, actions, fuse_dir, timeout
        )
        sessions.append({"idle": idle, "busy": busy})
        per_action.append((busy - idle) / actions)
        print(
            f"  {name:15} daemon: idle session {idle:>13,}, with {actions} actions {busy:>13,}: "
            f"{per_action[-1]:>11,.0f} per action",
            flush=True,
        )
    return {"sessions": sessions, "per_action": per_action, "actions": actions}


def unmount_leftovers(workdir):
    """Lazily unmounts whatever a killed run left mounted under `workdir` (a FUSE stage)."""
    with open("/proc/self/mountinfo") as mountinfo:
        points = [line.split()[4] for line in mountinfo if line.split()[4].startswith(workdir + "/")]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_runner_options(parser)
    parser.add_argument("--runs", type=int, default=2, help="counted runs per configuration (default 2)")
    parser.add_argument(
        "--daemon-actions",
        type=int,
        default=0,
        help="actions per daemon session for the daemon's side (default 0: skip)",
    )
    parser.add_argument(
        "--timeout", type=int, default=120, help="seconds a run under valgrind may take (default 120)"
    )
    parser.add_argument(
        "--dir",
        default="/dev/shm" if os.path.isdir("/dev/shm") else None,
        help="where caches and profiles go",
    )
    parser.add_argument("--json", help="also write the raw figures here")
    args = parser.parse_args()
    if args.runs < 1 or args.daemon_actions < 0:
        parser.error("--runs must be at least 1 and --daemon-actions at least 0")

    started = time.monotonic()
    valgrind = shutil.which("valgrind")
    if not valgrind:
        print("FAIL: valgrind not found (apt-get install valgrind)", file=sys.stderr)
        return 1
    version = subprocess.run([valgrind, "--version"], capture_output=True, text=True).stdout.strip()
    rebox, candidate_casd = candidate_daemon(args)
    fuse_dir = os.path.dirname(bundled_buildbox("buildbox-fuse"))
    workdir = tempfile.mkdtemp(prefix="rbx-bench-cg-", dir=args.dir)
    action, blobs = true_action()
    daemons, configs, daemon_figures = [], [], {}
    try:
        cand_link, base_link = runner_link(args.candidate, workdir), runner_link(args.baseline_run, workdir)
        for name, casd, runner in (
            ("run+casd", candidate_casd, cand_link),
            ("bb-run+bb-casd", args.baseline_casd, base_link),
        ):
            is_bb = os.path.realpath(casd) == os.path.realpath(args.baseline_casd)
            daemon = Daemon(casd, workdir, name, fuse_dir=fuse_dir if is_bb else None).start()
            daemons.append(daemon)
            daemon.upload(blobs)
            configs.append(Configuration(name, [runner, f"--remote={daemon.url}"], workdir))
        if rebox:
            store = fill_store(candidate_casd, workdir, blobs)
            configs.insert(
                1,
                Configuration(
                    "embedded",
                    [os.path.abspath(args.candidate), "run", f"--cas-dir={store}"],
                    workdir,
                    hints=[FUSE_HINT],
                ),
            )
        print(
            f"callgrind bench: `true`, 3-file root; {version}; candidate {args.candidate}, candidate casd "
            f"{candidate_casd}\n  {args.runs} counted runs each of {' '.join(c.name for c in configs)}; "
            f"valgrind {' '.join(VALGRIND_OPTIONS)}",
            flush=True,
        )
        for config in configs:
            measure(config, action, valgrind, args.runs, args.timeout)
            unmount_leftovers(workdir)
        for daemon in daemons:
            daemon.stop()
        if args.daemon_actions:
            for name, casd, runner in (
                ("casd", candidate_casd, cand_link),
                ("bb-casd", args.baseline_casd, base_link),
            ):
                daemon_figures[name] = measure_daemon(
                    casd,
                    [runner],
                    valgrind,
                    workdir,
                    name,
                    blobs,
                    action,
                    args.daemon_actions,
                    None,
                    args.timeout,
                )
        if not any(c.runs for c in configs):
            raise HarnessError("valgrind could measure no configuration")
    except HarnessError as error:
        print(f"FAIL: {error}", file=sys.stderr)
        return 1
    finally:
        for daemon in daemons:
            daemon.kill()
        unmount_leftovers(workdir)
        shutil.rmtree(workdir, ignore_errors=True)

    raw = {
        "valgrind": version,
        "valgrind_options": VALGRIND_OPTIONS,
        "candidate": args.candidate,
        "candidate_casd": candidate_casd,
        "baseline_run": args.baseline_run,
        "baseline_casd": args.baseline_casd,
        "configs": {
            c.name: {
                "argv": c.argv,
                "instructions": [run["runner"]["all_threads"] for run in c.runs],
                "main_thread_instructions": [run["runner"]["main_thread"] for run in c.runs],
                "other_processes": [run["others"] for run in c.runs],
                "unmeasurable": c.unmeasurable,
                "profile": c.profile,
            }
            for c in configs
        },
        "daemon": daemon_figures,
    }
    print_summary(raw)
    print(f"\n  (bench took {time.monotonic() - started:.0f} s)")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(raw, out, indent=1)
    return 0


def print_summary(raw):
    base = raw["configs"]["bb-run+bb-casd"]["instructions"]
    print(
        f"\n{'configuration':16} {'Minstr':>9} {'spread':>7} {'ratio':>6} {'main thr':>9} {'spread':>7}  "
        f"instructions by object (self)"
    )
    for name, figures in raw["configs"].items():
        counts = figures["instructions"]
        if not counts:
            print(
                f"{name:16} {'-':>9} {'-':>7} {'-':>6} {'-':>9} {'-':>7}  not measurable: {figures['unmeasurable']}"
            )
            continue
        median = statistics.median(counts)
        spread = (max(counts) - min(counts)) / median
        ratio = f"{median / statistics.median(base):6.2f}" if base else f"{'-':>6}"
        objects = ", ".join(
            f"{os.path.basename(obj)} {count / 1e6:.2f}M"
            for obj, count in list(figures["profile"]["by_object"].items())[:4]
        )
        main = figures["main_thread_instructions"]
        main_median = statistics.median(main)
        main_spread = (max(main) - min(main)) / main_median
        print(
            f"{name:16} {median / 1e6:9.2f} {spread:7.1%} {ratio} {main_median / 1e6:9.2f} {main_spread:7.1%}  {objects}"
        )
    for name, figures in raw["configs"].items():
        if figures["profile"]:
            print(f"\n{name}: top {TOP} functions by inclusive instructions (first counted run)")
            for count, function in figures["profile"]["top_inclusive"]:
                print(f"  {count:>12,}  {function[:150]}")
    for name, figures in raw["daemon"].items():
        per_action = figures["per_action"]
        print(
            f"\n{name} daemon per action: median {statistics.median(per_action) / 1e6:.2f} Minstr "
            f"({min(per_action) / 1e6:.2f}-{max(per_action) / 1e6:.2f}), {figures['actions']} actions a session"
        )


def unmeasurable_reason(figures):
    """The short form of why valgrind could not count a configuration."""
    reason = figures.get("unmeasurable") or "no figure"
    calls = sorted(set(re.findall(r"\b(openat2|pidfd_open|open_tree|move_mount|fsopen|fsconfig|fsmount|mount_setattr)\b", reason)))
    if calls:
        return f"valgrind lacks {', '.join(calls)}"
    return reason.splitlines()[0][:80]


def rows(raw):
    """Instructions of one action in the runner's process: the candidate runner and the embedded
    one against buildbox-run, each only when valgrind could run it; the daemons' per action when
    measured."""
    configs = raw["configs"]
    base = configs["bb-run+bb-casd"]["instructions"]
    out = []
    for name, label in (
        ("run+casd", "instructions of one action, runner process"),
        ("embedded", "instructions of one action, embedded runner"),
    ):
        if name not in configs:
            continue
        counts = configs[name].get("instructions")
        out.append(
            Row(
                "callgrind",
                label,
                "Minstr",
                rebox=Stats.of(counts, 1e-6) if counts else None,
                peer=Stats.of(base, 1e-6) if base else None,
                note="" if counts else f"not measurable: {unmeasurable_reason(configs[name])}",
            )
        )
    daemon = raw.get("daemon", {})
    if "casd" in daemon and "bb-casd" in daemon:
        out.append(
            Row(
                "callgrind",
                "casd instructions per action",
                "Minstr",
                rebox=Stats.of(daemon["casd"]["per_action"], 1e-6),
                peer=Stats.of(daemon["bb-casd"]["per_action"], 1e-6),
                note="buildbox-casd with its hardlink stager",
            )
        )
    return out


if __name__ == "__main__":
    sys.exit(main())
