"""The `chaos` methods, the markers and the fault classes are one signature, and a mistake in
a `chaos` method's arguments is reported at the user's line, never inside the plugin."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from pytest_chaos.chaos import Chaos, FaultMethod
from pytest_chaos.faults import FAULT_TYPES, FaultError, build_fault, python_signature, signature
from pytest_chaos.markers import marker_help, marker_signature
from tests.plugin.conftest import dedent, exact


@pytest.mark.parametrize("kind", sorted(FAULT_TYPES))
def test_marker_method_and_class_agree(kind: str) -> None:
    cls = FAULT_TYPES[kind]
    # The marker: the class's signature plus `when`.
    assert marker_signature(kind).replace(", when='call'", "") == signature(cls)
    assert f"{marker_signature(kind)}: {cls.help}" in marker_help()
    # The chaos method: same parameters, same defaults, same order.
    method = getattr(Chaos, kind, None)
    if isinstance(method, FaultMethod):
        assert method.fault_type is cls
        shown = python_signature(cls)
    else:
        shown = inspect.signature(method)
        shown = shown.replace(parameters=list(shown.parameters.values())[1:])  # no self
    assert [(p.name, p.kind, p.default) for p in shown.parameters.values()] == [
        (p.name, p.kind, p.default) for p in python_signature(cls).parameters.values()
    ]
    # An option is keyword-only exactly when it is in the class (most options with a default
    # are; `http_error`'s status is positional with a default, as its issue asks).
    kw_only = {f.name: f.kw_only for f in dataclasses.fields(cls)}
    for field_name, parameter in list(python_signature(cls).parameters.items())[1:]:
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            continue  # `toxic`'s **attributes
        keyword = parameter.kind is inspect.Parameter.KEYWORD_ONLY
        assert keyword is kw_only[field_name], field_name


def test_build_fault_messages_name_what_is_allowed() -> None:
    latency = FAULT_TYPES["latency"]
    with pytest.raises(FaultError) as error:
        build_fault(latency, ("redis", 10), {"jiter": 5})
    assert str(error.value) == (
        "latency: unknown keyword 'jiter'; allowed: ms, jitter, stream, toxicity"
    )
    with pytest.raises(FaultError) as error:
        build_fault(latency, (100,), {})
    assert str(error.value) == (
        "latency: the first argument must be the target, a proxy or service name, got 100;"
        " signature: latency(target, ms, *, jitter=0, stream='downstream', toxicity=1.0)"
    )


TWINS = dedent(
    """
    def test_misspelt_keyword(chaos):
        with chaos.latency("echo", 100, jiter=5):
            pass


    def test_value_out_of_range(chaos):
        with chaos.slicer("echo", 10, size_variation=11):
            pass


    def test_upstream_without_port(chaos):
        chaos.proxy("x", upstream="localhost")


    def test_upstream_port_zero(chaos):
        chaos.proxy("x", upstream="127.0.0.1:0")


    def test_timeline_prints_as_text(chaos, echo):
        with chaos.latency("echo", 10):
            pass
        text = str(chaos.timeline())
        assert text.startswith("times from the start of the test; seed ")
        assert "applied  latency('echo', ms=10)" in text
        assert "reverted latency('echo', ms=10)" in text
    """
)


def test_mistakes_in_chaos_methods_point_at_the_users_line(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_twins=TWINS)
    result = suite.runpytest_inprocess()
    result.stdout.fnmatch_lines(
        [
            "*_ test_misspelt_keyword _*",
            '>       with chaos.latency("echo", 100, jiter=5):',
            exact(
                "E       pytest_chaos.faults.FaultError: latency: unknown keyword 'jiter';"
                " allowed: ms, jitter, stream, toxicity"
            ),
            "test_twins.py:2: FaultError",
            "*_ test_value_out_of_range _*",
            '>       with chaos.slicer("echo", 10, size_variation=11):',
            exact(
                "E       pytest_chaos.faults.FaultError: slicer: size_variation must be at most"
                " average_size (10), got 11"
            ),
            "test_twins.py:7: FaultError",
            "*_ test_upstream_without_port _*",
            exact(
                "E       pytest_chaos.faults.FaultError: chaos.proxy('x'): upstream must be"
                " 'host:port' (e.g. '127.0.0.1:6379'), got 'localhost': no port"
            ),
            "*_ test_upstream_port_zero _*",
            exact(
                "E       pytest_chaos.faults.FaultError: chaos.proxy('x'): upstream port must be"
                " from 1 to 65535, got '127.0.0.1:0'"
            ),
        ]
    )
    # Nothing of the plugin's own code in the tracebacks.
    result.stdout.no_fnmatch_line("*pytest_chaos*.py:*")
    result.assert_outcomes(failed=4, passed=1)
