"""Step `run-bst`: BuildStream 2.8.1 with a candidate buildbox-run builds fixtures/bst-project.

Three builds, each in its own BstSession (bst_build.py: a copy of the project, a PATH dir first
holding `buildbox-casd` and `buildbox-run` symlinks, caches and logs in temp dirs):
  oracle          the real buildbox-run with the real buildbox-casd;
  run+bb-casd     the candidate runner with the real buildbox-casd;
  run+casd        the candidate runner with the candidate daemon.
Each runs `bst build d.bst` (b.bst is built as build-uid/build-gid 1000, from its `sandbox:`
config), `bst artifact checkout --deps run`, and then `bst shell shell.bst -- sh -c SCRIPT`
non-interactively (stdin /dev/null) twice: once printing what the shell's sandbox sees of the
artifacts, once exiting 3. Checked: processes ran as our buildbox-casd and buildbox-run (in the
build and in the shell); each
checkout holds what the elements must produce and is identical to the oracle's (names, kinds,
modes, contents, symlink targets); the shell's output (in shell.bst, a stack of base.bst and
d.bst) holds the expected lines and equals the oracle's; `bst shell` passes the command's exit
status on, as with the oracle. Then the interactive shell, under a tmux pane on a private
socket (bst_shell_tty.py): the sandbox's prompt appears, Ctrl-C ends a foreground command but
not the shell, a command prints what only the sandbox can, `exit` returns to the caller's shell
with status 0 and the caller still runs what is typed, and a process ran as our buildbox-run;
the oracle must pass it too.

    bst_run.py --run PATH --casd PATH [--workdir DIR] [--keep]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

from bst_build import (
    BUILD_TIMEOUT,
    TARGET,
    BstSession,
    ProcessWatcher,
    check_checkout,
    end_tree,
    is_elf,
    release_workdir,
    tail_logs,
)
from bst_shell_tty import interactive_shell
from casd import HarnessError, bundled_buildbox
from trees import describe_local, diff

SHELL_TIMEOUT = 120
SHELL_TARGET = "shell.bst"  # a stack of base.bst and d.bst: d's artifacts and a userland
SHELL_SCRIPT = """
sleep 1  # long enough for the harness to see the runner in /proc
echo SHELL-BEGIN
id -u
cat /usr/share/b/uid.txt /usr/share/a/alpha.txt
ls /usr/share/c/many | wc -l
b-tool
a-tool from-shell
sha256sum /usr/share/d/manifest.txt | cut -c1-16
echo SHELL-END
"""
SHELL_EXPECT = ["SHELL-BEGIN", "1000", "alpha", "200", "b-tool", "a-tool: from-shell", "SHELL-END"]


def shell(session, script, log_name, must_see_runner=False):
    """`bst shell SHELL_TARGET -- sh -c SCRIPT` with stdin /dev/null: (exit status, the command's
    output between the SHELL-BEGIN and SHELL-END lines, or all of it without them). With
    `must_see_runner` (for a script that lasts a while) a process must run as our buildbox-run."""
    log = os.path.join(session.root, log_name)
    session.logs.append(log)
    argv = session.bst + ["shell", SHELL_TARGET, "--", "sh", "-c", script]
    watcher = ProcessWatcher([session.tool("buildbox-run")])
    watcher.start()
    with open(log, "wb") as err:
        process = subprocess.Popen(
            argv, env=session.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err
        )
        try:
            out, _ = process.communicate(timeout=SHELL_TIMEOUT)
        except subprocess.TimeoutExpired:
            end_tree(process)
            raise HarnessError(
                f"{session.name}: bst shell timed out after {SHELL_TIMEOUT}s\n"
                + tail_logs(session.root, session.logs)
            )
        finally:
            watcher.done.set()
            watcher.join()
    if must_see_runner and not watcher.seen and is_elf(session.runner):
        raise HarnessError(f"{session.name}: bst shell ran no process as {session.tool('buildbox-run')}")
    text = out.decode(errors="replace")
    lines = text.splitlines()
    if "SHELL-BEGIN" in lines and "SHELL-END" in lines:
        lines = lines[lines.index("SHELL-BEGIN") : lines.index("SHELL-END") + 1]
    return process.returncode, lines


def check_shell(name, code, lines):
    """Problems with what `bst shell` printed for SHELL_SCRIPT."""
    if code != 0:
        return [f"{name}: bst shell exited {code}; output:\n" + "\n".join(lines[-40:])]
    position, problems = 0, []
    for want in SHELL_EXPECT:
        try:
            position = lines.index(want, position) + 1
        except ValueError:
            problems.append(f"{name}: bst shell output lacks {want!r} (in order); got {lines!r:.1500}")
            break
    return problems


def run_config(name, casd, runner, workdir):
    """Build, check out and shell into the project, then the interactive shell under tmux;
    returns (checkout entries, shell lines, exit status of the failing shell, the interactive
    shell's problems)."""
    session = BstSession(name, casd, runner, workdir)
    checkout = describe_local(session.build())
    session.run(["build", SHELL_TARGET], "bst-build-shell.log", BUILD_TIMEOUT)
    code, lines = shell(session, SHELL_SCRIPT, "bst-shell.log", must_see_runner=True)
    problems = check_shell(name, code, lines)
    failing, _ = shell(session, "exit 3", "bst-shell-exit.log")
    if problems:
        raise HarnessError("\n".join(problems) + "\n" + tail_logs(session.root, session.logs))
    started = time.monotonic()
    tty_problems, _, prompt_seconds = interactive_shell(session, SHELL_TARGET)
    if not tty_problems:
        print(
            f"  {name}: interactive bst shell {time.monotonic() - started:.1f}s "
            f"(prompt after {prompt_seconds:.1f}s)"
        )
    return checkout, lines, failing, tty_problems


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", required=True, help="the candidate buildbox-run-compatible binary")
    parser.add_argument("--casd", required=True, help="the candidate buildbox-casd-compatible binary")
    parser.add_argument("--baseline-run", default=bundled_buildbox("buildbox-run"), help="the oracle runner")
    parser.add_argument("--baseline-casd", default=bundled_buildbox("buildbox-casd"), help="the oracle casd")
    parser.add_argument("--workdir", help="where temp dirs go (default: a new dir under /tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dirs")
    args = parser.parse_args()

    workdir = args.workdir or tempfile.mkdtemp(prefix="rbx-run-")  # short: casd sockets go under it
    os.makedirs(workdir, exist_ok=True)
    configs = [
        ("oracle", args.baseline_casd, args.baseline_run),
        ("run+bb-casd", args.baseline_casd, args.run),
        ("run+casd", args.casd, args.run),
    ]
    ok = False
    try:
        print(f"bst build + shell of {TARGET}, candidate runner {args.run}, candidate casd {args.casd}")
        seen = {name: run_config(name, casd, runner, workdir) for name, casd, runner in configs}
        oracle_checkout, oracle_shell, oracle_failing, _ = seen["oracle"]
        problems = []
        for name, (checkout, lines, failing, tty_problems) in seen.items():
            problems += [f"{name} checkout: {p}" for p in check_checkout(checkout)]
            problems += tty_problems
            if name == "oracle":
                continue
            differences = diff(oracle_checkout, checkout, right_name=name)
            if differences:
                problems.append(
                    f"{name}: checkout differs from the oracle's ({len(differences)} entries):\n"
                    + "\n".join(differences[:40])
                )
            if lines != oracle_shell:
                problems.append(
                    f"{name}: bst shell printed\n  {lines!r}\n  the oracle's:\n  {oracle_shell!r}"
                )
            if failing != oracle_failing:
                problems.append(
                    f"{name}: bst shell -- exit 3 exited {failing}, with the oracle {oracle_failing}"
                )
        if problems:
            raise HarnessError("\n".join(problems))
        print(
            f"  checkouts identical: {len(oracle_checkout)} entries; bst shell output identical "
            f"({len(oracle_shell)} lines), its exit status passed on ({oracle_failing}); "
            f"interactive bst shell under tmux: prompt, Ctrl-C, command, exit back to the caller "
            f"(status 0), in all {len(seen)} sessions"
        )
        ok = True
    except HarnessError as error:
        print(f"FAIL: {error}", file=sys.stderr)
    finally:
        release_workdir(workdir, ok, args.keep)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
