"""Memory cells on the Trial page: their graphs, drawn from a real store through AppTest."""

from __future__ import annotations

import pyglove as pg
import pytest
from streamlit.testing.v1 import AppTest

import memnas
from memnas.dashboard import ENV_VAR, app_path, architecture
from memnas.searchspace import Block, Cell, SequenceModel, cell_ops, gla_cell
from memnas.searchspace.cell_ops import Linear, LinearAttn, Norm

CELLS = "memory-cells"

# Linear attention with a dead end (node 1 reaches no output), and q = k (two inputs: q, k=v).
DEAD_END = Cell.from_inputs([Norm(), Linear(), Linear(), LinearAttn(num_heads=2), Linear()],
                            [[0], [0], [0], [2, 3], [4]], [5])
CUT = Cell.from_inputs([Linear(), Linear()], [[0], []], [2])  # the output is unreachable


def evaluate(c, ctx):
    """No training: values from the spec."""
    return memnas.Measurement(metrics={"accuracy": 1.0 / c.layers[0].mlp_ratio},
                              costs={"params": float(c.d_model)})


@pytest.fixture(scope="module")
def cell_store(tmp_path_factory) -> str:
    """A store with one experiment whose every trial has the same three cells."""
    url = f"sqlite:///{tmp_path_factory.mktemp('dashboard_cells')}/cells.db"
    space = SequenceModel(vocab_size=16, d_model=8, max_len=8, layers=[
        Block(mixer=DEAD_END, mlp_ratio=pg.oneof([1, 2])), Block(mixer=gla_cell(2, 0)),
        Block(mixer=CUT)])
    memnas.Experiment(name=CELLS, space=space, evaluator=evaluate, algorithm="random",
                      objectives={"accuracy": "max", "params": "min"},
                      store=url).run(max_trials=2, workers=1, executor="local")
    return url


def test_trial_page_draws_each_cell_as_a_graph(monkeypatch, cell_store):
    monkeypatch.setenv(ENV_VAR, cell_store)
    at = AppTest.from_file(app_path(), default_timeout=30)
    at.run()
    at.query_params["experiment"] = CELLS
    at.query_params["trial"] = "0"
    at.switch_page("views/trial.py").run()
    assert not at.exception
    assert "Memory cells" in [h.value for h in at.subheader]
    captions = "\n".join(c.value for c in at.caption)
    assert "**layer 0**" in captions and "**layer 1**" in captions
    assert "**layer 2** · computes zeros" in captions
    dots = [c.proto.spec for c in at.get("graphviz_chart")]
    assert len(dots) == 3 and all(d.startswith("digraph cell {") for d in dots)
    dead_end, gla, cut = dots
    assert 'n4 [label="LinearAttn\\nfeature_map=elu+1, num_heads=2"' in dead_end  # sorted keys
    assert 'n2 -> n4 [label="q"]' in dead_end and 'n3 -> n4 [label="k,v"]' in dead_end
    assert 'n1 [label="Norm", fillcolor="white", style="rounded,dashed"' in dead_end
    assert 'n0 -> n1 [style=dashed' in dead_end
    assert 'n0 -> n4 [label="gate"]' in gla and "DecayedScan" in gla
    assert "n0 -> n1 [style=dashed" in cut and "n2 -> n3 [style=dashed" in cut


def test_cell_graphs_from_stored_json():
    model = SequenceModel(vocab_size=16, d_model=8, layers=[Block(mixer=DEAD_END)])
    (graph,) = architecture.cell_graphs(pg.to_json_str(model))
    assert graph.title == "layer 0" and graph.valid
    assert graph.live == (True, False, True, True, True, True, True)
    assert (0, 1, "", False) in graph.edges and (2, 4, "q", True) in graph.edges
    (root,) = architecture.cell_graphs(pg.to_json_str(CUT))
    assert root.title == "cell" and not root.valid and not any(root.live)
    capped = DEAD_END.clone(override={"max_edges": 5})  # 6 live edges
    assert not architecture.cell_graphs(pg.to_json_str(capped))[0].valid
    assert architecture.cell_graphs('{"x": 1}') == []


def test_slot_table_matches_the_cell_operations():
    ops = [c for c in vars(cell_ops).values()
           if isinstance(c, type) and issubclass(c, cell_ops.CellOp) and c is not cell_ops.CellOp]
    assert {f"{c.__module__}.{c.__qualname__}": tuple(c.SLOTS) for c in ops
            if c.SLOTS} == architecture.CELL_SLOTS
    assert architecture.CELL_TYPE == f"{Cell.__module__}.{Cell.__qualname__}"
