"""The package's flow: data -> models -> objectives -> training -> evaluation -> plots ->
experiments / cli. No module imports (at its top or inside a function) a module of a package to
its right; the modules at the top of the package (config, errors, io, runtime, rundir, ...) are
at the left of everything, the entry points (api, cli, __main__) at the right."""

import ast
from pathlib import Path

import vaelab

PACKAGE = Path(vaelab.__file__).parent
FLOW = ["data", "models", "objectives", "training", "evaluation", "plots", "experiments"]
ENTRY_POINTS = {"api", "cli", "__main__"}
"""Top-level modules at the right end of the flow, with ``experiments``."""


def rank(module: str) -> int:
    """The position in the flow of ``vaelab.<module>`` (dotted, without ``vaelab.``)."""
    top = module.split(".")[0]
    if top in FLOW:
        return FLOW.index(top) + 1
    if top in ENTRY_POINTS:
        return len(FLOW)
    return 0  # config, errors, io, runtime, rundir, runlock, processes: used by all


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module without ``vaelab.``) of every vaelab module ``path`` imports."""
    relative = path.relative_to(PACKAGE).with_suffix("")
    parts = list(relative.parts[:-1])  # the package the module is in (``from .`` starts there)
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name[len("vaelab."):]) for a in node.names if a.name.startswith("vaelab.")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = parts[:len(parts) - node.level + 1] if node.level > 1 else parts
                target = ".".join([*base, *(node.module.split(".") if node.module else [])])
                if not node.module:  # from . import x / from .. import x
                    found += [(node.lineno, ".".join([*base, a.name]).strip(".")) for a in node.names]
                    continue
                found.append((node.lineno, target))
            elif node.module and node.module.startswith("vaelab."):
                found.append((node.lineno, node.module[len("vaelab."):]))
    return found


def test_no_module_imports_from_a_package_to_its_right():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        for line, target in imported_modules(path):
            if target and rank(target) > rank(module):
                wrong.append(f"{module} (line {line}) imports vaelab.{target}")
    assert not wrong, "imports against the flow:\n" + "\n".join(wrong)


def test_training_imports_neither_evaluation_nor_plots():
    for path in sorted((PACKAGE / "training").rglob("*.py")):
        for line, target in imported_modules(path):
            assert not target.startswith(("evaluation", "plots")), f"{path.name}:{line} imports vaelab.{target}"


def test_the_checker_sees_relative_and_lazy_imports(tmp_path):
    assert rank("plots.run") > rank("training.trainer") > rank("objectives") > rank("config")
    found = dict((t, n) for n, t in imported_modules(PACKAGE / "training" / "runs.py"))
    assert "objectives" in found and "training.trainer" in found
    found = [t for _, t in imported_modules(PACKAGE / "api.py")]
    assert "plots.callbacks" in found and "training.runs" in found
    found = [t for _, t in imported_modules(PACKAGE / "plots" / "samples.py")]
    assert "training" in found  # imported inside a function
