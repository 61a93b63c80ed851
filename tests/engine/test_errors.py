"""The engine's errors: typed, picklable, and free of any web notion."""

from __future__ import annotations

import pickle

import engine.errors as errors
from engine import graph


def _error_classes() -> list[type[errors.AutodiffError]]:
    return [
        v
        for v in vars(errors).values()
        if isinstance(v, type) and issubclass(v, errors.AutodiffError)
    ]


def test_engine_errors_carry_no_http_status() -> None:
    """The service maps error classes to statuses (app/errors.py); the engine has none."""
    for cls in _error_classes():
        assert not hasattr(cls, "status"), cls.__name__


def test_errors_pickle_with_their_fields() -> None:
    for cls in _error_classes():
        err = cls("bad", op="sum", shapes=[(2, 3)], loc=(1, 4))
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is cls
        assert (back.message, back.op, back.shapes, back.loc) == ("bad", "sum", [(2, 3)], (1, 4))


def test_graph_metadata_does_not_import_the_language() -> None:
    with open(graph.__file__) as f:
        assert "engine.lang" not in f.read()
