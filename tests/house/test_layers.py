"""The import graph of pytest_chaos has no cycle, and no module imports one from a layer above
its own: the folders read as the data flows (faults -> backends -> engine -> events ->
assertions and report), and the plugin only wires them to pytest."""

from __future__ import annotations

import pytest

from tests.house.imports import find_cycle, import_graph

# Lowest first. A module may import from its own layer and the layers below it (at run time,
# function-level imports included; `if TYPE_CHECKING:` blocks are for annotations only).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "foundation",
        (
            "pytest_chaos",
            "pytest_chaos._keys",
            "pytest_chaos._ports",
            "pytest_chaos._process",
            "pytest_chaos._docker",
            "pytest_chaos.config",
            "pytest_chaos.seeds",
            "pytest_chaos.faults",
            "pytest_chaos.http_rules",
            "pytest_chaos.events",
            "pytest_chaos.policies",
            "pytest_chaos.hypothesis_settings",
        ),
    ),
    ("engine", ("pytest_chaos.engine",)),
    ("backends", ("pytest_chaos.backends",)),
    ("host names and DNS", ("pytest_chaos.dns",)),
    ("in-process HTTP", ("pytest_chaos.http",)),
    ("services", ("pytest_chaos.services",)),
    (
        "applying and reading faults",
        (
            "pytest_chaos.apply",
            "pytest_chaos.dns.applier",
            "pytest_chaos.packet_faults",
            "pytest_chaos.schedules",
            "pytest_chaos.strategies",
            "pytest_chaos.stateful",
            "pytest_chaos.http.applier",
            "pytest_chaos.markers",
            "pytest_chaos.wire",
            "pytest_chaos.recorders",
            "pytest_chaos.report.timeline",
        ),
    ),
    ("the chaos fixture's object", ("pytest_chaos.chaos", "pytest_chaos.load")),
    ("assertions and report", ("pytest_chaos.assertions", "pytest_chaos.report")),
    ("wiring", ("pytest_chaos.runner", "pytest_chaos.plugin", "pytest_chaos.__main__")),
]


def layer_of(module: str) -> int:
    """The layer of `module`: its longest matching prefix's."""
    best: tuple[int, int] | None = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            matches = module == prefix or module.startswith(prefix + ".")
            if matches and (best is None or len(prefix) > best[1]):
                best = (index, len(prefix))
    if best is None:
        pytest.fail(f"{module} is in no layer: add it to LAYERS in {__file__}")
    return best[0]


def test_no_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_module_imports_from_a_layer_above() -> None:
    upward = [
        f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
        for module, targets in sorted(import_graph().items())
        for target in sorted(targets)
        if layer_of(target) > layer_of(module)
    ]
    assert upward == []


def test_the_check_sees_function_level_imports() -> None:
    # runner imports the services only inside functions; the graph must still show it.
    assert "pytest_chaos.services.fixtures" in import_graph()["pytest_chaos.runner"]
