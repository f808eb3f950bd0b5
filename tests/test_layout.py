"""The package's layers: every module imports only from its own layer or the layers below
(lazy imports inside functions included), so arrows go one way and there are no cycles."""

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"gpo": "gpo", "tune": "gpo.tune", "analysis": "gpo.analysis"}  # folder -> installed package

# Lowest first: a module's name, or a package's prefix ("gpo.data." holds its modules).
LAYERS = [
    ("gpo.errors", "gpo.lazy", "gpo.progress", "gpo.lock", "gpo.device", "gpo.prompts", "gpo.ops", "gpo.metrics", "gpo.registry",
     "gpo.results"),  # leaves
    ("gpo.data", "gpo.data."),  # survey files -> the canonical table -> arrays
    ("gpo.tasks", "gpo.features", "gpo.model", "gpo.losses"),  # what a method reads; a point's features, the model, its objectives
    ("gpo.question_prior",),  # shares on questions no training group answered, from the embeddings
    ("gpo.baselines", "gpo.recommenders", "gpo.shrink", "gpo.evaluate", "gpo.llm", "gpo.llm.prompts"),  # methods' parts; registries
    ("gpo.config",),  # experiment settings, checked against the registries below
    ("gpo.embed", "gpo.embed.", "gpo.train", "gpo.llm.", "gpo.shards"),  # embeddings, meta-training, LLM baselines, evaluation in shards
    ("gpo.inputs",),  # a run's data, split and embeddings on a device
    ("gpo.selection",),  # per-k choices and shrink
    ("gpo.methods",),  # every method a run evaluates
    ("gpo.pipeline",),  # the job's stages
    ("gpo.tune", "gpo.tune.", "gpo.analysis", "gpo.analysis."),  # studies and reports
    ("gpo.cli",),  # the command line
]


def modules() -> dict[str, Path]:
    found = {}
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = [p for p in path.relative_to(ROOT / folder).with_suffix("").parts if p != "__init__"]
            found[".".join([package, *parts])] = path
    return found


def layer(module: str) -> int:
    for i, prefixes in enumerate(LAYERS):
        if any(module == p or (p.endswith(".") and module.startswith(p)) for p in prefixes):
            return i
    raise AssertionError(f"{module} has no layer in tests/test_layout.py")


def imports(path: Path, module: str) -> set[str]:
    """Project modules `path` imports anywhere in it (relative imports resolved)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names]
            out |= {n if n in modules() else base for n in names}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
    return {m for m in out if m == "gpo" or m.startswith("gpo.")} - {"gpo"}


@pytest.mark.parametrize("module", sorted(modules()))
def test_a_module_imports_only_from_its_layer_or_below(module):
    importlib.import_module(module)
    upward = sorted(m for m in imports(modules()[module], module) if layer(m) > layer(module))
    assert not upward, f"{module} (layer {layer(module)}) imports from higher layers: {upward}"


def test_the_import_graph_has_no_cycles():
    graph = {m: imports(p, m) & set(modules()) for m, p in modules().items()}
    state: dict[str, int] = {}

    def visit(m, path):
        if state.get(m) == 1:
            raise AssertionError(f"import cycle: {' -> '.join(path + [m])}")
        if state.get(m) != 2:
            state[m] = 1
            for n in sorted(graph[m]):
                visit(n, path + [m])
            state[m] = 2

    for m in sorted(graph):
        visit(m, [])


def without_torch(code: str) -> None:
    """Run `code` in a fresh interpreter and fail if it loaded torch."""
    check = f"import sys\n{code}\nassert 'torch' not in sys.modules, 'torch was imported'"
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_configs_and_studies_are_checked_before_torch_loads(tmp_path):
    """A config is checked without torch, its form (keys, types, ranges) and the names the
    registries hold (baselines, priors, features, losses): the methods register as they are
    imported, and import torch only where they run."""
    without_torch("import gpo.config, gpo.tune.study, gpo.tune.sweep, gpo.cli, gpo.baselines, gpo.features, gpo.losses")
    (tmp_path / "bad.yaml").write_text("train:\n  stepz: 3\n")
    (tmp_path / "name.yaml").write_text("eval:\n  baselines: [kernal]\n")
    (tmp_path / "study.yaml").write_text("name: s\nbase: configs/demo.yaml\nspace:\n  model.d_modle: {choice: [64]}\n")
    without_torch(f"from gpo.cli import main\nassert main(['run', {str(tmp_path / 'bad.yaml')!r}]) == 2")
    without_torch(f"from gpo.cli import main\nassert main(['run', {str(tmp_path / 'name.yaml')!r}]) == 2")
    without_torch(f"from gpo.cli import main\nassert main(['sweep', {str(tmp_path / 'study.yaml')!r}]) == 2")


def test_a_lazy_module_is_imported_on_first_use_and_then_is_the_module():
    without_torch("from gpo.lazy import lazy\nimport sys\nmodule = lazy('colorsys')\nassert 'colorsys' not in sys.modules\n"
                  "assert module.rgb_to_hsv(1.0, 0.0, 0.0) == (0.0, 1.0, 1.0) and 'colorsys' in sys.modules\n"
                  "assert module.hsv_to_rgb is sys.modules['colorsys'].hsv_to_rgb and lazy('colorsys') is sys.modules['colorsys']")
