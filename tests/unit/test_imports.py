"""The package's import graph, read with `ast` from every module of sandbox/ (imports at
module level and inside functions alike): no circle, and no module imports a higher layer
than its own.  A layer may import itself and anything below it."""
import ast
import os


PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "sandbox")

# Lowest first.  A new module goes where its imports put it.
LAYERS = [
    ("foundation", {"sandbox.version", "sandbox.errors", "sandbox.units", "sandbox.hostfacts"}),
    ("concerns", {"sandbox.step", "sandbox.hoststep", "sandbox.yamlload", "sandbox.configfiles", "sandbox.schema", "sandbox.profile", "sandbox.seccomp_policy", "sandbox.seccomp", "sandbox.bpf",
                  "sandbox.limits", "sandbox.cgroup", "sandbox.hostids", "sandbox.namespaces", "sandbox.privileges",
                  "sandbox.userns", "sandbox.mounts", "sandbox.rootfs", "sandbox.image", "sandbox.archive",
                  "sandbox.layers", "sandbox.idtree", "sandbox.idhelper", "sandbox.idlayers", "sandbox.files", "sandbox.launch", "sandbox.supervise", "sandbox.stdio",
                  "sandbox.lookout"}),
    ("plan", {"sandbox.plan", "sandbox.report", "sandbox.plancache"}),
    ("runner", {"sandbox.runner"}),
    ("front ends", {"sandbox", "sandbox.__main__", "sandbox.judge", "sandbox.learn", "sandbox.doctor", "sandbox.cli",
                    "sandbox.service.*", "sandbox.ci.*"}),
]

def _modules():
    out = {}
    for root, dirs, files in os.walk(PACKAGE):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in files:
            if name.endswith(".py"):
                rel = os.path.relpath(os.path.join(root, name), os.path.dirname(PACKAGE))[:-3].split(os.sep)
                is_pkg = rel[-1] == "__init__"
                out[".".join(rel[:-1] if is_pkg else rel)] = (os.path.join(root, name), is_pkg)
    return out


MODULES = _modules()


def _imports(name):
    path, is_pkg = MODULES[name]
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    package = name if is_pkg else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):          # every import, at module level or inside a function
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = ".".join(base[:len(base) - node.level + 1])
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module
            # `from P import a`: the module P.a when there is one, else P itself (a is an attribute of P)
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in MODULES else mod for a in node.names]
        else:
            continue
        for t in targets:
            # `import sandbox.x.y` imports sandbox, sandbox.x and sandbox.x.y: the named one counts
            if t in MODULES and t != name:
                found.add(t)
    return found


GRAPH = {name: _imports(name) for name in MODULES}


def _layer(name):
    for i, (_, members) in enumerate(LAYERS):
        if name in members or any(m.endswith(".*") and (name + ".").startswith(m[:-1]) for m in members):
            return i
    return None


def _circles():
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(GRAPH[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(tuple(sorted(comp)))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    return set(out)


def test_the_graph_is_read():
    """The reader finds imports of each form: at module level, inside functions, relative, `from . import`."""
    assert "sandbox.plan" in GRAPH["sandbox.runner"]              # from . import ..., plan as plan_mod
    assert "sandbox.hoststep" in GRAPH["sandbox.runner"]          # from .hoststep import ...
    assert "sandbox.yamlload" in GRAPH["sandbox.configfiles"]     # inside a function
    assert "sandbox.errors" in GRAPH["sandbox.service.cli"]       # from ..errors import
    assert "sandbox.version" in GRAPH["sandbox"]                  # the package's own __init__


def test_every_module_has_a_layer():
    missing = sorted(name for name in MODULES if _layer(name) is None)
    assert not missing, f"put these modules in a layer of LAYERS (tests/unit/test_imports.py): {missing}"


def test_no_import_circle():
    circles = sorted(_circles())
    assert not circles, f"import circles: {circles}"


def test_no_import_from_a_lower_layer_up():
    upward = sorted((a, b) for a in GRAPH for b in GRAPH[a]
                    if _layer(a) is not None and _layer(b) is not None and _layer(b) > _layer(a))
    named = [f"{a} ({LAYERS[_layer(a)][0]}) imports {b} ({LAYERS[_layer(b)][0]})" for a, b in upward]
    assert not named, named
