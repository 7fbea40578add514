"""The package's shape (issue 30): no import circle, the engine flat and small at the top of
unetcore/, every other module in a folder named by its role, the CLI calling the library, and
nothing written to the environment by an import."""
import ast
import json
import subprocess
import sys

from cases import REPO

PACKAGES = {"unetcore": REPO / "unetcore", "unetcore.layers": REPO / "layers",
            "unetcore.solvers": REPO / "solvers"}
ENGINE = {"arena", "backend", "blob", "config", "errors", "files", "fillers", "gradcheck",
          "graph", "layer", "logs", "memory", "net", "sizes", "threads"}


def module_files():
    """{dotted module name: path} of every module of the installed package."""
    modules = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join([package] + parts)] = path
    return modules


def imports_of(path, modules):
    """The package's modules that `path` imports, at its top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if full in modules else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found & set(modules)


def import_circles(graph):
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def visit(module):
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for other in graph[module]:
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in on_stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = []
            while not component or component[-1] != module:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                circles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return circles


def test_no_module_imports_itself_through_others():
    modules = module_files()
    graph = {name: imports_of(path, modules) - {name} for name, path in modules.items()}
    assert import_circles(graph) == []


def test_the_circle_finder_finds_a_circle():
    assert import_circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_top_of_unetcore_is_the_engine_and_every_other_module_is_in_a_role_folder():
    top = {path.stem for path in (REPO / "unetcore").glob("*.py")} - {"__init__", "__main__"}
    assert top == ENGINE
    folders = {path.name for path in (REPO / "unetcore").iterdir()
               if path.is_dir() and (path / "__init__.py").exists()}
    assert folders == {"cli", "data", "export", "fiji", "formats", "inference", "measures",
                       "models", "ops", "tools"}


def test_the_engine_imports_no_role_folder_but_the_formats_and_ops_it_runs_on():
    """net reads prototxt and weights files, layers run ops; nothing at the top of unetcore
    reaches up into inference, the CLI, the Fiji backend or the exports."""
    modules = module_files()
    for name in ENGINE:
        for imported in imports_of(modules[f"unetcore.{name}"], modules):
            assert not imported.startswith(("unetcore.cli", "unetcore.inference",
                                            "unetcore.fiji", "unetcore.export",
                                            "unetcore.measures", "unetcore.tools",
                                            "unetcore.models")), (name, imported)


def test_the_cli_builds_no_net_itself():
    """The verbs call library functions; none constructs a solver, tiles an image or reads
    a model file on its own."""
    for path in (REPO / "unetcore" / "cli").glob("*.py"):
        text = path.read_text()
        for library_call in ("tile_origins(", "tiles_per_batch(", "read_modeldef(",
                             "prepare_finetuning(", "evaluate("):
            assert library_call not in text, (path.name, library_call)


def test_the_docs_generator_is_not_in_the_installed_package():
    assert (REPO / "bin" / "docgen.py").exists()
    assert not list((REPO / "unetcore").rglob("docgen.py"))


def test_importing_unetcore_writes_no_environment_variable():
    code = ("import json, os; before = dict(os.environ); import unetcore, unetcore.cli; "
            "print(json.dumps(sorted(set(os.environ.items()) ^ set(before.items()))))")
    env = {"PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout
    assert json.loads(out) == []
