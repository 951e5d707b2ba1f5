"""Step `run-actions`: a candidate buildbox-run runs the action sets; the real one is the oracle.

Three runs, each on a fresh daemon, each runner invoked through a symlink named `buildbox-run`
with `--remote=unix:SOCK --action=F --action-result=F --no-logs-capture`:
  oracle          the real buildbox-run against the real buildbox-casd (buildbox-fuse on its PATH,
                  as BuildStream runs it);
  run+bb-casd     the candidate runner against the real buildbox-casd (same PATH);
  run+casd        the candidate runner against the candidate daemon.
The actions are the casd set (actions.py) and the runner set (runner_actions.RUNNER_ACTIONS).
Checked for each run: every action's outputs and stdout are what it must produce, the runner
exits 0, stays within its time bound and leaves no process; afterwards the CAS is intact, no
object changed mode, and SIGTERM stops the daemon cleanly with no stage left (a runner must
release what it staged). Across runs: each action's summary (exit code, output digests, output
symlinks, stdout) equals the oracle's.
Then each of runner_actions.KNOWN_DIFFERENCES runs on all three: the oracle must still behave as
BuildBox is documented to, and the candidate either the same way or the better way; the report
says which, per run.

    runner_compat.py --run PATH [--casd PATH] [--only NAME,...] [--workdir DIR] [--keep]
"""

import argparse
import os
import sys
import tempfile
import time

import grpc

from actions import ACTIONS
from casd import Daemon, HarnessError, bundled_buildbox
from run_actions import compare, conclude, run_all
from runner import invoke, outputs, prepare, runner_link
from runner_actions import KNOWN_DIFFERENCES, RUNNER_ACTIONS

SPECS = ACTIONS + RUNNER_ACTIONS


def judge_difference(known, run, entries, is_oracle):
    """(verdict, problems) for one known difference: verdict 'buildbox' or 'better' or None."""
    as_buildbox = known.buildbox(run, entries)
    if is_oracle:
        return ("buildbox", []) if not as_buildbox else (None, as_buildbox)
    if not as_buildbox:
        return "buildbox", []
    as_better = known.better(run, entries)
    if not as_better:
        return "better", []
    return None, [f"neither as buildbox-run ({'; '.join(as_buildbox)}) nor better ({'; '.join(as_better)})"]


def run_known_differences(daemon, runner, workdir, is_oracle):
    """Runs every known difference on `daemon`; returns ({name: verdict}, [problems])."""
    verdicts, problems = {}, []
    for known in KNOWN_DIFFERENCES:
        spec = known.spec
        run = invoke(daemon, spec, runner, prepare(daemon, spec, workdir))
        entries = outputs(daemon, spec, run.result) if run.result is not None else {}
        verdict, found = judge_difference(known, run, entries, is_oracle)
        verdicts[spec.name] = verdict
        problems += [f"{daemon.name}: {spec.name}: {p}" for p in found]
    return verdicts, problems


def run_config(name, runner, casd, fuse_dir, specs, workdir, is_oracle):
    """One configuration, start to stop; returns (summaries, verdicts, problems)."""
    daemon = Daemon(casd, workdir, name, fuse_dir=fuse_dir)
    try:
        daemon.start()
        summaries, problems = run_all(daemon, specs, runner, workdir)
        verdicts, found = run_known_differences(daemon, runner, workdir, is_oracle)
        daemon.stop()  # exit 0 on SIGTERM, no stage dir, mount or process left
        return summaries, verdicts, problems + found
    except (HarnessError, grpc.RpcError) as error:
        daemon.kill()
        return {}, {}, [f"{name}: {error}"]


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", required=True, help="the candidate buildbox-run-compatible binary")
    parser.add_argument("--casd", required=True, help="the candidate buildbox-casd-compatible binary")
    parser.add_argument("--baseline-run", default=bundled_buildbox("buildbox-run"), help="the oracle runner")
    parser.add_argument("--baseline-casd", default=bundled_buildbox("buildbox-casd"), help="the oracle casd")
    parser.add_argument("--only", help="comma-separated action names (default: all)")
    parser.add_argument("--workdir", help="where temp dirs go (default: a new dir under /tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dirs")
    args = parser.parse_args()

    specs = SPECS
    if args.only:
        wanted = args.only.split(",")
        unknown = set(wanted) - {s.name for s in SPECS}
        if unknown:
            parser.error(f"unknown action(s) {sorted(unknown)}; known: {[s.name for s in SPECS]}")
        specs = [s for s in SPECS if s.name in wanted]

    workdir = args.workdir or tempfile.mkdtemp(prefix="rebox-run-")
    os.makedirs(workdir, exist_ok=True)
    fuse_dir = os.path.dirname(bundled_buildbox("buildbox-fuse"))
    candidate = runner_link(args.run, workdir)
    configs = [
        ("oracle", runner_link(args.baseline_run, workdir), args.baseline_casd),
        ("run+bb-casd", candidate, args.baseline_casd),
        ("run+casd", candidate, args.casd),
    ]
    print(
        f"buildbox-run action set: {len(specs)} actions + {len(KNOWN_DIFFERENCES)} known differences\n"
        f"  candidate runner {args.run}, candidate casd {args.casd}"
    )
    problems, results, verdicts = [], {}, {}
    for name, runner, casd in configs:
        started = time.monotonic()
        summaries, verdicts[name], found = run_config(
            name, runner, casd, fuse_dir, specs, workdir, name == "oracle"
        )
        results[name] = summaries
        problems += found
        print(
            f"  {name}: {len(summaries)}/{len(specs)} actions ran, {len(found)} problems, "
            f"{time.monotonic() - started:.1f}s"
        )
    for name, _, _ in configs[1:]:
        problems += [
            f"{name} vs oracle: {p}" for p in compare("oracle", results["oracle"], name, results[name])
        ]
    print("  known differences (CONTRACTS.md, 'Where BuildBox falls short'); each run behaves:")
    for known in KNOWN_DIFFERENCES:
        seen = ", ".join(f"{name} {verdicts[name].get(known.spec.name) or 'WRONG'}" for name, _, _ in configs)
        print(f"    {known.spec.name}: {seen}\n      ({known.why})")
    summary = f"all {len(specs)} actions: expected outputs, identical results in every run, CAS intact"
    return conclude(problems, summary, workdir, args.keep)


if __name__ == "__main__":
    sys.exit(main())
