"""Run one REAPI Action with the real buildbox-run against a daemon and summarise what came back.

The summary holds everything a caller can observe: buildbox-run's exit status, the ActionResult's
exit code and output digests (files, directories, symlinks), and the action's stdout (with
`--no-logs-capture` the action writes straight to buildbox-run's stdout). Two daemons that serve
buildbox-run alike give equal summaries.
"""

import os
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

from buildstream._protos.build.bazel.remote.execution.v2 import remote_execution_pb2 as re_pb2

from casd import HarnessError, digest_key, digest_of
from trees import TreeBuilder, busybox_root, flatten

RUN_TIMEOUT = 60
DIRECTORY_ONLY = re_pb2.Command.OutputDirectoryFormat.DIRECTORY_ONLY
TREE_AND_DIRECTORY = re_pb2.Command.OutputDirectoryFormat.TREE_AND_DIRECTORY

# The environment BuildStream gives a manual element's commands (USER etc. made neutral).
BST_ENV = {
    "PATH": "/usr/bin:/bin",
    "SHELL": "/bin/sh",
    "TERM": "dumb",
    "USER": "builder",
    "USERNAME": "builder",
    "LOGNAME": "builder",
    "LC_ALL": "C",
    "HOME": "/tmp",
    "TZ": "UTC",
    "SOURCE_DATE_EPOCH": "1321009871",
}


@dataclass
class ActionSpec:
    """One action of the set: its inputs, command and what its outputs must be.

    `inputs(tree)` adds files to a busybox root. `read_only_root` builds the input root as
    BuildStream does for element builds: the root `SubtreeReadOnly: true`, `dev`, `proc`, `tmp`,
    the working directory and `writable` dirs `SubtreeReadOnly: false`. `expect` maps a path
    (relative to the input root) to the content its output file must hold, or to a tuple
    ("symlink", target) / ("absent",) / ("exec", content) / ("props", mtime, unix_mode) (the node
    properties captured for a file). `expect_stdout` lines must be in the
    action's stdout, in order. `expect_dir_mtimes` maps an output directory to the mtime captured
    for it (seconds, nanos). `oracles` names the buildbox-casd stagers whose behaviour the action
    pins down (both by default).

    Runner-facing knobs: `env` replaces BuildStream's environment, `timeout` sets Action.timeout
    (seconds), `output_files`/`output_directories` fill the deprecated Command fields, `create_cwd`
    False leaves the working directory out of the input root, `max_seconds` bounds how long the
    runner may take, and `no_process_left` is a string no process's command line may hold once the
    runner has exited (a marker argument of a background command).
    """

    name: str
    script: str
    inputs: object = None
    cwd: str = "buildstream/build"
    output_paths: list = field(default_factory=lambda: ["../.."])
    output_node_properties: list = field(default_factory=list)
    output_directory_format: int = DIRECTORY_ONLY
    platform: dict = field(default_factory=dict)
    read_only_root: bool = False
    writable: list = field(default_factory=list)
    expect_exit: int = 0
    expect: dict = field(default_factory=dict)
    expect_stdout: list = field(default_factory=list)
    expect_dir_mtimes: dict = field(default_factory=dict)
    oracles: tuple = ("hardlink", "fuse")
    env: dict = None
    timeout: float = None
    output_files: list = field(default_factory=list)
    output_directories: list = field(default_factory=list)
    create_cwd: bool = True
    max_seconds: float = None
    no_process_left: str = None


def build_action(spec):
    """The Action, its blobs and the input root's digest for `spec`."""
    tree = busybox_root(TreeBuilder())
    if spec.inputs:
        spec.inputs(tree)
    if spec.create_cwd:
        tree.directory(spec.cwd)
    if spec.read_only_root:
        tree.directory("", SubtreeReadOnly="true")
        for path in ["dev", "proc", "tmp", spec.cwd, *spec.writable]:
            tree.directory(path, SubtreeReadOnly="false")
    root = tree.build()
    platform = re_pb2.Platform()
    props = {"OSFamily": "linux", "ISA": "x86-64", **spec.platform}
    for name in sorted(props):
        platform.properties.add(name=name, value=props[name])
    env = spec.env if spec.env is not None else dict(BST_ENV, PWD="/" + spec.cwd)
    command = re_pb2.Command(
        arguments=["sh", "-c", "-e", spec.script],
        working_directory=spec.cwd,
        environment_variables=[
            re_pb2.Command.EnvironmentVariable(name=k, value=v) for k, v in sorted(env.items())
        ],
        output_paths=spec.output_paths,
        output_files=spec.output_files,
        output_directories=spec.output_directories,
        output_node_properties=spec.output_node_properties,
        output_directory_format=spec.output_directory_format,
        platform=platform,
    )
    command_bytes = command.SerializeToString()
    tree.blobs[digest_key(digest_of(command_bytes))] = command_bytes
    action = re_pb2.Action(command_digest=digest_of(command_bytes), input_root_digest=root, platform=platform)
    if spec.timeout is not None:
        action.timeout.FromNanoseconds(int(spec.timeout * 1e9))
    return action, tree.blobs


def prepare(daemon, spec, workdir):
    """Upload `spec`'s inputs and Command to `daemon`; returns the path of the Action file."""
    action, blobs = build_action(spec)
    daemon.upload(blobs)
    path = os.path.join(workdir, f"{daemon.name}-{spec.name}.action")
    with open(path, "wb") as out:
        out.write(action.SerializeToString())
    return path


def runner_link(binary, workdir):
    """A symlink named `buildbox-run` to `binary`, as BuildStream finds the runner on PATH (a
    multi-call binary such as rebox dispatches on that name); returns the link's path."""
    bindir = tempfile.mkdtemp(prefix="runner-", dir=workdir)
    link = os.path.join(bindir, "buildbox-run")
    os.symlink(os.path.abspath(binary), link)
    return link


@dataclass
class Invocation:
    """What one runner invocation left: its exit status, the ActionResult it wrote (None if it
    wrote none), the action's stdout (the runner's, with --no-logs-capture), the runner's stderr
    and how long it took."""

    returncode: int
    result: object
    stdout: str
    stderr: str
    seconds: float


def invoke(daemon, spec, runner, action_path, timeout=RUN_TIMEOUT):
    """Run the prepared action with `runner` (a `buildbox-run` link) against `daemon`, however
    it ends; raises only if the runner is still running after `timeout` seconds."""
    base = action_path[: -len(".action")]
    result_path = base + ".result"
    if os.path.exists(result_path):
        os.remove(result_path)
    argv = [
        runner,
        f"--remote={daemon.url}",
        f"--action={action_path}",
        f"--action-result={result_path}",
        "--no-logs-capture",
    ]
    started = time.monotonic()
    with open(base + ".stdout", "wb") as stdout, open(base + ".stderr", "wb") as stderr:
        try:
            process = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise HarnessError(f"{daemon.name}: {spec.name}: {runner} timed out after {timeout}s")
    seconds = time.monotonic() - started
    with open(base + ".stdout", "rb") as out:
        action_stdout = out.read().decode(errors="replace")
    with open(base + ".stderr", "rb") as err:
        runner_stderr = err.read().decode(errors="replace")
    result = None
    if os.path.exists(result_path) and os.path.getsize(result_path) > 0:
        result = re_pb2.ActionResult()
        with open(result_path, "rb") as out:
            result.ParseFromString(out.read())
    return Invocation(process.returncode, result, action_stdout, runner_stderr, seconds)


def execute(daemon, spec, runner, action_path):
    """Run the prepared action with `runner` against `daemon`; returns (summary, ActionResult).
    The runner must exit 0 and write an ActionResult."""
    run = invoke(daemon, spec, runner, action_path)
    if run.returncode != 0 or run.result is None:
        raise HarnessError(
            f"{daemon.name}: {spec.name}: {runner} exited {run.returncode}"
            f"{'' if run.result else ' without an ActionResult'}\n{run.stderr[-3000:]}\n{daemon.log_tail()}"
        )
    if spec.max_seconds is not None and run.seconds > spec.max_seconds:
        raise HarnessError(
            f"{daemon.name}: {spec.name}: the runner took {run.seconds:.1f}s (> {spec.max_seconds}s)"
        )
    if spec.no_process_left:
        # Killed processes may linger for a moment while the kernel tears the sandbox down.
        deadline = time.monotonic() + 2
        while (left := processes_holding(spec.no_process_left)) and time.monotonic() < deadline:
            time.sleep(0.02)
        if left:
            raise HarnessError(f"{daemon.name}: {spec.name}: processes left after the runner exited: {left}")
    return summarise(run.result, run.stdout), run.result


def processes_holding(marker):
    """{pid: command line} of every process whose command line holds `marker`."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                argv = cmdline.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in argv and int(pid) != os.getpid():
            found[int(pid)] = argv
    return found


def summarise(result, action_stdout):
    """What a caller observes of a run, as plain comparable values (timestamps left out)."""

    def props(node_properties):
        return str(node_properties).replace("\n", " ").strip()

    return {
        "exit_code": result.exit_code,
        "output_files": [
            (f.path, digest_key(f.digest), f.is_executable, props(f.node_properties))
            for f in result.output_files
        ],
        "output_directories": [
            (
                d.path,
                digest_key(d.root_directory_digest) if d.HasField("root_directory_digest") else None,
                digest_key(d.tree_digest) if d.HasField("tree_digest") else None,
            )
            for d in result.output_directories
        ],
        "output_symlinks": [(s.path, s.target) for s in result.output_symlinks],
        "output_file_symlinks": [(s.path, s.target) for s in result.output_file_symlinks],
        "output_directory_symlinks": [(s.path, s.target) for s in result.output_directory_symlinks],
        "stdout": action_stdout,
    }


def outputs(daemon, spec, result):
    """Every output as {path relative to the input root: flattened entry} (see trees.flatten)."""
    entries = {}
    for out in result.output_files:
        props = out.node_properties
        mtime = (props.mtime.seconds, props.mtime.nanos) if props.HasField("mtime") else None
        mode = oct(props.unix_mode.value) if props.HasField("unix_mode") else None
        content = daemon.read_blob(out.digest) if out.digest.size_bytes <= 64 * 1024 else None
        entries[os.path.normpath(os.path.join(spec.cwd, out.path))] = (
            "file",
            digest_key(out.digest),
            out.is_executable,
            mtime,
            mode,
            content,
        )
    for out in result.output_directories:
        if not out.HasField("root_directory_digest"):
            raise HarnessError(
                f"{daemon.name}: {spec.name}: output directory {out.path} has no root_directory_digest"
            )
        prefix = os.path.normpath(os.path.join(spec.cwd, out.path))
        for path, entry in flatten(daemon, out.root_directory_digest).items():
            entries[os.path.normpath(os.path.join(prefix, path))] = entry
        if out.HasField("tree_digest"):
            check_tree_matches(daemon, spec, out)
    for out in list(result.output_file_symlinks) + list(result.output_directory_symlinks):
        entries[os.path.normpath(os.path.join(spec.cwd, out.path))] = ("symlink", out.target)
    return entries


def check_tree_matches(daemon, spec, out):
    """With TREE_AND_DIRECTORY, the Tree's root must be the directory root_directory_digest names."""
    tree = re_pb2.Tree()
    tree.ParseFromString(daemon.read_blob(out.tree_digest))
    if digest_of(tree.root.SerializeToString()) != out.root_directory_digest:
        raise HarnessError(
            f"{daemon.name}: {spec.name}: {out.path}: Tree root differs from root_directory_digest"
        )


def check_expectations(spec, summary, entries):
    """Where the outputs or stdout are not what the action must produce: a list of problems."""
    problems = []
    if summary["exit_code"] != spec.expect_exit:
        problems.append(f"exit code {summary['exit_code']}, expected {spec.expect_exit}")
    for path, wants in spec.expect.items():
        for want in wants if isinstance(wants, list) else [wants]:
            problem = _check_entry(entries.get(path), want)
            if problem:
                problems.append(f"{path}: {problem}")
    for path, mtime in spec.expect_dir_mtimes.items():
        got = entries.get(path)
        if got is None or got[0] != "dir" or got[2] != mtime:
            problems.append(f"{path}: expected a directory captured with mtime {mtime}, found {got!r:.100}")
    position = 0
    lines = summary["stdout"].splitlines()
    for want in spec.expect_stdout:
        try:
            position = lines.index(want, position) + 1
        except ValueError:
            problems.append(
                f"stdout lacks the line {want!r} (in order); stdout was:\n{summary['stdout'][-2000:]}"
            )
            break
    return problems


def _check_entry(got, want):
    kind = want[0] if isinstance(want, tuple) else "file"
    if kind == "absent":
        return None if got is None else f"expected absent, found {got!r:.100}"
    if kind == "symlink":
        return None if got == want else f"expected {want!r}, found {got!r:.100}"
    if got is None or got[0] != "file":
        return f"expected a file, found {got!r:.100}"
    if kind == "props":
        return (
            None
            if got[3:5] == want[1:]
            else f"expected captured (mtime, unix_mode) {want[1:]!r}, found {got[3:5]!r}"
        )
    executable, content = (True, want[1]) if kind == "exec" else (False, want)
    content = content.encode() if isinstance(content, str) else content
    if got[2] != executable or got[1] != digest_key(digest_of(content)):
        return (
            f"expected {'an executable' if executable else 'a file'} holding {content!r:.80}, "
            f"found executable={got[2]} holding {got[5]!r:.80}"
        )
    return None
