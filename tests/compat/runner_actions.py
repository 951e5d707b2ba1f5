"""Actions that pin down the runner itself (its sandbox, not the daemon's staging), for `run-actions`.

RUNNER_ACTIONS are compared with the real buildbox-run like the casd action set. KNOWN_DIFFERENCES
are the cases where buildbox-run 1.4.25 is wrong (CONTRACTS.md, "Where BuildBox falls short"): each
says what BuildBox does (`buildbox`, checked on the oracle, so the claim stays true) and what the
better behaviour is (`better`); a candidate must do one or the other, and the report says which.
Both checks take an `Invocation` (runner.py) and the outputs as `runner.outputs` gives them (empty
without an ActionResult) and return a list of problems.
"""

from dataclasses import dataclass

from runner import ActionSpec

# Only what every sandbox of the contract shows alike: no mount table, inode numbers or times.
SANDBOX_VIEW = ActionSpec(
    name="sandbox-view",
    script="""
hostname
id
for d in null zero full random urandom tty pts shm; do test -e /dev/$d && echo "/dev/$d present"; done
echo x > /dev/null && echo "/dev/null writable"
head -c 4 /dev/zero | wc -c
test -r /proc/self/status && echo "/proc mounted"
ls -A /tmp | wc -l
touch /tmp/scratch && echo "/tmp writable"
tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort
grep -E '^Cap(Prm|Eff|Bnd|Amb)' /proc/self/status
""",
    expect_stdout=["buildbox", "/dev/null present", "/proc mounted", "0", "/tmp writable", "lo"],
)

ENVIRONMENT_EXACT = ActionSpec(
    name="environment-exact",
    env={"PATH": "/bin", "ONLY": "this", "EMPTY": "", "WITH_SPACES": "a b  c", "HOME": "/nowhere"},
    script="env | sort",
    expect_stdout=["EMPTY=", "HOME=/nowhere", "ONLY=this", "PATH=/bin", "WITH_SPACES=a b  c"],
)

WORKING_DIRECTORY_CREATED = ActionSpec(
    name="working-directory-created",
    cwd="not/there/yet",
    create_cwd=False,
    script="pwd; echo here > here.txt",
    output_paths=["here.txt"],
    expect={"not/there/yet/here.txt": "here\n"},
    expect_stdout=["/not/there/yet"],
)

KILLED_BY_SIGNAL = ActionSpec(
    name="killed-by-signal",
    script="echo before; kill -9 $$",
    output_paths=[],
    expect_exit=137,
    expect_stdout=["before"],
)

BACKGROUND_PROCESS = ActionSpec(
    name="background-process",
    script="sleep 59.123 & echo started",
    output_paths=[],
    expect_stdout=["started"],
    max_seconds=20,  # the runner must not wait for the background sleep...
    no_process_left="sleep 59.123",  # ...nor leave it running
)

NETWORK_ON = ActionSpec(
    name="network-on",
    platform={"network": "on"},
    script="tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort",
    output_paths=[],
    expect_stdout=["lo"],
)

RUNNER_ACTIONS = [
    SANDBOX_VIEW,
    ENVIRONMENT_EXACT,
    WORKING_DIRECTORY_CREATED,
    KILLED_BY_SIGNAL,
    BACKGROUND_PROCESS,
    NETWORK_ON,
]


@dataclass
class KnownDifference:
    """An action buildbox-run gets wrong: what it does, and what a better runner does instead."""

    spec: ActionSpec
    why: str
    buildbox: object  # (Invocation, outputs) -> [problems]
    better: object  # (Invocation, outputs) -> [problems]


def _no_result(code):
    def check(run, _entries):
        problems = [] if run.returncode == code else [f"runner exited {run.returncode}, not {code}"]
        return problems + ([] if run.result is None else ["an ActionResult was written"])

    return check


def _result(exit_code=None, present=(), absent=(), symlinks=(), files=(), dirs=()):
    """The runner exited 0 and wrote an ActionResult with these properties."""

    def check(run, entries):
        if run.result is None:
            return [f"no ActionResult (runner exited {run.returncode})"]
        problems = [] if run.returncode == 0 else [f"runner exited {run.returncode}"]
        if exit_code == "nonzero" and run.result.exit_code == 0:
            problems.append("exit_code 0")
        elif exit_code not in (None, "nonzero") and run.result.exit_code != exit_code:
            problems.append(f"exit_code {run.result.exit_code}, not {exit_code}")
        problems += [f"{p}: not captured" for p in present if p not in entries]
        problems += [f"{p}: captured, should not be" for p in absent if p in entries]
        got_links = {(s.path, s.target) for s in run.result.output_symlinks}
        got_links |= {(s.path, s.target) for s in run.result.output_file_symlinks}
        problems += [
            f"output symlink {s} missing (got {sorted(got_links)})" for s in symlinks if s not in got_links
        ]
        got_files = {f.path for f in run.result.output_files}
        problems += [
            f"{f} not in output_files (got {sorted(got_files)})" for f in files if f not in got_files
        ]
        got_dirs = {d.path for d in run.result.output_directories}
        problems += [
            f"{d} not in output_directories (got {sorted(got_dirs)})" for d in dirs if d not in got_dirs
        ]
        return problems

    return check


def _timed_out_buildbox(run, entries):
    problems = [] if run.returncode == 142 else [f"runner exited {run.returncode}, not 142"]
    if run.result is None or run.result.exit_code != 137:
        problems.append("no ActionResult with exit_code 137")
    return problems + [f"{p}: captured" for p in entries]


def _timed_out_better(run, entries):
    problems = _result(exit_code="nonzero", present=["buildstream/build/early.txt"])(run, entries)
    # The runner itself may report the timeout by a documented exit status; a result is required.
    problems = [p for p in problems if not p.startswith("runner exited")]
    if "buildstream/build/late.txt" in entries:
        problems.append("late.txt captured: the action was not killed at its timeout")
    if run.seconds > 20:
        problems.append(f"took {run.seconds:.0f}s for a 1 s timeout")
    return problems


KNOWN_DIFFERENCES = [
    KnownDifference(
        spec=ActionSpec(
            name="output-path-is-symlink",
            script="echo x > target; ln -s target link",
            output_paths=["link", "target"],
        ),
        why="an output path that is a symlink aborts buildbox-run (exit 1, no ActionResult); "
        "it should be captured as an output symlink",
        buildbox=_no_result(1),
        better=_result(exit_code=0, symlinks=[("link", "target")], files=["target"]),
    ),
    KnownDifference(
        spec=ActionSpec(
            name="legacy-output-fields",
            script="echo f > f.txt; mkdir d; echo g > d/g",
            output_paths=[],
            output_files=["f.txt"],
            output_directories=["d"],
        ),
        why="deprecated Command.output_files/output_directories are silently ignored by "
        "buildbox-run; REAPI v2 clients that still send them expect them captured",
        buildbox=_result(exit_code=0, absent=["buildstream/build/f.txt", "buildstream/build/d/g"]),
        better=_result(exit_code=0, files=["f.txt"], dirs=["d"], present=["buildstream/build/d/g"]),
    ),
    KnownDifference(
        spec=ActionSpec(
            name="timeout",
            script="echo early > early.txt; sleep 30; echo late > late.txt",
            output_paths=["early.txt", "late.txt"],
            timeout=1,
        ),
        why="at Action.timeout buildbox-run exits 142 while writing exit_code 137 and no outputs, "
        "so callers report a runner crash; the sandbox should be killed, what it wrote captured, "
        "and the timeout reported as such",
        buildbox=_timed_out_buildbox,
        better=_timed_out_better,
    ),
]
