"""The shape docs/architecture.md promises, checked on the source: no function over 60 lines, no
module over 400, no import of another module's private name, `vae` and `plumbing` never import
`bench`, one definition of the profiler names, and no renderer asking what kind of run it has
outside the tables of sections chosen by kind."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bench", "vae", "plumbing")
SOURCES = [*sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")), ROOT / "noxfile.py"]
MAX_FUNCTION, MAX_MODULE = 60, 400
# bench's floors, lowest first: a module imports its own folder or a folder on a lower floor, never
# a sibling on its own floor nor anything above (docs/architecture.md draws them).
FLOORS = [("__init__", "defaults", "errors"), ("options", "workload"), ("measure",),
          ("ranks", "profile", "instructions"), ("capture",), ("fixes", "render"), ("output",),
          ("regress", "workloads"), ("suites", "commands"), ("cli",), ("__main__",)]
FLOOR = {name: i for i, names in enumerate(FLOORS) for name in names}


def _rel(p: Path) -> str:
    return p.relative_to(ROOT).as_posix()


def _imports(tree: ast.AST) -> list[tuple[str, list[str]]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
    return out


@pytest.mark.parametrize("path", SOURCES, ids=_rel)
def test_functions_and_modules_fit_on_a_screen(path: Path):
    source = path.read_text()
    assert source.count("\n") <= MAX_MODULE, f"{_rel(path)}: {source.count(chr(10))} lines"
    sizes = [(n.name, n.end_lineno - n.lineno + 1) for n in ast.walk(ast.parse(source))
             if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    long = [(name, lines) for name, lines in sizes if lines > MAX_FUNCTION]
    assert not long, f"{_rel(path)}: functions over {MAX_FUNCTION} lines: {long}"


@pytest.mark.parametrize("path", SOURCES, ids=_rel)
def test_no_private_names_across_modules_and_nothing_upward(path: Path):
    tree = ast.parse(path.read_text())
    for module, names in _imports(tree):
        if module.split(".")[0] not in PACKAGES:
            continue
        private = [n for n in names if n.startswith("_")]
        assert not private, f"{_rel(path)} imports private {private} from {module}"
        if _rel(path).startswith(("vae/", "plumbing/")):
            assert not module.startswith("bench"), f"{_rel(path)} imports upward: {module}"
        if _rel(path).startswith("plumbing/"):
            assert not module.startswith("vae"), f"{_rel(path)} imports upward: {module}"


def _room(module: str) -> str:
    """The folder (or top-level module) of bench that ``module`` lives in."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


@pytest.mark.parametrize("path", [p for p in SOURCES if _rel(p).startswith("bench/")], ids=_rel)
def test_every_import_in_bench_goes_down_a_floor(path: Path):
    here = _room(".".join(path.relative_to(ROOT).with_suffix("").parts))
    assert here in FLOOR, f"{_rel(path)}: {here} is on no floor of FLOORS: give it one"
    for module, _ in _imports(ast.parse(path.read_text())):
        if module.split(".")[0] != "bench" or _room(module) == here:
            continue
        there = _room(module)
        assert FLOOR[there] < FLOOR[here], (f"{_rel(path)} imports {module}: {there} (floor "
                                            f"{FLOOR[there]}) is not below {here} (floor {FLOOR[here]})")


@pytest.mark.parametrize("path", [p for p in SOURCES if _rel(p).startswith("bench/")], ids=_rel)
def test_a_process_started_by_name_goes_down_a_floor_too(path: Path):
    """A module a process is started with (``python -m bench.capture.child``) is an import by
    another name: the module that names it stands above it, or in its folder. (``-m bench``
    alone, the command line of another tree, is how regress counts a base commit.)"""
    here = _room(".".join(path.relative_to(ROOT).with_suffix("").parts))
    named = [n.value for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Constant)
             and isinstance(n.value, str) and re.fullmatch(r"bench(\.[a-z_]+)+", n.value)]
    for module in named:
        there = _room(module)
        assert there == here or FLOOR[there] < FLOOR[here], f"{_rel(path)} starts {module}, a floor up"


def test_one_definition_of_the_profiler_names_and_no_kind_guessing():
    tools = [_rel(p) for p in SOURCES if re.search(r"^TOOLS\b.*=", p.read_text(), re.M)]
    assert tools == ["bench/defaults.py"]
    kind_test = re.compile(r"\.kind\s*==\s*[\"'](script|variants)[\"']")
    guessing = [_rel(p) for p in SOURCES if "is_capture" in p.read_text()
                or ("/render/" in str(p) and kind_test.search(p.read_text()))]
    assert not guessing, f"renderers branching on the kind instead of a SECTIONS table: {guessing}"


def test_renderers_format_statements_they_do_not_decide_or_guess_them():
    """Renderers take typed values from bench.measure: no duck-typing a Ratio (`hasattr(r,
    "value")`), no picking sentences out of another renderer's Markdown by their first
    characters, no bound thresholds of their own (bench/measure/bound.py holds them)."""
    render = [p for p in SOURCES if "/render/" in str(p)]
    duck = [_rel(p) for p in render if re.search(r"hasattr\([^)]*[\"']value[\"']\)", p.read_text())]
    picked = [_rel(p) for p in render if re.search(r"startswith\(\(\"\*\*\"", p.read_text())]
    thresholds = [_rel(p) for p in render if re.search(r"^(DOMINATES|ADVISE_FROM|BUSY|GROUPS)\s*=",
                                                       p.read_text(), re.M)]
    assert not duck and not picked and not thresholds, (duck, picked, thresholds)
