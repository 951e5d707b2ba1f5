"""The cache bench_expiry.py expires: a million small objects written once as a template, and the
copy of it, made of hard links, that each daemon run gets (see bench_expiry's docstring).

Objects are named by the SHA-256 of a distinct content (an 8-byte counter, then fixed random
bytes) in the layout both daemons share, CACHE/cas/objects/<2 hex>/<62 hex>, mode 0444; by
default each is a sparse file of its length (neither daemon reads an object to scan or expire it).
"""

import concurrent.futures
import hashlib
import multiprocessing
import os
import shutil
import subprocess
import time

from casd import HarnessError

BLOBS, MIN_SIZE, MAX_SIZE = 1_000_000, 256, 1024
FAN_OUTS = [f"{i:02x}" for i in range(256)]
# buildbox-casd stores the empty blob at start; it is no write of ours.
EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
DISK_RESERVED = 2_000_000_000  # both daemons' --reserved default: the quota must stay clear of it


def blob_size(index):
    """A spread of sizes from MIN_SIZE to MAX_SIZE (a multiplicative hash of the index)."""
    return MIN_SIZE + (index * 2654435761) % (MAX_SIZE - MIN_SIZE + 1)


def write_blobs(template, copy, content, pad, worker, workers, count):
    """Worker process: every `workers`-th blob from `worker` on, created in `template` (with its
    bytes if `content`, else as a sparse file of its length) and linked into `copy`. Returns
    the bytes (st_size) written."""
    sha256, flags, total = hashlib.sha256, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0
    template_fd = os.open(template, os.O_RDONLY | os.O_DIRECTORY)
    copy_fd = os.open(copy, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for index in range(worker, count, workers):
            size = blob_size(index)
            data = index.to_bytes(8, "little") + pad[: size - 8]
            name = sha256(data).hexdigest()
            path = f"{name[:2]}/{name[2:]}"
            fd = os.open(path, flags, 0o444, dir_fd=template_fd)
            try:
                if content:
                    if os.write(fd, data) != size:
                        raise OSError(f"short write of {name}")
                else:
                    os.ftruncate(fd, size)
            finally:
                os.close(fd)
            os.link(path, path, src_dir_fd=template_fd, dst_dir_fd=copy_fd)
            total += size
    finally:
        os.close(template_fd)
        os.close(copy_fd)
    return total


class Template:
    """The 1M-object cache (`objects`), its names per fan-out dir, and the copy of it every run
    gets (`copy`, made of hard links). Objects a run writes are moved to `graveyard`, not
    unlinked: a freed inode slows every create on this ext4 for a minute or more (with no
    journal, it skips recently deleted inodes when it allocates one)."""

    def __init__(self, root, count, workers, content):
        self.objects = os.path.join(root, "template-objects")
        self.copy = os.path.join(root, "copy-objects")
        self.graveyard = os.path.join(root, "graveyard")
        self.count = count
        os.makedirs(self.graveyard)
        for fan_out in FAN_OUTS:
            os.makedirs(os.path.join(self.objects, fan_out))
            os.makedirs(os.path.join(self.copy, fan_out))
        pad = os.urandom(MAX_SIZE)
        started = time.perf_counter()
        # fork: no gRPC channel or thread exists yet in this process.
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            jobs = [(self.objects, self.copy, content, pad, k, workers, count) for k in range(workers)]
            self.bytes = sum(pool.starmap(write_blobs, jobs))
        self.generate_s = time.perf_counter() - started
        started = time.perf_counter()
        os.sync()  # so that no writeback of it runs during a measurement
        self.sync_s = time.perf_counter() - started
        self.names = {
            fan_out: frozenset(os.listdir(os.path.join(self.objects, fan_out))) for fan_out in FAN_OUTS
        }
        found = sum(len(names) for names in self.names.values())
        if found != count:
            raise HarnessError(f"template: {found} objects written, expected {count}")
        self.mtime_sample = self.sample_mtimes()
        self.runs = 0  # names the graveyard's entries

    def sample_mtimes(self):
        """mtimes of every 61st object of every 16th fan-out dir: to check no run changed the
        shared inodes."""
        sample = {}
        for fan_out in FAN_OUTS[::16]:
            for name in sorted(self.names[fan_out])[::61]:
                path = os.path.join(self.objects, fan_out, name)
                sample[path] = os.lstat(path).st_mtime_ns
        return sample

    def check_untouched(self, name):
        changed = [p for p, mtime in self.mtime_sample.items() if os.lstat(p).st_mtime_ns != mtime]
        if changed:
            raise HarnessError(f"{name}: the run changed the mtime of template objects, e.g. {changed[0]}")

    def diff_and_restore(self, threads, restore=True):
        """Puts the copy back as the template is, and says what the run changed: the template's
        objects gone (count, bytes, newest mtime), the new ones (count, bytes), and how many of a
        sample of the kept template objects are older than the newest gone (LRU order broken).
        Not put back if not `restore` (after the last run). Threads, a fan-out dir at a time: link
        and rename run without the GIL."""
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            parts = list(pool.map(lambda fan_out: self.restore_fan_out(fan_out, restore), FAN_OUTS))
        newest_gone = max(part["newest_gone"] for part in parts)
        kept_sample = [path for part in parts for path in part["kept_sample"]]
        older_kept = sum(os.lstat(path).st_mtime_ns < newest_gone for path in kept_sample)
        os.sync()
        totals = {key: sum(part[key] for part in parts) for key in ("gone", "gone_bytes", "new", "new_bytes")}
        return dict(totals, kept_sampled=len(kept_sample), kept_older_than_gone=older_kept)

    def restore_fan_out(self, fan_out, restore):
        source, dest = os.path.join(self.objects, fan_out), os.path.join(self.copy, fan_out)
        present = set(os.listdir(dest))
        expected = self.names[fan_out]
        out = {"gone": 0, "gone_bytes": 0, "newest_gone": 0, "new": 0, "new_bytes": 0}
        for number, name in enumerate(present - expected):
            path = os.path.join(dest, name)
            out["new"] += fan_out + name != EMPTY
            out["new_bytes"] += os.lstat(path).st_size
            if restore:
                os.rename(path, os.path.join(self.graveyard, f"{fan_out}-{self.runs}-{number}"))
        for name in expected - present:
            stat = os.lstat(os.path.join(source, name))
            out["gone"] += 1
            out["gone_bytes"] += stat.st_size
            out["newest_gone"] = max(out["newest_gone"], stat.st_mtime_ns)
            if restore:
                os.link(os.path.join(source, name), os.path.join(dest, name))
        out["kept_sample"] = [os.path.join(source, name) for name in sorted(present & expected)[::499]]
        return out


def remove_tree(path, workers):
    """`rm -rf` of `path`, its grandchildren (the fan-out dirs of the trees in it) split among
    `workers` processes."""
    if not os.path.isdir(path):
        return
    parts = []
    for child in sorted(os.listdir(path)):
        child = os.path.join(path, child)
        if os.path.isdir(child) and not os.path.islink(child):
            parts += [os.path.join(child, grandchild) for grandchild in sorted(os.listdir(child))]
    jobs = [
        subprocess.Popen(["rm", "-rf", "--", *parts[k::workers]]) for k in range(workers) if parts[k::workers]
    ]
    for job in jobs:
        job.wait()
    shutil.rmtree(path, ignore_errors=True)


def disk_headroom(path, blobs, content):
    """Refuses a directory without the inodes and space for the template (a block per object
    with content, none for a sparse one), the daemons' --reserved and some slack."""
    stat = os.statvfs(path)
    inodes_needed = int(blobs * 1.05) + 100_000
    block = max(stat.f_frsize, 4096)
    bytes_needed = (blobs * block * -(-MAX_SIZE // block) if content else 0) + DISK_RESERVED + 2 * 2**30
    free_bytes = stat.f_bavail * stat.f_frsize
    if stat.f_favail < inodes_needed or free_bytes < bytes_needed:
        raise HarnessError(
            f"{path}: {stat.f_favail} inodes and {free_bytes / 2**30:.1f} GiB free; {blobs} blobs need "
            f"{inodes_needed} inodes and {bytes_needed / 2**30:.1f} GiB (use --dir or fewer --blobs)"
        )
