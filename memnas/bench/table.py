"""`memnas bench table`: what the shipped v2 tabular benchmark holds, and the MQAR / LM rank correlation."""

from __future__ import annotations

from typing import Any

from memnas.errors import ConfigError


def run(quick: bool = False, path: str | None = None) -> dict[str, Any]:
    """Summarises the v2 table: size, budgets, objectives, language-modelling rows.

    Args:
      quick: Unused (the summary is instant); accepted like every benchmark.
      path: The table file; default the shipped v2 table.

    Returns:
      ``{"architectures", "budgets", "objectives", "lm_rows", "spearman_mqar_vs_bpb",
      "generation_wall_s", "families"}``; ``spearman_mqar_vs_bpb`` is the rank
      correlation of mean MQAR accuracy and bits per byte over the rows that have
      both (None with fewer than 3), ``families`` the best mean accuracy per
      first-layer mixer family at each budget.

    Raises:
      ConfigError: naming the path, when there is no table there.
    """
    from memnas.tabular.table import load_table
    from memnas.tabular.v2 import TABLE_V2_PATH

    table = load_table(path or TABLE_V2_PATH)
    if not table.budgets:
        raise ConfigError(f"{path or TABLE_V2_PATH!r} is a table without budgets (v1); "
                          "`memnas bench table` reads a v2 table")
    lm = {k: r["lm"]["bits_per_byte"] for k, r in table.rows.items() if r.get("lm")}
    spearman = _spearman([table.accuracy(k) for k in lm], list(lm.values())) if len(lm) >= 3 else None
    families: dict[str, dict[str, float]] = {}
    for key, row in table.rows.items():
        family = row["summary"].split(" | ")[1].split(" > ")[0].split("(")[0]
        best = families.setdefault(family, {})
        for budget in table.budgets:
            acc = table.accuracy(key, budget=budget)
            best[str(budget)] = max(best.get(str(budget), 0.0), acc)
    figures = {
        "architectures": len(table),
        "budgets": table.budgets,
        "objectives": table.metadata.get("objectives", []),
        "lm_rows": len(lm),
        "spearman_mqar_vs_bpb": spearman,
        "generation_wall_s": table.metadata.get("generation", {}).get("wall_s"),
        "families": families,
    }
    _print(figures)
    return figures


def _spearman(x: list[float], y: list[float]) -> float:
    """Spearman's rank correlation (average ranks for ties), without scipy."""
    import pandas as pd

    rx, ry = pd.Series(x).rank(), pd.Series(y).rank()
    return float(rx.corr(ry))


def _print(f: dict[str, Any]) -> None:
    print(f"tabular benchmark v2: {f['architectures']} architectures, budgets {f['budgets']} "
          f"steps, objectives {', '.join(f['objectives'])}; generated in "
          f"{f['generation_wall_s']} s")
    rho = f["spearman_mqar_vs_bpb"]
    print(f"language-modelling rows: {f['lm_rows']}; Spearman(MQAR accuracy, bits per byte) = "
          f"{'n/a' if rho is None else f'{rho:.3f}'}")
    budgets = [str(b) for b in f["budgets"]]
    print(f"{'first-layer family':<22}" + "".join(f"{'@' + b:>9}" for b in budgets))
    for family, best in sorted(f["families"].items()):
        print(f"{family:<22}" + "".join(f"{best[b]:>9.3f}" for b in budgets))
