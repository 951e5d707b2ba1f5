"""BuildStream 2.8.1 builds fixtures/bst-project with a given buildbox-casd; the checkouts must match.

For each daemon (the oracle, then the candidate) the project is copied to a temp dir, its import
source (busybox-static and its applet symlinks) is generated, and `bst build d.bst` runs with a PATH
dir first holding `buildbox-casd` -> the daemon and `buildbox-run` -> the runner, with BuildStream's
config, caches and logs all in temp dirs. `bst artifact checkout --deps run d.bst` then gives a tree
per daemon; they must be identical (names, kinds, modes, contents, symlink targets; checkout
mtimes are the time of checkout, so not compared).

    bst_build.py --casd PATH [--baseline PATH] [--runner PATH] [--workdir DIR] [--keep]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import psutil

from casd import HarnessError, bundled_buildbox
from trees import describe_local, diff

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT = os.path.normpath(os.path.join(HERE, "..", "..", "fixtures", "bst-project"))
BST = os.path.join(os.path.dirname(sys.executable), "bst")
TARGET = "d.bst"
BUILD_TIMEOUT = 300
CHECKOUT_TIMEOUT = 120

CONFIG = """\
# Isolated: no remotes, one builder, everything under {root}.
cachedir: {root}/cache
logdir: {root}/logs
sourcedir: {root}/sources
cache:
  quota: infinity
scheduler:
  fetchers: 1
  builders: 1
  pushers: 1
  network-retries: 0
  on-error: quit
build:
  max-jobs: 1
"""


def generate_busybox_root(dest, busybox="/bin/busybox"):
    """The base element's import source: bin/busybox and bin/APPLET -> busybox."""
    if not os.access(busybox, os.X_OK):
        raise HarnessError(f"{busybox} not found: install the busybox-static package (scripts/peers does)")
    bindir = os.path.join(dest, "bin")
    os.makedirs(bindir)
    shutil.copy2(busybox, os.path.join(bindir, "busybox"))
    applets = subprocess.run([busybox, "--list"], check=True, capture_output=True, text=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            os.symlink("busybox", os.path.join(bindir, applet))


def process_argvs():
    """(pid, argv as bytes) of every process now running, those gone meanwhile left out."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                yield int(pid), cmdline.read().split(b"\0")
        except OSError:
            continue


class ProcessWatcher(threading.Thread):
    """Watches /proc for processes started as any of `argv0s`: evidence BuildStream ran our
    buildbox-casd and buildbox-run. `seen` is the set of those found so far."""

    def __init__(self, argv0s):
        super().__init__(daemon=True)
        self.argv0s = {a.encode(): a for a in argv0s}
        self.seen = set()
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set() and len(self.seen) < len(self.argv0s):
            for _, argv in process_argvs():
                # argv[1] when the program is a script run by its interpreter
                for arg in argv[:2]:
                    if arg in self.argv0s:
                        self.seen.add(self.argv0s[arg])
            self.done.wait(0.02)


def is_elf(path):
    with open(path, "rb") as binary:
        return binary.read(4) == b"\x7fELF"


def run_logged(argv, env, log_path, timeout, what):
    """Run bst; returns (wall seconds, CPU seconds of its process tree: bst reaps the casd and
    runners it starts). On timeout end it and everything it started (casd and buildbox-run leave
    its group)."""
    with open(log_path, "wb") as log:
        started = time.perf_counter()
        process = subprocess.Popen(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
        # Polled rather than waited for, so that a hung bst can be ended (5 ms is 0.1% of a build).
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                end_tree(process)
                raise HarnessError(f"{what} timed out after {timeout}s")
            time.sleep(0.005)
        seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise HarnessError(f"{what} exited {process.returncode}")
    return seconds, usage.ru_utime + usage.ru_stime


def end_tree(process):
    """SIGTERM the process and all its descendants, then SIGKILL what is left after 20 s."""
    try:
        tree = [psutil.Process(process.pid)]
        tree += tree[0].children(recursive=True)
    except psutil.NoSuchProcess:
        return
    for proc in tree:
        try:
            proc.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(tree, timeout=20)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    process.wait()


def tail_logs(root, log_paths, lines=60):
    """The end of every log worth reading after a failure: bst's output, element build logs, casd's."""
    paths = list(log_paths)
    for dirpath, _, filenames in os.walk(os.path.join(root, "logs")):
        paths += [os.path.join(dirpath, name) for name in sorted(filenames)]
    out = []
    for path in paths:
        if not os.path.isfile(path):
            continue
        with open(path, errors="replace") as log:
            text = log.read().splitlines()[-lines:]
        out.append(f"--- {path} (last {len(text)} lines)\n" + "\n".join(text))
    return "\n".join(out)


class BstSession:
    """One isolated BuildStream setup: a copy of the project, a PATH dir first holding
    `buildbox-casd` -> `casd` and `buildbox-run` -> `runner`, and config, caches, logs and TMPDIR
    all under a fresh temp dir."""

    def __init__(self, name, casd, runner, workdir):
        self.name, self.casd, self.runner = name, casd, runner
        self.label = name  # what errors call it
        self.root = tempfile.mkdtemp(prefix=f"{name}-", dir=workdir)  # short: sockets go under it
        self.project = os.path.join(self.root, "project")
        shutil.copytree(PROJECT, self.project, symlinks=True)
        generate_busybox_root(os.path.join(self.project, "files", "busybox-root"))
        self.bindir = os.path.join(self.root, "bin")
        os.makedirs(self.bindir)
        for tool, target in (("buildbox-casd", casd), ("buildbox-run", runner)):
            os.symlink(os.path.abspath(target), os.path.join(self.bindir, tool))
        config = os.path.join(self.root, "buildstream.conf")
        with open(config, "w") as conf:
            conf.write(CONFIG.format(root=self.root))
        env = {key: value for key, value in os.environ.items() if not key.startswith(("XDG_", "BST_"))}
        env.update(
            PATH=f"{self.bindir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            XDG_CACHE_HOME=os.path.join(self.root, "xdg-cache"),
            XDG_CONFIG_HOME=os.path.join(self.root, "xdg-config"),
            XDG_DATA_HOME=os.path.join(self.root, "xdg-data"),
            HOME=self.root,
            TMPDIR=os.path.join(self.root, "tmp"),
        )
        os.makedirs(env["TMPDIR"])
        self.env = env
        self.bst = [BST, "--no-interactive", "--config", config, "--directory", self.project]
        self.logs = []

    def tool(self, name):
        return os.path.join(self.bindir, name)

    def run(self, args, log_name, timeout):
        """Run `bst ARGS`, output to a log under the root; returns (wall seconds, CPU seconds of
        its process tree). On failure the error carries the end of every log worth reading."""
        log = os.path.join(self.root, log_name)
        self.logs.append(log)
        what = f"{self.label}: bst {' '.join(args[:2])}"
        try:
            return run_logged(self.bst + list(args), self.env, log, timeout, what)
        except HarnessError as error:
            raise HarnessError(f"{error}\n{tail_logs(self.root, self.logs)}")

    def check_tools_found(self):
        """BuildStream looks tools up on PATH before its bundled dir (utils._get_host_tool_internal)."""
        for tool in ("buildbox-casd", "buildbox-run"):
            found = shutil.which(tool, path=self.env["PATH"])
            if found != self.tool(tool):
                raise HarnessError(
                    f"{self.name}: {tool} on BuildStream's PATH is {found}, not {self.tool(tool)}"
                )

    def build(self):
        """`bst build` then `bst artifact checkout --deps run`; returns the checkout's directory.
        Processes must have run as our buildbox-casd and our buildbox-run."""
        checkout = os.path.join(self.root, "checkout")
        watcher = ProcessWatcher([self.tool("buildbox-casd"), self.tool("buildbox-run")])
        watcher.start()
        started = time.monotonic()
        try:
            self.run(["build", TARGET], "bst-build.log", BUILD_TIMEOUT)
            built = time.monotonic()
            self.run(
                ["artifact", "checkout", "--deps", "run", "--directory", checkout, TARGET],
                "bst-checkout.log",
                CHECKOUT_TIMEOUT,
            )
        finally:
            watcher.done.set()
            watcher.join()
        self.check_tools_found()
        for tool, binary in (("buildbox-casd", self.casd), ("buildbox-run", self.runner)):
            # A script may exec away from its name before it is seen; a binary keeps argv[0].
            if self.tool(tool) not in watcher.seen and is_elf(binary):
                raise HarnessError(f"{self.name}: no process ran as {self.tool(tool)} during the build")
        print(f"  {self.name}: build {built - started:.1f}s, checkout {time.monotonic() - built:.1f}s")
        return checkout


def build(name, casd, runner, workdir):
    """Build the project with `casd` and `runner`; returns the checkout's directory."""
    return BstSession(name, casd, runner, workdir).build()


def check_checkout(entries):
    """What the project's elements must have produced, whichever daemon served them."""
    expected = {
        "usr/share/a/alpha.txt": b"alpha\n",
        "usr/share/b/uid.txt": b"1000\n",
        "usr/share/b/gid.txt": b"1000\n",
        "usr/share/b/alpha-copy.txt": b"alpha\nb was here\n",
        "usr/share/c/edited.txt": b"v1\nv2\n",
        "usr/share/c/truncated.txt": b"",
        "usr/share/c/many/f200.txt": b"file 200\n",
    }
    problems = []
    for path, content in expected.items():
        entry = entries.get(path)
        if entry is None or entry[0] != "file" or entry[2] != content:
            problems.append(f"{path}: expected a file holding {content!r}, found {entry!r:.120}")
    for path in ("usr/bin/a-tool", "usr/bin/b-tool"):
        if entries.get(path, ("", ""))[1] != "0o755":
            problems.append(f"{path}: expected an executable (0755), found {entries.get(path)!r:.120}")
    link = entries.get("usr/share/a/alpha-link")
    if link != ("symlink", "alpha.txt"):
        problems.append(f"usr/share/a/alpha-link: expected a symlink to alpha.txt, found {link!r}")
    manifest = entries.get("usr/share/d/manifest.txt", ("", "", b""))[2]
    if b"/usr/share/c/big.bin 644 1048576" not in manifest:
        problems.append("usr/share/d/manifest.txt does not list big.bin as staged 0644, 1 MiB")
    return problems


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--casd", required=True, help="the candidate buildbox-casd-compatible binary")
    parser.add_argument("--baseline", default=bundled_buildbox("buildbox-casd"), help="the oracle casd")
    parser.add_argument("--runner", default=bundled_buildbox("buildbox-run"), help="buildbox-run to use")
    parser.add_argument("--workdir", help="where temp dirs go (default: a new dir under /tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dirs")
    args = parser.parse_args()

    workdir = args.workdir or tempfile.mkdtemp(prefix="rebox-bst-")
    os.makedirs(workdir, exist_ok=True)
    ok = False
    try:
        print(f"bst build of {PROJECT} ({TARGET}), runner {args.runner}")
        oracle = describe_local(build("oracle", args.baseline, args.runner, workdir))
        candidate = describe_local(build("candidate", args.casd, args.runner, workdir))
        problems = [f"oracle checkout: {p}" for p in check_checkout(oracle)]
        problems += [f"candidate checkout: {p}" for p in check_checkout(candidate)]
        differences = diff(oracle, candidate)
        if differences:
            problems.append(f"checkouts differ ({len(differences)} entries):\n" + "\n".join(differences[:40]))
        if problems:
            raise HarnessError("\n".join(problems))
        print(f"  checkouts identical: {len(oracle)} entries")
        ok = True
    except HarnessError as error:
        print(f"FAIL: {error}", file=sys.stderr)
    finally:
        release_workdir(workdir, ok, args.keep)
    return 0 if ok else 1


def release_workdir(workdir, ok, keep):
    """Removes the step's temp dirs after a success, unless asked to keep them; says where they
    are otherwise."""
    if ok and not keep:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"  (temp dirs kept in {workdir})", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
