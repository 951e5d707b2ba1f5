"""The action set: what buildbox-run is asked to do against each daemon.

Every action runs in a busybox root. Its stdout is part of what is compared between daemons, so
scripts print only what does not vary from run to run (no inode numbers, no current times, no
directory mtimes, no link counts).
"""

from runner import TREE_AND_DIRECTORY, ActionSpec

STAGED_MTIME = 1321009871  # what buildbox-casd gives staged files without an mtime property
BIG = bytes(range(256)) * (5 * 4096)  # 5 MiB: more than one batch, so uploaded by ByteStream


def _stage_inputs(tree):
    tree.file("data/plain.txt", "plain\n")
    tree.file("data/exec.sh", '#!/bin/sh\necho "exec.sh ran with $1"\n', executable=True)
    tree.file("data/empty", "")
    tree.file("data/dup-1.txt", "same content\n")
    tree.file("data/dup-2.txt", "same content\n")
    tree.file("data/sub/deep/file.txt", "deep\n")
    tree.directory("data/empty-dir")
    tree.symlink("data/rel-link", "plain.txt")
    tree.symlink("data/dir-link", "sub")
    tree.symlink("data/abs-link", "/bin/busybox")
    tree.symlink("data/up-link", "../data/plain.txt")
    tree.symlink("data/dangling", "does/not/exist")


STAGE_INPUTS = ActionSpec(
    name="stage-inputs",
    inputs=_stage_inputs,
    script="""
cd /data
for f in plain.txt exec.sh empty dup-1.txt dup-2.txt sub/deep/file.txt; do stat -c '%n %a %s %Y %F' "$f"; done
for l in rel-link dir-link abs-link up-link dangling; do echo "$l -> $(readlink "$l")"; done
cat rel-link dir-link/deep/file.txt up-link
./exec.sh arg
test -d empty-dir && echo "empty-dir is a directory"
ls -A empty-dir | wc -l
ls -A / | sort
""",
    expect={
        "data/plain.txt": "plain\n",
        "data/exec.sh": ("exec", '#!/bin/sh\necho "exec.sh ran with $1"\n'),
        "data/empty": "",
        "data/dup-2.txt": "same content\n",
        "data/sub/deep/file.txt": "deep\n",
        "data/rel-link": ("symlink", "plain.txt"),
        "data/abs-link": ("symlink", "/bin/busybox"),
        "data/dangling": ("symlink", "does/not/exist"),
    },
    expect_stdout=[
        f"plain.txt 644 6 {STAGED_MTIME} regular file",
        f"exec.sh 755 37 {STAGED_MTIME} regular file",
        f"empty 644 0 {STAGED_MTIME} regular empty file",
        "rel-link -> plain.txt",
        "dangling -> does/not/exist",
        "plain",
        "deep",
        "plain",
        "exec.sh ran with arg",
        "empty-dir is a directory",
        "0",
    ],
)


def _node_property_inputs(tree):
    tree.file("props/mtime.txt", "m\n", mtime=1600000000)
    tree.file("props/mtime-nanos.txt", "n\n", mtime=(1600000000, 500000000))
    tree.file("props/mode-600.txt", "600\n", unix_mode=0o600)
    tree.file("props/mode-640.txt", "640\n", unix_mode=0o640)
    tree.file("props/mode-700.txt", "700\n", unix_mode=0o700)
    tree.file("props/exec-750.sh", "#!/bin/sh\necho 750\n", executable=True, unix_mode=0o750)
    tree.file("props/both.txt", "both\n", mtime=1500000000, unix_mode=0o604)


NODE_PROPERTIES = ActionSpec(
    name="node-properties",
    inputs=_node_property_inputs,
    script="""
cd /props
for f in *; do stat -c '%n %a %Y' "$f"; done
stat -c '%y' mtime-nanos.txt
./exec-750.sh
""",
    output_paths=["../../props"],
    output_node_properties=["mtime"],
    expect={
        "props/mtime.txt": [("props", (1600000000, 0), None), "m\n"],
        "props/mtime-nanos.txt": ("props", (1600000000, 500000000), None),
        "props/both.txt": ("props", (1500000000, 0), None),
        "props/mode-600.txt": ("props", (STAGED_MTIME, 0), None),
    },
    expect_dir_mtimes={"props": (STAGED_MTIME, 0)},  # staged directories get the fixed mtime too
    expect_stdout=[
        "both.txt 604 1500000000",
        "exec-750.sh 750 1321009871",
        "mode-600.txt 600 1321009871",
        "mode-640.txt 640 1321009871",
        "mode-700.txt 700 1321009871",
        "mtime-nanos.txt 644 1600000000",
        "mtime.txt 644 1600000000",
        "2020-09-13 12:26:40.500000000 +0000",
        "750",
    ],
)


def _build_dir_inputs(tree):
    build = "buildstream/build"
    tree.file(f"{build}/append.txt", "original\n")
    tree.file(f"{build}/truncate.txt", "to be truncated\n")
    tree.file(f"{build}/chmod.txt", "chmod me\n")
    tree.file(f"{build}/unexec.sh", "#!/bin/sh\n", executable=True)
    tree.file(f"{build}/remove.txt", "remove me\n")
    tree.file(f"{build}/rename.txt", "rename me\n")
    tree.file(f"{build}/overwrite.txt", "0123456789\n")
    tree.file(f"{build}/shared-a.txt", "shared\n")
    tree.file(f"{build}/shared-b.txt", "shared\n")
    tree.file("etc/shared.txt", "shared\n")  # same blob, in the read-only part
    tree.file("etc/original.txt", "original\n")


IN_PLACE_WRITES = ActionSpec(
    name="in-place-writes",
    inputs=_build_dir_inputs,
    read_only_root=True,
    script="""
echo appended >> append.txt
: > truncate.txt
chmod 0755 chmod.txt
chmod 0644 unexec.sh
rm remove.txt
mv rename.txt renamed.txt
printf 'AB' | dd of=overwrite.txt bs=1 seek=3 conv=notrunc 2>/dev/null
echo changed >> shared-a.txt
cat shared-b.txt /etc/shared.txt /etc/original.txt
for f in *; do stat -c '%n %a %s' "$f"; done
""",
    output_paths=["."],
    expect={
        "buildstream/build/append.txt": "original\nappended\n",
        "buildstream/build/truncate.txt": "",
        "buildstream/build/chmod.txt": ("exec", "chmod me\n"),
        "buildstream/build/unexec.sh": "#!/bin/sh\n",
        "buildstream/build/remove.txt": ("absent",),
        "buildstream/build/rename.txt": ("absent",),
        "buildstream/build/renamed.txt": "rename me\n",
        "buildstream/build/overwrite.txt": "012AB56789\n",
        "buildstream/build/shared-a.txt": "shared\nchanged\n",
        "buildstream/build/shared-b.txt": "shared\n",
    },
    expect_stdout=["shared", "shared", "original", "append.txt 644 18", "chmod.txt 755 9"],
)

# Runs after IN_PLACE_WRITES on the same daemon: stages the blobs it wrote to in place again.
REUSE_AFTER_WRITES = ActionSpec(
    name="reuse-after-writes",
    inputs=_build_dir_inputs,
    read_only_root=True,
    script="""
cat append.txt truncate.txt shared-a.txt /etc/shared.txt overwrite.txt
stat -c '%n %a' chmod.txt unexec.sh
""",
    output_paths=["."],
    expect={
        "buildstream/build/append.txt": "original\n",
        "buildstream/build/truncate.txt": "to be truncated\n",
        "buildstream/build/unexec.sh": ("exec", "#!/bin/sh\n"),
    },
    expect_stdout=[
        "original",
        "to be truncated",
        "shared",
        "shared",
        "0123456789",
        "chmod.txt 644",
        "unexec.sh 755",
    ],
)

OUTPUTS_OF_EACH_KIND = ActionSpec(
    name="outputs-of-each-kind",
    read_only_root=True,
    script="""
printf 'file\n' > out-file.txt
printf '#!/bin/sh\n' > out-exec && chmod 0755 out-exec
mkdir -p out-dir/sub/empty nested/deeper empty-dir
printf 'in dir\n' > out-dir/file.txt
printf 'sub\n' > out-dir/sub/file.txt
printf '#!/bin/sh\n' > out-dir/tool && chmod 0700 out-dir/tool
ln -s file.txt out-dir/link
ln -s ../../nowhere out-dir/dangling
ln -s sub out-dir/dir-link
ln out-dir/file.txt out-dir/hardlink.txt
printf 'deeper\n' > nested/deeper/file.txt
""",
    output_paths=[
        "out-file.txt",
        "out-exec",
        "out-dir",
        "missing-file",
        "nested/deeper/file.txt",
        "empty-dir",
    ],
    output_directory_format=TREE_AND_DIRECTORY,
    expect={
        "buildstream/build/out-file.txt": "file\n",
        "buildstream/build/out-exec": ("exec", "#!/bin/sh\n"),
        "buildstream/build/out-dir/file.txt": "in dir\n",
        "buildstream/build/out-dir/hardlink.txt": "in dir\n",
        "buildstream/build/out-dir/sub/file.txt": "sub\n",
        "buildstream/build/out-dir/tool": ("exec", "#!/bin/sh\n"),
        "buildstream/build/out-dir/link": ("symlink", "file.txt"),
        "buildstream/build/out-dir/dangling": ("symlink", "../../nowhere"),
        "buildstream/build/out-dir/dir-link": ("symlink", "sub"),
        "buildstream/build/nested/deeper/file.txt": "deeper\n",
        "buildstream/build/missing-file": ("absent",),
    },
)

CAPTURE_NODE_PROPERTIES = ActionSpec(
    name="capture-node-properties",
    read_only_root=True,
    script="""
mkdir out
printf 'a\n' > out/a.txt
printf 'b\n' > out/b.txt && chmod 0640 out/b.txt
printf '#!/bin/sh\n' > out/c.sh && chmod 0750 out/c.sh
touch -d @1500000000 out/a.txt out/b.txt
touch -d @1400000000 out/c.sh
touch -d @1300000000 out  # a captured directory carries its mtime too
""",
    output_paths=["out"],
    output_node_properties=["mtime", "unix_mode"],
    expect={
        "buildstream/build/out/a.txt": ("props", (1500000000, 0), "0o644"),
        "buildstream/build/out/b.txt": ("props", (1500000000, 0), "0o640"),
        "buildstream/build/out/c.sh": [("props", (1400000000, 0), "0o750"), ("exec", "#!/bin/sh\n")],
    },
    expect_dir_mtimes={"buildstream/build/out": (1300000000, 0)},
)

EXIT_CODE = ActionSpec(
    name="exit-code",
    read_only_root=True,
    script="printf 'written before failing\\n' > partial.txt; echo failing; exit 7",
    output_paths=["."],
    expect_exit=7,
    expect={"buildstream/build/partial.txt": "written before failing\n"},
    expect_stdout=["failing"],
)

UID_GID = ActionSpec(
    name="uid-gid",
    read_only_root=True,
    writable=["buildstream-install"],
    platform={"unixUID": "1000", "unixGID": "1000"},
    inputs=lambda tree: tree.file("buildstream/build/input.txt", "input\n"),
    script="""
id -u; id -g
echo more >> input.txt
touch created.txt
mkdir -p /buildstream-install/usr/share
cp input.txt /buildstream-install/usr/share/
stat -c '%n %u %g %a' created.txt /buildstream-install/usr/share/input.txt
""",
    output_paths=[".", "../../buildstream-install"],
    expect={
        "buildstream/build/input.txt": "input\nmore\n",
        "buildstream/build/created.txt": "",
        "buildstream-install/usr/share/input.txt": "input\nmore\n",
    },
    expect_stdout=["1000", "1000", "created.txt 1000 1000 644"],
)

LARGE_FILES = ActionSpec(
    name="large-files",
    read_only_root=True,
    inputs=lambda tree: tree.file("buildstream/build/big.bin", BIG),
    script="""
wc -c < big.bin
cp big.bin copy.bin && echo tail >> copy.bin
dd if=/dev/zero bs=65536 count=48 2>/dev/null | tr '\\0' 'z' > generated.bin
wc -c < generated.bin
""",
    output_paths=["."],
    expect={
        "buildstream/build/big.bin": BIG,
        "buildstream/build/copy.bin": BIG + b"tail\n",
        "buildstream/build/generated.bin": b"z" * (65536 * 48),
    },
    expect_stdout=[str(len(BIG)), str(65536 * 48)],
)


def _many_inputs(tree):
    for d in range(10):
        for f in range(100):
            tree.file(f"buildstream/build/d{d:02}/f{f:03}.txt", f"dir {d} file {f}\n")


MANY_FILES = ActionSpec(
    name="many-files",
    inputs=_many_inputs,
    script="""
find . -type f | wc -l
for d in d00 d07 d09; do echo changed >> $d/f050.txt; rm $d/f099.txt; done
mkdir new && for i in $(seq 1 100); do echo "$i" > new/$i; done
""",
    expect={
        "buildstream/build/d07/f050.txt": "dir 7 file 50\nchanged\n",
        "buildstream/build/d07/f099.txt": ("absent",),
        "buildstream/build/d08/f099.txt": "dir 8 file 99\n",
        "buildstream/build/new/100": "100\n",
    },
    expect_stdout=["1000"],
)

BST_ELEMENT_SHAPE = ActionSpec(
    name="bst-element-shape",
    cwd="buildstream/compat/element.bst",
    read_only_root=True,
    writable=["buildstream-install"],
    inputs=lambda tree: (
        tree.file("usr/bin/tool", '#!/bin/sh\necho "tool $*"\n', executable=True)
        .file("usr/share/doc/readme", "readme\n")
        .symlink("usr/lib", "share")
        .file("buildstream/compat/element.bst/source.c", "int main() {}\n")
    ),
    script="""
PATH=/usr/bin:$PATH tool built > build.log
mkdir -p /buildstream-install/usr/bin /buildstream-install/usr/share/doc
cp /usr/bin/tool /buildstream-install/usr/bin/
cp source.c /buildstream-install/usr/share/doc/
ln -s tool /buildstream-install/usr/bin/tool-link
cat build.log
""",
    output_paths=[".", "../../../buildstream-install"],
    expect={
        "buildstream/compat/element.bst/build.log": "tool built\n",
        "buildstream/compat/element.bst/source.c": "int main() {}\n",
        "buildstream-install/usr/bin/tool": ("exec", '#!/bin/sh\necho "tool $*"\n'),
        "buildstream-install/usr/bin/tool-link": ("symlink", "tool"),
    },
    expect_stdout=["tool built"],
)

# SubtreeReadOnly enforced, as BuildStream runs buildbox-casd (with buildbox-fuse: EROFS). The
# hardlink stager lets a root action write there, a known BuildBox shortfall, so it is no oracle.
READ_ONLY_ENFORCED = ActionSpec(
    name="read-only-enforced",
    read_only_root=True,
    writable=["buildstream-install"],
    inputs=lambda tree: tree.file("etc/config", "config\n").file("usr/share/data", "data\n"),
    script="""
# subshells: a redirection error in a special builtin (`:`) would end `sh -e` itself
(echo more >> /etc/config) 2>/dev/null && echo "appended to /etc/config" || echo "/etc/config refused"
(: > /usr/share/data) 2>/dev/null && echo "truncated /usr/share/data" || echo "/usr/share/data refused"
(mkdir /new-top-dir) 2>/dev/null && echo "made /new-top-dir" || echo "/new-top-dir refused"
(rm /etc/config) 2>/dev/null && echo "removed /etc/config" || echo "rm /etc/config refused"
(chmod 0777 /etc/config) 2>/dev/null && echo "chmodded /etc/config" || echo "chmod /etc/config refused"
echo built > built.txt && echo "build dir writable"
echo installed > /buildstream-install/installed.txt && echo "install dir writable"
touch /tmp/scratch && echo "tmp writable"
cat /etc/config /usr/share/data
""",
    output_paths=[".", "../../buildstream-install"],
    oracles=("fuse",),
    expect={
        "buildstream/build/built.txt": "built\n",
        "buildstream-install/installed.txt": "installed\n",
    },
    expect_stdout=[
        "/etc/config refused",
        "/usr/share/data refused",
        "/new-top-dir refused",
        "rm /etc/config refused",
        "chmod /etc/config refused",
        "build dir writable",
        "install dir writable",
        "tmp writable",
        "config",
        "data",
    ],
)

ACTIONS = [
    STAGE_INPUTS,
    NODE_PROPERTIES,
    IN_PLACE_WRITES,
    REUSE_AFTER_WRITES,
    OUTPUTS_OF_EACH_KIND,
    CAPTURE_NODE_PROPERTIES,
    EXIT_CODE,
    UID_GID,
    LARGE_FILES,
    MANY_FILES,
    BST_ELEMENT_SHAPE,
    READ_ONLY_ENFORCED,
]
