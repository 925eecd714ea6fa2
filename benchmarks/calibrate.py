"""The gate's error rates, measured: `pytest-convergence gate` run many times against the same environment (false
alarms, on a quiet machine and with a busy loop on one core) and against mutants of it (detection), on a cheap
subset of the shipped scenarios. Prints one line per gate as it goes, then the table; asserts nothing.

    python benchmarks/calibrate.py --base .tox/tf221/bin/python            # the full table (about an hour here)
    python benchmarks/calibrate.py --null 2 --null-busy 1 --sleep 1 --reps 1 --mutants sgd-lr   # a quick look

OLD is always the base environment; its first run is made once (by the first gate) and reused by the others
(--old-results), as a stored baseline run would be. NEW is the base itself (null) or a mutant (benchmarks/mutants.py:
the same installed TensorFlow/Keras, patched in one small way at import). Every gate is a real subprocess with the
defaults (max 16 seeds, the default slowdown limit, timing side by side).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mutants

# cheap scenarios that the mutants can reach: SGD defaults (linear), Adam defaults (8 seeds), a schedule, fit's
# shuffling and batches (mini-batches of blobs.csv), and the per-epoch time of the tiny linear fit
SUBSET = (
    "scenarios/linear_sgd.yaml::sgd-default-lr-16-points-converges",
    "scenarios/linear_sgd.yaml::sgd-default-lr-10-points-predicts-12.5",
    "scenarios/adam_seeds.yaml::adam-default-lr-reaches-12.5-for-some-seeds",
    "scenarios/real_models.yaml::schedule-and-early-stopping",
    "scenarios/upgrade_changes.yaml::fit-shuffles-numpy-arrays",
    "scenarios/upgrade_changes.yaml::tiny-linear-fit-epoch-time",
)
MUTANTS = ("sgd-lr", "adam-eps", "init", "shuffle", "batch", "reduction", "schedule")  # and sleep, none


def gate(
    old: str,
    new: str,
    work: Path,
    old_results: Path | None,
    busy: bool,
    args: argparse.Namespace,
    new_results: Path | None = None,
) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    out = work / "gate.json"
    command = [sys.executable, "-m", "pytest_convergence", "gate", old, new, *args.scenarios]
    command += ["--workdir", str(work), "--json", str(out), "--max-seeds", str(args.max_seeds)]
    command += ["--budget", str(args.budget)]
    if old_results is not None:
        command += ["--old-results", str(old_results)]
    if new_results is not None:
        command += ["--new-results", str(new_results)]
    loop = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    started = time.monotonic()
    try:
        done = subprocess.run(command, capture_output=True, text=True)
    finally:
        if loop is not None:
            loop.kill()
            loop.wait()
    seconds = time.monotonic() - started
    (work / "gate.log").write_text(done.stdout + done.stderr, encoding="utf-8")
    if not out.exists():
        return {"exit": done.returncode, "seconds": seconds, "failed": (done.stderr or done.stdout)[-500:]}
    found = json.loads(out.read_text(encoding="utf-8"))
    found["seconds"] = seconds
    return found


def summary(result: dict) -> dict:
    """What one gate said: its exit code, the kinds it counted, what moved, the seeds it spent per side."""
    scenarios = result.get("scenarios", {})
    counted = sorted({c["kind"] for s in scenarios.values() for c in s["changes"] if c["counted"]})
    moved = sorted({c["kind"] for s in scenarios.values() for c in s["changes"] if not c["counted"]})
    seeds = sum(s["seeds"][1] for s in scenarios.values())
    unknown = sum(1 for s in scenarios.values() if s["state"] == "unknown")
    slow = [s["timing"]["ratio"] for s in scenarios.values() if s.get("timing") and s["timing"]["verdict"] == "slower"]
    return {
        "exit": result.get("exit"),
        "counted": counted,
        "moved": moved,
        "seeds": seeds,
        "unknown": unknown,
        "slower": slow,
        "seconds": result["seconds"],
        "failed": result.get("failed", ""),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default=".tox/tf221/bin/python", help="the environment every gate starts from")
    parser.add_argument("--null", type=int, default=10, help="gates of the base against itself, quiet")
    parser.add_argument("--null-busy", type=int, default=10, help="… with a busy loop on one core")
    parser.add_argument("--sleep", type=int, default=10, help="gates against the ×1.5 per-epoch sleep, quiet")
    parser.add_argument("--reps", type=int, default=2, help="gates per other mutant")
    parser.add_argument(
        "--mutants",
        default=",".join(MUTANTS),
        help="comma-separated (benchmarks/mutants.py); KIND:N for N gates, KIND:N:busy with a busy loop on one core",
    )
    parser.add_argument("--max-seeds", type=int, default=16)
    parser.add_argument("--budget", type=float, default=900.0, help="the gate's --budget (seconds)")
    parser.add_argument("--workdir", type=Path, default=Path("calibration"))
    parser.add_argument("--scenarios", nargs="+", default=list(SUBSET))
    parser.add_argument("--old-results", type=Path, help="OLD's first run, made earlier (else the first gate makes it)")
    parser.add_argument(
        "--reuse-runs",
        action="store_true",
        help="the gates after the first of each kind reuse its NEW first run (bit-identical curves: the repeats then "
        "measure the judgement and the side-by-side timing afresh, not the training)",
    )
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    base = str(Path(args.base).absolute())  # not resolved: a venv's python is a link to its base
    plan: list[tuple[str, bool]] = [("none", False)] * args.null + [("none", True)] * args.null_busy
    plan += [("sleep", False)] * args.sleep
    for item in [k for k in args.mutants.split(",") if k]:
        kind, reps, busy = [*item.split(":"), "", ""][:3]
        plan += [(kind, busy == "busy")] * (int(reps) if reps else args.reps)
    print(f"calibration: {len(plan)} gates of {base} against itself and mutants, on {len(args.scenarios)} scenarios")
    rows: dict[tuple[str, bool], list[dict]] = {}
    old_results: Path | None = args.old_results
    first_runs: dict[str, Path] = {}
    for i, (kind, busy) in enumerate(plan):
        new = base if kind == "none" else str(mutants.make(base, kind, args.workdir / "envs" / kind))
        work = args.workdir / f"gate-{i:02d}-{kind}{'-busy' if busy else ''}"
        reused = first_runs.get(kind) if args.reuse_runs else None
        result = summary(gate(base, new, work, old_results, busy, args, reused))
        if old_results is None and (work / "old-1.json").exists():
            old_results = work / "old-1.json"
        if kind not in first_runs and (work / "new-1.json").exists():
            first_runs[kind] = work / "new-1.json"
        rows.setdefault((kind, busy), []).append(result)
        print(
            f"  gate {i + 1:2d}/{len(plan)} {kind:<9} {'busy ' if busy else 'quiet'} exit {result['exit']} "
            f"counted {','.join(result['counted']) or '-'}; moved {','.join(result['moved']) or '-'}; "
            f"{result['unknown']} unknown; {result['seeds']} seeds; "
            f"slower ×{','.join(f'{r:.2f}' for r in result['slower']) or '-'}; "
            f"{result['seconds']:.0f} s {result['failed'][-200:]}",
            flush=True,
        )
    (args.workdir / "calibration.json").write_text(
        json.dumps([{"kind": k, "busy": b, "gates": v} for (k, b), v in rows.items()], indent=1), encoding="utf-8"
    )
    print()
    print(f"{'NEW':<22} {'gates':>5} {'blocked':>8}  {'counted as':<20} {'seeds/side (median, max)':>25} {'s/gate':>7}")
    for (kind, busy), gates in rows.items():
        name = "unchanged" if kind == "none" else f"mutant {kind}"
        name += " (busy)" if busy else ""
        blocked = sum(1 for g in gates if g["exit"] == 1)
        kinds = sorted({k for g in gates for k in g["counted"]})
        seeds = [g["seeds"] for g in gates]
        print(
            f"{name:<22} {len(gates):>5} {blocked:>4}/{len(gates):<3}  {','.join(kinds) or '-':<20} "
            f"{statistics.median(seeds):>18.0f}, {max(seeds):<5} {statistics.fmean(g['seconds'] for g in gates):>7.0f}"
        )
    false_alarms = sum(1 for (k, _), gates in rows.items() if k == "none" for g in gates if g["exit"] != 0)
    nulls = sum(len(g) for (k, _), g in rows.items() if k == "none")
    print(f"false alarms: {false_alarms} of {nulls} unchanged-vs-unchanged gates")


if __name__ == "__main__":
    main()
