"""The package's layers: dependencies point one way (docs/architecture.md) and there are no
import cycles between modules. Read from the source with `ast`, so a late import inside a
function counts as much as one at the top.

The package face (`brainvq/__init__.py`, the notebook API) is a layer of its own, the top one:
`from brainvq import X` names the face unless X is a submodule, and only `app` may do it."""

from __future__ import annotations

import ast
from pathlib import Path

import brainvq

PACKAGE = Path(brainvq.__file__).parent
# What each part may import from brainvq, besides itself and the shared helpers.
SHARED = {
    "_version",
    "config",
    "values",
    "hardware",
    "metrics",
    "progress",
    "atomic",
    "run",
    "run_config",
    "edge",
}
ALLOWED = {
    "data": set(),
    "models": set(),
    "io": {"models"},
    "training": {"data", "models", "io", "inference"},
    "inference": {"data", "models", "io"},
    "evaluation": {"data", "models", "io", "inference"},
    "report": {"atomic", "run", "run_config"},
    "app": {"data", "models", "io", "training", "inference", "evaluation", "report"},
}
# import nothing from brainvq but each other (edge: nothing at all, it must run without torch)
LOW = {"_version", "config", "values", "hardware", "metrics", "progress", "atomic", "edge"}
FACE = ""  # the module name of brainvq/__init__.py
# who may import the face (tests and users, outside the package, always may)
FACE_USERS = {"app"}


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(parts)


def is_module(name: str) -> bool:
    """Whether brainvq.<name> is a module or package of the source tree."""
    path = PACKAGE.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports(source: str) -> set[str]:
    """The brainvq modules a module's source imports, by name relative to the package ("" is
    the face). `from brainvq.x import y` imports brainvq.x.y when that is a module, else
    brainvq.x."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module != "brainvq" and not node.module.startswith("brainvq."):
                continue
            base = node.module.removeprefix("brainvq").removeprefix(".")
            for alias in node.names:
                sub = f"{base}.{alias.name}" if base else alias.name
                found.add(sub if is_module(sub) else base)
        elif isinstance(node, ast.Import):
            found |= {
                a.name.removeprefix("brainvq.") for a in node.names if a.name.startswith("brainvq.")
            }
    return found


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports(p.read_text(encoding="utf-8")) for p in PACKAGE.rglob("*.py")}


def part_of(module: str) -> str:
    return module.split(".")[0]


def test_imports_of_the_face_are_seen() -> None:
    """`from brainvq import X` is an import of the face, not nothing (as it was once read)."""
    source = "from brainvq import load_vqvae\nfrom brainvq import edge\nimport brainvq.run\n"
    assert imports(source) == {FACE, "edge", "run"}
    assert imports("from brainvq.io import bundle, onnx\nfrom brainvq.atomic import x") == {
        "io.bundle",
        "io.onnx",
        "atomic",
    }


def test_dependencies_point_one_way() -> None:
    wrong = []
    for module, targets in graph().items():
        part = part_of(module)
        for target in targets:
            other = part_of(target)
            if target == FACE:
                if module != FACE and part not in FACE_USERS:
                    wrong.append(f"{module} -> the package face (brainvq/__init__.py)")
                continue
            if other == part or module == FACE:  # the notebook API may use everything
                continue
            if part in LOW:
                ok = other in LOW
            elif part in ("run", "run_config"):
                ok = other in LOW | {"data", "models", "run_config"}
            else:
                ok = other in SHARED | ALLOWED[part] or (other == "io" and "io" in ALLOWED[part])
            if not ok:
                wrong.append(f"{module} -> {target}")
    assert not wrong, wrong


def test_no_import_cycles() -> None:
    deps = graph()
    modules = set(deps)

    def resolve(target: str) -> str | None:  # "io.bundle" -> "io.bundle"; "data" -> "data"
        return target if target in modules else None

    edges = {m: {t for t in map(resolve, deps[m]) if t and t != m} for m in deps}
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node: str, path: list[str]) -> bool:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycle.extend(path[path.index(nxt) :] + [node, nxt] if nxt in path else [node, nxt])
                return True
            if nxt not in state and visit(nxt, [*path, node]):
                return True
        state[node] = 2
        return False

    for module in sorted(edges):
        if module not in state and visit(module, []):
            break
    assert not cycle, " -> ".join(cycle)


def test_the_report_reads_no_model_data_or_sampler_code() -> None:
    for module, targets in graph().items():
        if part_of(module) == "report":
            assert not {
                t for t in targets if part_of(t) in ("training", "inference", "evaluation", "data")
            }, module


def test_the_run_layout_and_configs_import_nothing_from_io() -> None:
    """run.py, run_config.py and config.py sit below io/ (bundles, ONNX): the helpers they use
    (atomic writes) live beside them, so no arrow runs back up."""
    deps = graph()
    for module in ("run", "run_config", "config"):
        assert not {t for t in deps[module] if part_of(t) == "io"}, module


def name_and_code_definitions(source: str) -> list[str]:
    """What a module's source defines that belongs in data/: a slice-name regex (re.compile of a
    pattern naming slices) and a NIfTI xform/intent code given as a number (to set_qform or
    set_sform, even as a default, or into a header's `*_code`)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            func, args = node.func, node.args
            pattern = args[0] if args else None
            if (
                func.attr == "compile"
                and isinstance(func.value, ast.Name)
                and func.value.id == "re"
                and isinstance(pattern, ast.Constant)
                and "slice" in str(pattern.value).lower()
            ):
                found.append(f"line {node.lineno}: a slice-name pattern {pattern.value!r}")
            if func.attr in ("set_qform", "set_sform"):
                codes = [*args[1:2], *(k.value for k in node.keywords if k.arg == "code")]
                numbers = [n for c in codes for n in ast.walk(c) if isinstance(n, ast.Constant)]
                if any(type(n.value) is int for n in numbers):
                    found.append(f"line {node.lineno}: a bare NIfTI code to {func.attr}")
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            for target in node.targets:
                key = target.slice if isinstance(target, ast.Subscript) else None
                if isinstance(key, ast.Constant) and str(key.value).endswith("_code"):
                    found.append(f"line {node.lineno}: a bare NIfTI {key.value}")
    return found


def test_the_name_and_code_check_sees_them() -> None:
    source = (
        'NAME = re.compile(r"^(.+)_Slice_(\\d+)")\n'
        "image.set_qform(affine, code=4)\n"
        'image.set_sform(affine, int(header["sform_code"]) or 1)\n'
        'header["intent_code"] = 2\n'
        'OTHER = re.compile(r"^epoch_(\\d+)$")\n'
        "image.set_sform(affine, code=XFORM_MNI152)\n"
    )
    found = name_and_code_definitions(source)
    assert sorted(line.split(":")[0] for line in found) == ["line 1", "line 2", "line 3", "line 4"]


def test_slice_names_and_nifti_codes_are_defined_only_in_data() -> None:
    """One home each (brainvq.data.slice_names, brainvq.data.nifti_codes): a file-name pattern
    or a NIfTI code written twice drifts (a single --input once got no level where the same file
    in a folder got one)."""
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        module = module_name(path)
        if part_of(module) != "data":
            source = path.read_text(encoding="utf-8")
            wrong += [f"{module} {what}" for what in name_and_code_definitions(source)]
    assert not wrong, wrong


# The modules that talk to the user: the CLI, its commands, the entry points of train.py and
# predict.py, and the one-line progress fallback on stderr. A console's own print (a live
# progress display's lines, tune's trial lines beside its bar) is progress, like Lightning's bars.
PRINTING = {"app.cli", "app.entry_points", "progress"}
PRINTING_PACKAGES = ("app.commands",)


def print_calls(source: str) -> list[str]:
    """Where a module's source prints: a call of print() or of a print_* function (such as
    brainvq.report.summary.print_summary)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
        if (isinstance(func, ast.Name) and name == "print") or name.startswith("print_"):
            found.append(f"line {node.lineno}: {name}()")
    return found


def test_the_print_check_sees_them() -> None:
    source = (
        'print("done")\n'
        "summary.print_summary(metrics, title)\n"
        "print_summary(metrics, title)\n"
        'self.bar.console.print("trial 3")\n'
        'fingerprint("x")\n'
    )
    found = print_calls(source)
    assert [line.split(":")[0] for line in found] == ["line 1", "line 2", "line 3"]


def test_library_modules_do_not_print() -> None:
    """Library code returns what happened (a result dataclass, the metrics) and the command
    prints it, so that a notebook or another program gets values, not text on its terminal."""
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        module = module_name(path)
        if module in PRINTING or module.startswith(PRINTING_PACKAGES):
            continue
        wrong += [f"{module} {what}" for what in print_calls(path.read_text(encoding="utf-8"))]
    assert not wrong, wrong


# A service that several workflows use, and its one home (a module of its own, light enough
# that a workflow needing only the frame loads no slice). The notebook API (the package face)
# wraps some of them under the same names.
SERVICES = {
    "RunModels": "inference.run_models",
    "load_run_models": "inference.run_models",
    "source_kind": "app.run_data",
    "run_slices": "app.run_data",
    "saved_space": "app.run_data",
    "run_frame": "app.run_data",
    "run_space": "app.run_data",
    "predict_levels": "inference.levels",
}
REPO = PACKAGE.parent.parent


def service_uses(source: str, module: str | None) -> list[str]:
    """Where a source defines a service (SERVICES) outside its home, or imports it from
    anywhere but its home or the package face; module: the source's module in the package
    (None outside it: tests, benchmarks, scripts)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in SERVICES:
            if module is not None and module not in (SERVICES[node.name], FACE):
                found.append(f"line {node.lineno}: defines {node.name}")
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module != "brainvq" and not node.module.startswith("brainvq."):
                continue
            base = node.module.removeprefix("brainvq").removeprefix(".")
            for alias in node.names:
                home = SERVICES.get(alias.name)
                if home and base not in (home, FACE) and not is_module(f"{base}.{alias.name}"):
                    found.append(f"line {node.lineno}: imports {alias.name} from brainvq.{base}")
    return found


def test_the_service_check_sees_them() -> None:
    source = (
        "from brainvq.inference.generate import RunModels, iter_slices\n"
        "from brainvq.inference.run_models import load_run_models\n"
        "from brainvq import load_run_models\n"
        "from brainvq.data.space import run_space\n"  # a module of that name, not the service
        "def run_frame(run_dir):\n"
        "    return None\n"
        "from brainvq.app.scans import run_space\n"
    )
    found = service_uses(source, "app.subjects")
    assert [line.split(":")[0] for line in found] == ["line 1", "line 5", "line 7"]
    assert service_uses("def run_frame(run_dir):\n    return None\n", "app.run_data") == []


def test_run_services_are_defined_once_and_imported_from_their_home() -> None:
    """A run's models, frame, space, source kind and slices, and a slice's predicted level, each
    live in one module (SERVICES) that every workflow, test and benchmark imports: no copy
    inside one workflow's module, no re-export from another."""
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        module = module_name(path)
        wrong += [
            f"{module} {what}" for what in service_uses(path.read_text(encoding="utf-8"), module)
        ]
    others = [*(REPO / "tests").rglob("*.py"), *(REPO / "benchmarks").rglob("*.py")]
    for path in [*others, REPO / "train.py", REPO / "predict.py"]:
        where = path.relative_to(REPO).as_posix()
        wrong += [
            f"{where} {what}" for what in service_uses(path.read_text(encoding="utf-8"), None)
        ]
    assert not wrong, wrong


def crowded_features(modules: list[str]) -> dict[str, list[str]]:
    """The features that have more than two flat modules in one folder, a feature being a
    module name's first word (anomaly, anomaly_files, anomaly_inputs: anomaly's three)."""
    features: dict[str, list[str]] = {}
    for name in sorted(modules):
        features.setdefault(name.split("_")[0], []).append(name)
    return {feature: names for feature, names in features.items() if len(names) > 2}


def test_the_feature_check_sees_them() -> None:
    flat = ["anomaly", "anomaly_files", "anomaly_inputs", "tune", "tune_files", "cli"]
    assert crowded_features(flat) == {"anomaly": ["anomaly", "anomaly_files", "anomaly_inputs"]}
    assert crowded_features(["tune", "tune_files", "run_data", "run_files"]) == {}


def test_app_shows_its_features() -> None:
    """app/ keeps a feature of one or two modules flat and gives one of more its sub-package
    (app/anomaly/, app/commands/), so that the folder lists the features, not their parts."""
    app = PACKAGE / "app"
    flat = [p.stem for p in app.glob("*.py") if p.stem != "__init__"]
    assert not crowded_features(flat), crowded_features(flat)
    for package in (p.parent for p in app.glob("*/__init__.py")):
        modules = [p.stem for p in package.glob("*.py") if p.stem != "__init__"]
        assert len(modules) > 2, f"app/{package.name}/ holds {modules}: keep them flat in app/"
