"""Interactive `bst shell ELEMENT` under a real terminal: a tmux pane stands in for the user.

A tmux server on a private socket (under the session's temp dir, config /dev/null: nothing of a
user's tmux is touched) runs a caller shell, `bash --norc --noprofile` with the BstSession's
environment (so `bst` finds the session's buildbox-casd and buildbox-run symlinks first on PATH)
and the prompt CALLER_PROMPT. Keys are typed with `tmux send-keys`, the screen read with
`tmux capture-pane`. The check, for a stack element with a userland (busybox) and a.bst's files:

  1. `bst ... shell ELEMENT` (the session's own bst arguments) shows the sandbox's prompt
     (BuildStream's PS1, `[KEY@ELEMENT:$PWD]$ `; its default shell command is `sh -i`);
  2. `echo SLEEPING; sleep 30; echo NOT-INTERRUPTED`, then Ctrl-C once SLEEPING shows: the
     interrupt ends the sandbox's foreground command, not the sandbox's shell nor bst, and the
     sandbox's prompt returns (the terminal's signals reach the job inside the sandbox);
  3. SANDBOX_COMMAND prints what only the sandbox can (arithmetic done by the sandbox's shell on a
     file only the sandbox has, and whether its stdin is a terminal), then the prompt returns;
  4. `exit` brings back the caller's prompt; the caller's `echo BST-EXIT=$?` says 0 (bst was not
     stopped by SIGTTIN/SIGTTOU, which would be 128 + signal, and the shell's status was passed on);
  5. the caller still reads and runs what is typed (it was left with the terminal, in the
     foreground), and bash never reported a stopped job;
  6. a process ran as the session's buildbox-run while the shell was open (ProcessWatcher).

The tmux server and anything left under its pane are ended in every case.
"""

import os
import re
import shlex
import shutil
import subprocess
import time

import psutil

from bst_build import ProcessWatcher, is_elf
from casd import HarnessError

CALLER_PROMPT = "CALLER$"  # bash prints it with a trailing space; lines are compared right-stripped
SANDBOX_COMMAND = 'echo "IN-$((6*7))-$(cat /usr/share/a/alpha.txt)"; [ -t 0 ] && echo TTY'
SANDBOX_EXPECT = ["IN-42-alpha", "TTY"]
INTERRUPTED_COMMAND = "echo SLEEPING; sleep 30; echo NOT-INTERRUPTED"
PROMPT_TIMEOUT = 120  # bst loads the project, starts casd and stages before the prompt
STEP_TIMEOUT = 30  # one command in the shell or the caller (SIGINT must beat the 30 s sleep)
END_TIMEOUT = 20
PANE_COLUMNS, PANE_ROWS = 200, 50


class PaneError(Exception):
    """What the pane showed instead of what was waited for."""


def sandbox_prompt(element):
    """BuildStream's PS1 for ELEMENT (App.shell_prompt), with or without colours (capture-pane
    drops them), `$PWD` expanded or not."""
    return re.compile(r"^\[\S+@" + re.escape(element) + r":[^\]]*\]\$")


class Pane:
    """A tmux server on its own socket holding one pane that runs `argv` with `env`."""

    def __init__(self, socket, env, argv):
        self.socket = socket
        self.env = env
        tmux = shutil.which("tmux")
        if tmux is None:
            raise HarnessError("tmux not found: install it (scripts/peers does)")
        self.base = [tmux, "-S", socket, "-f", "/dev/null"]
        size = ["-x", str(PANE_COLUMNS), "-y", str(PANE_ROWS)]
        self.tmux(["new-session", "-d"] + size + ["--"] + argv)
        self.pane = psutil.Process(int(self.tmux(["display-message", "-p", "#{pane_pid}"]).strip()))
        self.seen = {self.pane}  # every process seen under the pane: some leave it (setsid, orphans)

    def tmux(self, args):
        done = subprocess.run(
            self.base + args,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=STEP_TIMEOUT,
        )
        if done.returncode != 0:
            raise HarnessError(f"tmux {' '.join(args[:2])} exited {done.returncode}: {done.stderr.strip()}")
        return done.stdout

    def type(self, text, at):
        """Types `text` literally, then Enter, at the prompt on line `at`; returns the index of
        the line where its echo ends. Busybox's line editor may break the echo of a typed line
        anywhere (even with a wide pane), so the echo is found by its text, whitespace ignored."""
        self.tmux(["send-keys", "-l", "--", text])
        self.tmux(["send-keys", "Enter"])
        want = "".join(text.split())
        deadline = time.monotonic() + STEP_TIMEOUT
        while True:
            lines = self.lines()
            echoed = ""
            for index in range(at, len(lines)):
                echoed += "".join(lines[index].split())
                if echoed.endswith(want):
                    return index
            if time.monotonic() > deadline:
                raise PaneError(f"the echo of {text!r} after line {at}: not seen within {STEP_TIMEOUT}s")
            time.sleep(0.05)

    def keys(self, *names):
        """Sends named keys (`C-c`, ...)."""
        self.tmux(["send-keys", "--"] + list(names))

    def lines(self):
        """Everything the pane has shown, history included, wrapped lines joined. Notes the pane's
        processes on the way."""
        self.note_processes()
        text = self.tmux(["capture-pane", "-p", "-J", "-S", "-", "-E", "-"])
        lines = [line.rstrip() for line in text.splitlines()]
        while lines and not lines[-1]:
            lines.pop()
        return lines

    def note_processes(self):
        try:
            self.seen.update(self.pane.children(recursive=True))
        except psutil.NoSuchProcess:
            pass

    def wait_for(self, found, what, after, timeout=STEP_TIMEOUT, fails=None):
        """Polls the pane until a line after index `after` satisfies `found`; returns its index.
        A line satisfying `fails` first, or the timeout, raises PaneError."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.lines()
            for index in range(after + 1, len(lines)):
                if fails is not None and fails(lines[index]):
                    raise PaneError(f"{what}: line {lines[index]!r} came first")
                if found(lines[index]):
                    return index, lines
            if time.monotonic() > deadline:
                raise PaneError(f"{what}: not seen within {timeout}s")
            time.sleep(0.1)

    def close(self):
        """Kills the server (its pane's processes get SIGHUP), then ends whatever is left of the
        processes seen under the pane (bst, casd, the runner, the sandbox), even if they left it."""
        self.note_processes()
        subprocess.run(self.base + ["kill-server"], env=self.env, capture_output=True, timeout=STEP_TIMEOUT)
        _, alive = psutil.wait_procs(list(self.seen), timeout=5)
        for signal_method in ("terminate", "kill"):
            for proc in alive:
                try:
                    getattr(proc, signal_method)()  # psutil checks the pid still names that process
                except psutil.NoSuchProcess:
                    pass
            _, alive = psutil.wait_procs(alive, timeout=END_TIMEOUT)
        if os.path.exists(self.socket):
            os.unlink(self.socket)


def interactive_shell(session, element):
    """Runs the interactive check (module docstring) in `session` on `element`. Returns
    (problems, sandbox output lines, seconds from typing `bst shell` to the sandbox's prompt)."""
    env = {key: value for key, value in session.env.items() if not key.startswith("TMUX")}
    env["PS1"] = CALLER_PROMPT + " "
    pane = Pane(os.path.join(session.root, "tmux.sock"), env, ["bash", "--norc", "--noprofile"])
    watcher = ProcessWatcher([session.tool("buildbox-run")])
    prompt = sandbox_prompt(element)
    is_caller_prompt = CALLER_PROMPT.__eq__
    problems, output, seconds = [], [], None
    try:
        start, _ = pane.wait_for(is_caller_prompt, "the caller's prompt", -1)
        watcher.start()
        began = time.monotonic()
        typed = pane.type(shlex.join(session.bst + ["shell", element]), start)
        shown, _ = pane.wait_for(
            prompt.match, "the sandbox's prompt", typed, PROMPT_TIMEOUT, fails=is_caller_prompt
        )
        seconds = time.monotonic() - began

        typed = pane.type(INTERRUPTED_COMMAND, shown)
        sleeping, _ = pane.wait_for("SLEEPING".__eq__, "SLEEPING before the sleep", typed)
        time.sleep(0.5)  # the sleep has started (an interrupted echo would do as well)
        pane.keys("C-c")
        interrupted, _ = pane.wait_for(
            prompt.match,
            "the sandbox's prompt after Ctrl-C",
            sleeping,
            fails=lambda line: line in ("NOT-INTERRUPTED", CALLER_PROMPT),
        )

        typed = pane.type(SANDBOX_COMMAND, interrupted)  # last, so that `exit` passes on its status, 0
        ran, lines = pane.wait_for(prompt.match, "the sandbox's prompt after a command", typed)
        output = lines[typed + 1 : ran]
        if output != SANDBOX_EXPECT:
            problems.append(f"the sandbox printed {output!r} for {SANDBOX_COMMAND!r}, not {SANDBOX_EXPECT!r}")

        typed = pane.type("exit", ran)
        back, _ = pane.wait_for(is_caller_prompt, "the caller's prompt after `exit`", typed)
        watcher.done.set()
        typed = pane.type('echo "BST-EXIT=$?"', back)
        status, lines = pane.wait_for(lambda line: line.startswith("BST-EXIT="), "BST-EXIT=", typed)
        if lines[status] != "BST-EXIT=0":
            problems.append(f"the caller saw bst shell end with {lines[status]}, not BST-EXIT=0")
        typed = pane.type('echo "CALLER-$((3+4))-ALIVE"', status + 1)
        _, lines = pane.wait_for("CALLER-7-ALIVE".__eq__, "the caller's answer to a command", typed)
        stopped = [line for line in lines if re.search(r"\bStopped\b", line)]
        if stopped:
            problems.append(f"the caller's bash reported a stopped job: {stopped!r}")
    except PaneError as error:
        problems.append(str(error))
    finally:
        watcher.done.set()
        if watcher.is_alive():
            watcher.join()
        try:
            screen = pane.lines()
        except (HarnessError, subprocess.TimeoutExpired) as error:
            screen = [f"(pane unreadable: {error})"]
        pane.close()
    if not watcher.seen and is_elf(session.runner):
        problems.append(f"no process ran as {session.tool('buildbox-run')} during the interactive shell")
    if problems:
        problems = [
            f"{session.name}: interactive bst shell: "
            + "\n  ".join(problems)
            + "\n--- the pane (last 60 lines)\n"
            + "\n".join(screen[-60:])
            + "\n"
            + log_tails(session)
        ]
    return problems, output, seconds


def log_tails(session, lines=20):
    """The end of the session's bst logs and of the last casd log (the shell's daemon)."""
    casd_logs = os.path.join(session.root, "logs", "_casd")
    paths = list(session.logs)
    if os.path.isdir(casd_logs):
        newest = max(os.scandir(casd_logs), key=lambda entry: entry.stat().st_mtime, default=None)
        if newest is not None:
            paths.append(newest.path)
    out = []
    for path in paths:
        with open(path, errors="replace") as log:
            text = log.read().splitlines()[-lines:]
        out.append(f"--- {path} (last {len(text)} lines)\n" + "\n".join(text))
    return "\n".join(out)
