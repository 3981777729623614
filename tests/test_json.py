from __future__ import annotations

import math

import pytest
from pydantic import BaseModel

import pi_duroxide_nb as pdn
from pi_duroxide_nb.engine._json import strip_timestamps, to_json_value


class Point(BaseModel):
    x: int
    y: int


def test_models_and_tuples_become_json() -> None:
    assert to_json_value({"p": Point(x=1, y=2), "t": (1, "a")}, what="x") == {"p": {"x": 1, "y": 2}, "t": [1, "a"]}


def test_error_names_the_path_and_the_type() -> None:
    with pytest.raises(pdn.PayloadError, match=r"the input .* \$\.a\[1\] is a set"):
        to_json_value({"a": [1, {2}]}, what="the input")


def test_non_finite_floats_and_non_string_keys_are_refused() -> None:
    with pytest.raises(pdn.PayloadError, match="finite"):
        to_json_value([math.nan], what="v")
    with pytest.raises(pdn.PayloadError, match="keys must be strings"):
        to_json_value({1: "a"}, what="v")


def test_timestamps_are_stripped_at_any_depth() -> None:
    value = {"timestamp": 1, "messages": [{"role": "user", "timestamp": 2, "content": [{"timestamp": 3, "t": "x"}]}]}
    assert strip_timestamps(value) == {"messages": [{"role": "user", "content": [{"t": "x"}]}]}
