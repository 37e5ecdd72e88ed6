"""What Metaflow's code package carries of mfotel: everything a task imports, nothing else."""

from __future__ import annotations

import ast
from pathlib import Path

from mfotel._internal import package

ROOT = Path(package.__file__).parent.parent.parent


def _imports(module: str) -> set[str]:
    """mfotel modules ``module`` imports anywhere in its body (lazy imports included)."""
    path = Path(package.module_file(str(ROOT), module))
    tree = ast.parse(path.read_text())
    own = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = own.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        for name in names:
            if not name.startswith("mfotel"):
                continue
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                candidate = ".".join(parts[:i])
                file = Path(package.module_file(str(ROOT), candidate))
                if file.exists():
                    found.add(candidate)
    return found


def test_the_package_holds_everything_a_task_imports() -> None:
    """From the entry points (hooks, agent, relay, tee), every mfotel module reached is in
    TASK_MODULES: a remote task without mfotel installed would otherwise fail to import it."""
    seen: set[str] = set()
    todo = list(package.ENTRY_MODULES)
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        todo.extend(_imports(module))
    assert seen <= set(package.TASK_MODULES), sorted(seen - set(package.TASK_MODULES))
    assert set(package.TASK_MODULES) <= seen, sorted(set(package.TASK_MODULES) - seen)


def test_the_package_leaves_the_tools_out() -> None:
    """The CLI, the collector tooling and the test stand-ins are not a task's business."""
    names = [name for _, name in package.task_files()]
    assert all(name.startswith("mfotel/") and name.endswith(".py") for name in names)
    assert not [
        n for n in names if n.startswith(("mfotel/cli", "mfotel/collector", "mfotel/testing"))
    ]
    assert all(Path(path).is_file() for path, _ in package.task_files())
