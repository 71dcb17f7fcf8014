"""Audit of the source: nothing a user supplies is unpickled, except CIFAR-10's batches through the
restricted unpickler; `torch.load` never runs with pickles allowed; `.npz` files are read with pickles refused."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "elbolab"
RESTRICTED = SRC / "data" / "cifar.py"
UNSAFE_MODULES = {"pickle", "cPickle", "dill", "marshal", "joblib", "shelve", "cloudpickle"}


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", "")
            yield node, name, node.func.attr


def _keyword(node: ast.Call, name: str):
    for kw in node.keywords:
        if kw.arg == name and isinstance(kw.value, ast.Constant):
            return kw.value.value
    return "missing"


def _findings(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = {a.name.split(".")[0] for a in node.names} | {getattr(node, "module", None) or ""}
            if names & UNSAFE_MODULES and path != RESTRICTED:
                out.append(f"{path.name}:{node.lineno} imports {sorted(names & UNSAFE_MODULES)}")
    for node, owner, attr in _calls(tree):
        where = f"{path.name}:{node.lineno}"
        if owner == "torch" and attr == "load" and _keyword(node, "weights_only") is not True:
            out.append(f"{where} torch.load without weights_only=True")
        if owner in ("np", "numpy") and attr == "load" and _keyword(node, "allow_pickle") is not False:
            out.append(f"{where} np.load without allow_pickle=False")
        if owner == "yaml" and attr in ("load", "unsafe_load", "full_load"):
            out.append(f"{where} yaml.{attr} (use safe_load)")
    return out


def test_no_source_file_unpickles_user_input():
    files = sorted(SRC.rglob("*.py"))
    assert RESTRICTED in files and len(files) > 30
    assert [f for path in files for f in _findings(path)] == []


def test_the_audit_catches_what_it_looks_for(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import pickle\nimport numpy as np\nimport torch\nimport yaml\n"
        "torch.load('x')\nnp.load('y')\nyaml.load('z')\ntorch.load('w', weights_only=False)\n"
    )
    assert len(_findings(bad)) == 5


def test_cifar_batches_go_through_the_restricted_unpickler():
    text = RESTRICTED.read_text()
    assert "class RestrictedUnpickler(pickle.Unpickler)" in text and "def find_class" in text
    assert "pickle.load(" not in text and "pickle.loads(" not in text
