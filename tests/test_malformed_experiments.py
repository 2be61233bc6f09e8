"""Malformed experiment files and spaces: one line naming the value, nothing written."""

from __future__ import annotations

import math
import os
import re
import threading

import pyglove as pg
import pytest
from click.testing import CliRunner
from torch import nn

import memnas
import toyspace
from memnas.cli import main
from memnas.errors import ConfigError
from memnas.store import Store

HERE = os.path.dirname(os.path.abspath(__file__))


def _file(name):
    return os.path.join(HERE, "cli_files", name)


@pytest.mark.parametrize("name,message", [
    ("hostile_lambda_space.py",
     r"error: space value hostile_lambda_space\.<lambda> \(function, line 16\) at "
     r"space\.act\[choice 0\] has no importable name \(a lambda, or defined inside a "
     r"function\): define it at module level"),
    ("hostile_instance_space.py",
     r"error: space value <hostile_instance_space\.Activation object at 0x[0-9a-f]+> at "
     r"space\.act\[choice 1\] serialises like choice 0, so memnas cannot tell them apart: "
     r"make them symbolic \(pg\.Object, pg\.symbolize\) with different arguments"),
    ("hostile_unpicklable_space.py",
     r"error: space value <hostile_unpicklable_space\.Guarded object at 0x[0-9a-f]+> at "
     r"space\.layer\[choice 0\] \(Guarded\) cannot be serialised: TypeError: cannot pickle "
     r"'_thread\.lock' object"),
])
def test_run_refuses_a_space_memnas_cannot_store_in_one_line_before_the_store(tmp_path, name,
                                                                             message):
    db = tmp_path / "never.db"
    r = CliRunner().invoke(main, ["run", _file(name), "--store", f"sqlite:///{db}",
                                  "--executor", "local", "--max-trials", "2"])
    assert r.exit_code == 2, r.output
    assert re.fullmatch(message + "\n", r.output), r.output
    assert not db.exists()  # refused when the file was loaded: the store was never opened


def test_a_refused_space_adds_no_row_to_an_existing_store(tmp_path):
    url = f"sqlite:///{tmp_path}/kept.db"
    memnas.Experiment(name="kept", space=toyspace.point_space(), evaluator=toyspace.evaluate,
                      algorithm="random", store=url).run(max_trials=1, executor="local")
    r = CliRunner().invoke(main, ["run", _file("hostile_lambda_space.py"), "--store", url,
                                  "--executor", "local"])
    assert r.exit_code == 2 and r.output.count("\n") == 1, r.output
    s = Store(url, read_only=True)
    assert [e["name"] for e in s.experiments()] == ["kept"]
    s.close()


class _Plain:
    def __init__(self, v):
        self.v = v


def _local_instance():
    class Local:
        pass
    return Local()


def _nested_function():
    def inner(x):
        return x
    return inner


def _generator():
    yield 1


@pytest.mark.parametrize("space,message", [
    (pg.Dict(a=pg.oneof([1, {"x", "y"}])), r"space value \{.*\} at space\.a\[choice 1\] is a "
                                            r"set, whose order .* use a sorted tuple"),
    (pg.Dict(a=pg.oneof([_local_instance(), 2])),
     r"space value <.*Local object at 0x[0-9a-f]+> at space\.a\[choice 0\] \(Local\) cannot be "
     r"serialised: AttributeError: Can't pickle local object"),
    (pg.Dict(a=pg.oneof([_generator(), 2])), r"space value <generator object .*> at "
                                              r"space\.a\[choice 0\] \(generator\) cannot be "
                                              r"serialised: TypeError: cannot pickle"),
    (pg.Dict(a=pg.oneof([object(), object()])), r"space value <object object at 0x[0-9a-f]+> at "
                                                r"space\.a\[choice 1\] serialises like choice 0"),
    (pg.Dict(b=pg.floatv(0.0, 1.0), a=pg.Dict(f=pg.oneof([math.sqrt, _nested_function()]))),
     r"space value test_malformed_experiments\._nested_function\.<locals>\.inner \(function, "
     r"line \d+\) at space\.a\.f\[choice 1\] has no importable name"),
    (pg.Dict(b=pg.floatv(0.0, 1.0), fixed=threading.Lock()),
     r"space value <unlocked _thread\.lock object at 0x[0-9a-f]+> at space\.fixed \(lock\) "
     r"cannot be serialised"),
])
def test_experiment_refuses_what_it_cannot_serialise_or_tell_apart(space, message):
    with pytest.raises(ConfigError) as e:
        memnas.Experiment(name="e", space=space, evaluator=toyspace.evaluate,
                          algorithm="random", store="sqlite:////nonexistent/never.db")
    assert re.match(message, str(e.value)) and "\n" not in str(e.value), str(e.value)


def test_experiment_takes_picklable_distinct_objects_and_named_functions():
    space = pg.Dict(act=pg.oneof([nn.Tanh(), nn.ReLU()]), obj=pg.oneof([_Plain(1), _Plain(2)]),
                    f=pg.oneof([math.sqrt, toyspace.evaluate]), t=pg.oneof([(1, 2), (2, 1)]))
    exp = memnas.Experiment(name="e", space=space, evaluator=toyspace.evaluate,
                            algorithm="random", store="sqlite:////nonexistent/never.db")
    assert len(exp.space_hash()) == 64
