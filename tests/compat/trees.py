"""Build REAPI Directory trees in memory, and flatten trees read back from a daemon.

An input tree is described path by path (files with content, executable bit and node properties,
symlinks, directories with node properties), then turned into canonical Directory protos (entries
sorted by name) and the blobs to upload.
"""

import functools
import os
import stat
import subprocess

from buildstream._protos.build.bazel.remote.execution.v2 import remote_execution_pb2 as re_pb2
from google.protobuf import timestamp_pb2, wrappers_pb2

from casd import HarnessError, digest_key, digest_of


class _Dir:
    def __init__(self):
        self.files = {}  # name -> FileNode
        self.dirs = {}  # name -> _Dir
        self.symlinks = {}  # name -> target
        self.properties = {}  # node property name -> value (e.g. SubtreeReadOnly)


class TreeBuilder:
    """An input root under construction."""

    def __init__(self):
        self.root = _Dir()
        self.blobs = {}

    def _dir(self, path, create=True):
        node = self.root
        for part in [p for p in path.split("/") if p]:
            if part not in node.dirs:
                if not create:
                    raise HarnessError(f"no directory {path!r} in the tree")
                node.dirs[part] = _Dir()
            node = node.dirs[part]
        return node

    def _split(self, path):
        parent, _, name = path.rpartition("/")
        return self._dir(parent), name

    def file(self, path, content, executable=False, mtime=None, unix_mode=None):
        """Add a file; `mtime` is (seconds, nanos) or seconds, `unix_mode` the permission bits."""
        data = content.encode() if isinstance(content, str) else content
        digest = digest_of(data)
        self.blobs[digest_key(digest)] = data
        node = re_pb2.FileNode(name=path.rpartition("/")[2], digest=digest, is_executable=executable)
        if mtime is not None:
            seconds, nanos = mtime if isinstance(mtime, tuple) else (mtime, 0)
            node.node_properties.mtime.CopyFrom(timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos))
        if unix_mode is not None:
            node.node_properties.unix_mode.CopyFrom(wrappers_pb2.UInt32Value(value=unix_mode))
        parent, name = self._split(path)
        parent.files[name] = node
        return self

    def symlink(self, path, target):
        parent, name = self._split(path)
        parent.symlinks[name] = target
        return self

    def directory(self, path, **properties):
        """Add a directory (and its parents); keyword arguments become its node properties."""
        self._dir(path).properties.update(properties)
        return self

    def build(self):
        """The root Directory's digest; every Directory and file blob is in `self.blobs`."""
        return self._build(self.root)

    def _build(self, node):
        directory = re_pb2.Directory()
        for name in sorted(node.files):
            directory.files.append(node.files[name])
        for name in sorted(node.dirs):
            directory.directories.add(name=name, digest=self._build(node.dirs[name]))
        for name in sorted(node.symlinks):
            directory.symlinks.add(name=name, target=node.symlinks[name])
        for name in sorted(node.properties):
            directory.node_properties.properties.add(name=name, value=node.properties[name])
        data = directory.SerializeToString()
        digest = digest_of(data)
        self.blobs[digest_key(digest)] = data
        return digest


def busybox_root(tree, busybox="/bin/busybox"):
    """A minimal userland in `tree`: bin/busybox and a symlink for each of its applets."""
    content, applets = _busybox(busybox)
    tree.file("bin/busybox", content, executable=True)
    for applet in applets:
        if applet != "busybox":
            tree.symlink(f"bin/{applet}", "busybox")
    return tree


@functools.cache
def _busybox(busybox):
    with open(busybox, "rb") as binary:
        content = binary.read()
    applets = subprocess.run([busybox, "--list"], check=True, capture_output=True, text=True).stdout.split()
    return content, tuple(applets)


def flatten(daemon, root_digest, read_contents=True):
    """A read-back tree as {path: description}, each entry a tuple that compares by value.

    Files: ("file", digest, executable, mtime, unix_mode, content or None if over 64 KiB);
    symlinks: ("symlink", target); directories: ("dir", node properties, mtime). Directories are
    read level by level and small file contents in batches, so large trees read back quickly.
    """
    entries, files = {}, []
    level = [(".", root_digest)]
    while level:
        blobs = daemon.read_blobs([digest for _, digest in level])
        next_level = []
        for path, digest in level:
            directory = re_pb2.Directory()
            directory.ParseFromString(blobs[digest_key(digest)])
            props = directory.node_properties
            mtime = (props.mtime.seconds, props.mtime.nanos) if props.HasField("mtime") else None
            entries[path] = ("dir", tuple((p.name, p.value) for p in props.properties), mtime)
            for node in directory.files:
                files.append((os.path.normpath(os.path.join(path, node.name)), node))
            for node in directory.symlinks:
                entries[os.path.normpath(os.path.join(path, node.name))] = ("symlink", node.target)
            for node in directory.directories:
                next_level.append((os.path.normpath(os.path.join(path, node.name)), node.digest))
        level = next_level
    small = [node.digest for _, node in files if read_contents and node.digest.size_bytes <= 64 * 1024]
    contents = daemon.read_blobs(small) if small else {}
    for path, node in files:
        props = node.node_properties
        mtime = (props.mtime.seconds, props.mtime.nanos) if props.HasField("mtime") else None
        mode = oct(props.unix_mode.value) if props.HasField("unix_mode") else None
        entries[path] = (
            "file",
            digest_key(node.digest),
            node.is_executable,
            mtime,
            mode,
            contents.get(digest_key(node.digest)),
        )
    return entries


def describe_local(root):
    """A local directory as {relative path: (kind, mode, content or target)}; symlinks not followed."""
    entries = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        entries[rel_dir] = ("dir", oct(os.lstat(dirpath).st_mode & 0o7777))
        for name in sorted(filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]):
            path = os.path.join(dirpath, name)
            rel = os.path.normpath(os.path.join(rel_dir, name))
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                entries[rel] = ("symlink", os.readlink(path))
            elif stat.S_ISREG(info.st_mode):
                with open(path, "rb") as content:
                    entries[rel] = ("file", oct(info.st_mode & 0o7777), content.read())
            else:
                entries[rel] = ("special", oct(info.st_mode))
    return entries


def diff(left, right, left_name="oracle", right_name="candidate"):
    """Human-readable differences between two flattened trees (empty when equal)."""
    lines = []
    for path in sorted(set(left) | set(right)):
        a, b = left.get(path), right.get(path)
        if a != b:
            lines.append(f"  {path}:\n    {left_name}: {_short(a)}\n    {right_name}: {_short(b)}")
    return lines


def _short(entry):
    text = repr(entry)
    return text if len(text) < 300 else text[:300] + "..."
