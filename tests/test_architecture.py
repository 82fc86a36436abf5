"""The architecture as tests: the import contracts hold and catch a bad import; no private name crosses modules."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "vidcam"


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(exe)], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"})


def test_import_contracts_hold_and_a_bad_import_breaks_them(tmp_path):
    ok = _lint_imports(ROOT)
    assert ok.returncode == 0, ok.stdout[-3000:]
    # A copy of the package where media imports TensorFlow and a job imports typer: both contracts must break.
    shutil.copytree(PACKAGE, tmp_path / "vidcam", ignore=shutil.ignore_patterns("__pycache__", "data"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    render = tmp_path / "vidcam" / "media" / "render.py"
    render.write_text(render.read_text() + "\nimport tensorflow  # noqa\n")
    video = tmp_path / "vidcam" / "jobs" / "video.py"
    video.write_text(video.read_text() + "\nimport typer  # noqa\nfrom vidcam import cli  # noqa\n")
    bad = _lint_imports(tmp_path)
    assert bad.returncode != 0
    assert "TensorFlow and Keras never in media BROKEN" in bad.stdout
    assert "typer only in the CLI BROKEN" in bad.stdout
    assert "Layers: cli > cluster > jobs" in bad.stdout and "BROKEN" in bad.stdout.split("Layers:")[1].splitlines()[0]


def _imports_of(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("vidcam"):
            yield node.module, [a.name for a in node.names], node.lineno


def _private_attributes(path: Path):
    """``alias._name`` where ``alias`` is a vidcam module imported into this file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    aliases = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("vidcam"):
            folder = ROOT / node.module.replace(".", "/")
            aliases |= {a.asname or a.name for a in node.names if (folder / f"{a.name}.py").exists()}
        elif isinstance(node, ast.Import):
            aliases |= {a.asname for a in node.names if a.name.startswith("vidcam") and a.asname}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            yield node.value.id, node.attr, node.lineno


def test_no_private_name_is_imported_across_modules():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        offenders += [f"{path.relative_to(ROOT)}:{line}: {alias}.{attr}"
                      for alias, attr, line in _private_attributes(path)]
        for module, names, line in _imports_of(path):
            offenders += [f"{path.relative_to(ROOT)}:{line}: {module}.{n}" for n in names
                          if n.startswith("_") and n != "__version__"]
            if any(part.startswith("_") for part in module.split(".")):
                offenders.append(f"{path.relative_to(ROOT)}:{line}: private module {module}")
    assert not offenders, "\n".join(offenders)


def _functions():
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield path.relative_to(ROOT), node


def test_functions_are_short_and_library_functions_take_few_parameters():
    """No function over 80 lines; no library function over 10 parameters (a CLI command has one per option)."""
    long_ones, wide_ones = [], []
    for path, fn in _functions():
        if fn.end_lineno - fn.lineno + 1 > 80:
            long_ones.append(f"{path}:{fn.lineno} {fn.name} ({fn.end_lineno - fn.lineno + 1} lines)")
        a = fn.args
        params = [x for x in a.posonlyargs + a.args + a.kwonlyargs if x.arg not in ("self", "cls")]
        if str(path) != "vidcam/cli.py" and len(params) + bool(a.vararg) + bool(a.kwarg) > 10:
            wide_ones.append(f"{path}:{fn.lineno} {fn.name} ({len(params)} parameters)")
    assert not long_ones, "\n".join(long_ones)
    assert not wide_ones, "\n".join(wide_ones)
