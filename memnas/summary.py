"""What `memnas run`, `memnas resume` and `memnas show` print about an experiment."""

from __future__ import annotations

from typing import Any

import click

__all__ = ["print_summary"]


def print_summary(result: Any) -> None:
    """Prints counts, rungs and constraints, best trials and the Pareto front."""
    exp = result.experiment
    counts = result.counts()
    click.echo(f"\nexperiment {exp['name']!r}: {exp['status']}, "
               + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
    df = result.trials()
    objectives = result.objectives
    for obj in objectives:
        best = result.best(obj)
        if best is not None:
            click.echo(f"  best {obj} ({objectives[obj]}): {_value(best[obj])}  "
                       f"trial {best['number']}: {best['summary']}")
    c = result.cache_counters()
    kinds = result.cache_kind_counts()
    click.echo(f"  equivalence cache: {c['misses']} evaluated, {c['hits']} hits"
               f"{_kinds(kinds['hit'])}, {c['attached']} attached{_kinds(kinds['attached'])}, "
               f"{c['saved_s']:.1f} s of evaluation saved")
    front = result.pareto_front()
    if len(objectives) > 1 and not front.empty:
        click.echo(f"  Pareto front ({' vs '.join(objectives)}): {len(front)} trials")
        for _, row in front.iterrows():  # each architecture once: cached twins folded in
            vals = "  ".join(f"{k}={_value(row[k])}" for k in objectives)
            twins = list(row.get("twins") or ())
            also = f"  (cached twin{'s' if len(twins) > 1 else ''} " \
                f"{', '.join(f'#{n}' for n in twins)})" if twins else ""
            click.echo(f"    #{row['number']:<4} {vals}{also}  {row['summary']}")
    _print_supernets(df, objectives)
    _print_rungs_and_constraints(result, df)
    failed = df[df["status"] == "failed"] if not df.empty else df
    for _, row in failed.head(3).iterrows():
        last = (row["error"] if isinstance(row["error"], str) else "").strip().splitlines()
        click.echo(f"  failed #{row['number']}: {last[-1] if last else '?'}")


def _kinds(counts: dict[str, int]) -> str:
    """`` (2 duplicate, 1 canonical)``: cached trials by kind, those with any; "" for none."""
    shown = [f"{n} {'of unknown kind' if k == 'unknown' else k}"
             for k, n in counts.items() if n]
    return f" ({', '.join(shown)})" if shown else ""


def _print_supernets(df: Any, objectives: dict[str, str]) -> None:
    """Lists supernet runs apart: their values are the mixed network's, never ranked."""
    from memnas.store.roles import supernet_mask

    runs = df[supernet_mask(df)] if not df.empty else df
    if len(runs):
        click.echo(f"  supernet runs (not candidates: never best, not on the front): {len(runs)}")
    for _, row in runs.iterrows():
        vals = "  ".join(f"{k}={_value(row[k])}" for k in objectives if k in row and row[k] == row[k])
        click.echo(f"    #{row['number']:<4} {row['status']}  {vals}  {row['summary']}")


def _print_rungs_and_constraints(result: Any, df: Any) -> None:
    """A multi-fidelity experiment's rungs and budget spent; trials that broke constraints."""
    from memnas.store.rungs import VIOLATION

    rungs = result.rungs()
    if rungs:
        unit = rungs["unit"] or "budget"
        per = ", ".join(f"{n} at {_value(b) if isinstance(b, float) else b}"
                        for b, n in rungs["trials"].items())
        click.echo(f"  rungs ({unit}): {per}; {_value(rungs['spent'])} {unit} spent in all")
    infeasible = int((df["status"] == "infeasible").sum()) if len(df) else 0
    broke = int((df[VIOLATION].fillna(0) > 0).sum()) if VIOLATION in df else 0
    if infeasible or broke:
        click.echo(f"  constraints broken (never best, not on the front): {infeasible} "
                   f"infeasible (before training), {broke} after training")


def _value(x: float) -> str:
    """A metric for `memnas show`: whole numbers (bytes, params) in full, others to 4 digits."""
    if float(x).is_integer() and abs(x) < 1e15:
        return str(int(x))
    return f"{x:.4g}"
