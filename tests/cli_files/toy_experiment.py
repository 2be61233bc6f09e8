"""An experiment file as users write it: its own symbolic class, evaluated on Ray workers."""

import os

import pyglove as pg

import memnas


@pg.symbolize
class Recipe:
    def __init__(self, flour: int, sugar: float, style: str):
        self.flour, self.sugar, self.style = flour, sugar, style


def taste(recipe, ctx):
    ctx.report(0, crumbs=recipe.flour * 1.0)
    score = recipe.flour * 0.1 - abs(recipe.sugar - 0.4) + (0.2 if recipe.style == "soft" else 0)
    return {"accuracy": score, "params": recipe.flour * 100.0, "pid": float(os.getpid())}


experiment = memnas.Experiment(
    name="recipes",
    space=Recipe(flour=pg.oneof([1, 2, 3]), sugar=pg.floatv(0.0, 1.0), style=pg.oneof(["soft", "hard"])),
    evaluator=taste,
    algorithm="random",
    objectives={"accuracy": "max", "params": "min"},
    store=os.environ.get("RECIPES_STORE", "sqlite:///recipes.db"),
)
