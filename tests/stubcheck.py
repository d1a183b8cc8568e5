"""Compare a simulator fake of a MicroPython module with the module's type stub.

The fakes in ``simulator/mp/fake_<module>.py`` stand in for the modules of the ESP32 port
(``machine``, ``network``, ``time``, ...). The reference for what those modules really offer is
the ``micropython-esp32-stubs`` distribution (and ``micropython-stdlib-stubs`` for modules the
ESP32 package leaves to it, such as ``os`` and ``sys``). A fake may implement *less* than the
stub, never something *different*: every public name of a fake must exist in the stub, with the
same kind, compatible call signatures and the same constant values.

Both sides are read with :mod:`ast`. The fake is never imported: it is written in the
MicroPython dialect and needs a board to run.

Rules
-----
Public names of the fake are the module-level ``def``/``class`` statements and assignments
(including ``global`` assignments made inside functions) whose names do not start with ``_``;
names bound by ``import`` statements are not part of the fake's API and are not required to
exist in the stub. An alias (``localtime = gmtime``, ``__call__ = value``) is checked as the
function or class it names; a name bound to something only known at run time
(``ticks_ms = simboard.ticks_ms``) must exist in the stub but its kind is not compared. A class's public names are its methods, class attributes, nested classes and
the attributes its methods assign on ``self`` (``self.x = ...``); ``__init__`` and ``__call__``
are checked, other dunders are ignored.

1. Every public name exists in the stub, at module level or in the stub class (members of the
   stub class's bases count, whether the base is defined in the same stub or imported from
   another stub module).
2. A function or method must be accepted by the stub's signatures (all ``@overload`` variants
   and all ``if sys.version_info``/``sys.platform`` branches are alternatives). The fake's
   signature is expanded into the call shapes it accepts: every number of positional arguments
   from the required ones to all of them, each alone with every optional keyword-only parameter,
   plus an extra positional argument if it has ``*args`` and an unknown keyword if it has
   ``**kwargs``. Each call shape must be accepted by at least one stub alternative, in which

   * positional parameters have the same names in the same order (for a parameter the stub
     makes positional-only, the fake may also use the name another overload gives that
     position: callers cannot pass it by keyword, and a single ``def`` can then implement
     ``randrange(stop)``/``randrange(start, stop[, step])``);
   * a parameter the fake requires is required in the stub, and a parameter the fake lets the
     caller omit may be omitted in the stub (so "has a default iff the stub's has one", except
     that a default may merge overloads: ``lightsleep(time_ms=None)`` implements both
     ``lightsleep()`` and ``lightsleep(time_ms, /)``);
   * keyword-only stays keyword-only and positional stays positional; a stub ``/`` is
     satisfied by an ordinary parameter in the fake (the fake may be more permissive there);
   * the fake has ``*args``/``**kwargs`` only where the stub has them; the stub's
     ``*args``/``**kwargs`` accept any extra positional/keyword parameters of the fake (so a
     stub placeholder ``def f(*args, **kwargs)`` accepts any fake signature);
   * the fake may leave out the stub's trailing optional positional parameters, its optional
     keyword-only parameters and its ``*args``/``**kwargs`` (implementing less).

   Combinations of optional keyword-only parameters are not cross-checked (each is checked on
   its own), so a fake may accept ``period=`` and ``freq=`` together where the stub spells them
   as separate overloads, as the C implementation of the port does.
3. A constant the stub gives a literal value (``IN: Final[int] = 1``) must have the same value
   (and type) in the fake wherever the fake's value can be worked out statically (literals,
   ``const(...)``, arithmetic on other constants, names and attributes of sibling modules such
   as ``simboard``). This also applies to constants the fake imports (``from simboard import
   PWRON_RESET``) when the stub has them.
4. Kinds must agree: function / method / staticmethod / classmethod / class / constant. A
   property and a plain attribute are interchangeable (both are attribute access). A stub class
   without ``__init__`` or ``__new__`` says nothing about construction; the fake's ``__init__``
   is then not checked.

Entry points: :func:`check_fake` (a fake file), :func:`check_source` (fake source text, used by
the tests to feed synthetic drift), :func:`find_stub` (where a module's stub is).
"""

from __future__ import annotations

import ast
import importlib.metadata
from dataclasses import dataclass, field
from pathlib import Path

# Distributions holding the reference stubs, in lookup order.
STUB_DISTRIBUTIONS = ("micropython-esp32-stubs", "micropython-stdlib-stubs")
# Inside a distribution, where a module's stub may be ({} is the module path, dots as slashes).
_STUB_LAYOUTS = ("{}.pyi", "{}/__init__.pyi", "stdlib/{}.pyi", "stdlib/{}/__init__.pyi")
# Dunder methods that are part of the checked API; other dunders are ignored.
CHECKED_DUNDERS = ("__init__", "__call__")

_NO_VALUE = object()  # a constant whose value is not a literal (or not known statically)


class _Unknown(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# Locating stubs
# ---------------------------------------------------------------------------------------------
_dist_files: dict[str, tuple[object, set[str]] | None] = {}


def _distribution_files(dist_name: str):
    """(distribution, its file names) for an installed distribution, or None."""
    if dist_name not in _dist_files:
        try:
            dist = importlib.metadata.distribution(dist_name)
        except importlib.metadata.PackageNotFoundError:
            _dist_files[dist_name] = None
        else:
            _dist_files[dist_name] = (dist, {str(f).replace("\\", "/") for f in (dist.files or [])})
    return _dist_files[dist_name]


def find_stub(module: str) -> Path | None:
    """The stub file of `module` in the installed stub distributions, or None.

    Found through the distributions' file lists (importlib.metadata), in the order of
    STUB_DISTRIBUTIONS: the ESP32 package first, the stdlib package for what it leaves out."""
    rel_module = module.replace(".", "/")
    for dist_name in STUB_DISTRIBUTIONS:
        found = _distribution_files(dist_name)
        if found is None:
            continue
        dist, names = found
        for layout in _STUB_LAYOUTS:
            rel = layout.format(rel_module)
            if rel in names:
                return Path(dist.locate_file(rel))
    return None


def installed_stub_distributions() -> dict[str, str]:
    """Name -> version of the stub distributions that are installed."""
    out = {}
    for dist_name in STUB_DISTRIBUTIONS:
        try:
            out[dist_name] = importlib.metadata.version(dist_name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


# ---------------------------------------------------------------------------------------------
# The model: signatures and members
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Param:
    name: str
    default: bool
    posonly: bool = False


@dataclass
class Sig:
    pos: list[Param]
    varpos: bool
    kwonly: list[Param]
    varkw: bool

    @property
    def kw(self) -> dict[str, Param]:
        return {p.name: p for p in self.kwonly}

    def text(self, name: str) -> str:
        parts = []
        for i, p in enumerate(self.pos):
            parts.append(p.name + ("=…" if p.default else ""))
            if p.posonly and (i + 1 == len(self.pos) or not self.pos[i + 1].posonly):
                parts.append("/")
        if self.varpos:
            parts.append("*args")
        elif self.kwonly:
            parts.append("*")
        parts += [p.name + ("=…" if p.default else "") for p in self.kwonly]
        if self.varkw:
            parts.append("**kwargs")
        return "%s(%s)" % (name, ", ".join(parts))


def _sig_of(args: ast.arguments, drop_first: bool) -> Sig:
    positional = [(a, True) for a in args.posonlyargs] + [(a, False) for a in args.args]
    first_default = len(positional) - len(args.defaults)
    pos = [Param(a.arg, i >= first_default, posonly) for i, (a, posonly) in enumerate(positional)]
    kwonly = [Param(a.arg, d is not None) for a, d in zip(args.kwonlyargs, args.kw_defaults)]
    varpos = args.vararg is not None
    if drop_first:
        if pos:
            pos = pos[1:]
        # else: `def m(*args)` takes self through *args; nothing to drop.
    return Sig(pos, varpos, kwonly, args.kwarg is not None)


@dataclass
class Member:
    name: str
    kind: str  # "function" | "class" | "attribute" | "typealias" | "any"
    method: str = ""  # for functions defined in a class: instance | static | class | property
    sigs: list[Sig] = field(default_factory=list)
    values: list = field(default_factory=list)  # fake: ast value nodes; stub: ast value nodes
    members: dict[str, "Member"] = field(default_factory=dict)  # for classes
    bases: list[ast.expr] = field(default_factory=list)  # for classes
    lineno: int = 0
    owner: "Scope | None" = None  # the scope the member was defined in (for evaluation)
    class_scope: "Scope | None" = None  # for classes: the class body's scope
    instance: bool = False  # an attribute set on instances (`self.x = ...` in a method)


@dataclass
class Scope:
    """A module or class body: its members and, for modules, its import bindings."""

    name: str
    members: dict[str, Member] = field(default_factory=dict)
    imports: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # name -> (module, attr)
    reexports: set[str] = field(default_factory=set)  # stub: `from m import X as X`
    parent: "Scope | None" = None
    module: "ModuleModel | None" = None


@dataclass
class ModuleModel:
    name: str
    path: Path | None
    is_stub: bool
    scope: Scope = None  # type: ignore[assignment]


def _decorator_names(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    out = []
    for d in fn.decorator_list:
        if isinstance(d, ast.Call):
            d = d.func
        out.append(ast.unparse(d))
    return out


def _is_false_test(test: ast.expr) -> bool:
    """`if False:` / `if 0:` / `if TYPE_CHECKING:` bodies never run on the board."""
    if isinstance(test, ast.Constant) and not test.value:
        return True
    name = ast.unparse(test)
    return name in ("TYPE_CHECKING", "typing.TYPE_CHECKING")


def _is_typealias(ann: ast.expr | None) -> bool:
    return ann is not None and ast.unparse(ann).split(".")[-1] == "TypeAlias"


def _add(scope: Scope, m: Member) -> Member:
    old = scope.members.get(m.name)
    if old is None:
        scope.members[m.name] = m
        return m
    if old.kind == m.kind and old.method == m.method:
        old.sigs += m.sigs
        old.values += m.values
        for k, v in m.members.items():
            if k in old.members and old.members[k].kind == v.kind:
                old.members[k].sigs += v.sigs
                old.members[k].values += v.values
            else:
                old.members.setdefault(k, v)
        old.bases += m.bases
        return old
    # Bound twice with different kinds (e.g. a function and later an alias): in a stub the
    # alternatives are unions anyway; keep the first, which is what the checker reports against.
    return old


def _collect(body: list[ast.stmt], scope: Scope, is_stub: bool, in_class: bool) -> None:
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            decos = _decorator_names(node)
            if any(d.endswith((".setter", ".deleter")) for d in decos):
                continue  # part of a property defined above
            if in_class:
                if "staticmethod" in decos:
                    method = "static"
                elif "classmethod" in decos:
                    method = "class"
                elif any(d in ("property", "functools.cached_property", "cached_property") for d in decos):
                    method = "property"
                elif node.name == "__new__":
                    method = "static"
                else:
                    method = "instance"
                drop = method in ("instance", "class", "property") or node.name == "__new__"
            else:
                method, drop = "", False
            sig = _sig_of(node.args, drop)
            m = Member(node.name, "function", method, [sig], lineno=node.lineno, owner=scope)
            _add(scope, m)
            if not is_stub and in_class and method != "static":
                _collect_self_attributes(node, scope)
            if not is_stub and not in_class:
                _collect_globals(node, scope)
        elif isinstance(node, ast.ClassDef):
            cscope = Scope(node.name, parent=scope, module=scope.module)
            m = Member(node.name, "class", bases=list(node.bases), lineno=node.lineno,
                       owner=scope, class_scope=cscope)
            m.members = cscope.members
            _collect(node.body, cscope, is_stub, True)
            merged = _add(scope, m)
            if merged is not m and merged.class_scope is not None:
                for k, v in cscope.members.items():
                    merged.class_scope.members.setdefault(k, v)
        elif isinstance(node, ast.Assign):
            for tgt in node.targets:
                if (isinstance(tgt, (ast.Tuple, ast.List)) and isinstance(node.value, (ast.Tuple, ast.List))
                        and len(tgt.elts) == len(node.value.elts)
                        and all(isinstance(e, ast.Name) for e in tgt.elts)):
                    for e, v in zip(tgt.elts, node.value.elts):
                        _add(scope, _assigned(e.id, v, None, node.lineno, scope, is_stub))
                    continue
                for name in _target_names(tgt):
                    value = node.value if isinstance(tgt, ast.Name) else None
                    _add(scope, _assigned(name, value, None, node.lineno, scope, is_stub))
        elif isinstance(node, ast.AnnAssign):
            if isinstance(node.target, ast.Name):
                if node.value is None and not is_stub:
                    continue  # a bare annotation binds nothing at run time
                _add(scope, _assigned(node.target.id, node.value, node.annotation, node.lineno, scope, is_stub))
        elif isinstance(node, ast.If):
            if not is_stub and _is_false_test(node.test):
                _collect(node.orelse, scope, is_stub, in_class)
                continue
            _collect(node.body, scope, is_stub, in_class)
            _collect(node.orelse, scope, is_stub, in_class)
        elif isinstance(node, ast.Try) or type(node).__name__ == "TryStar":
            _collect(node.body, scope, is_stub, in_class)
            for h in node.handlers:
                _collect(h.body, scope, is_stub, in_class)
            _collect(node.orelse, scope, is_stub, in_class)
            _collect(node.finalbody, scope, is_stub, in_class)
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            _collect(node.body, scope, is_stub, in_class)
        elif isinstance(node, ast.Import):
            for a in node.names:
                bound = a.asname or a.name.split(".")[0]
                scope.imports[bound] = (a.name if a.asname else a.name.split(".")[0], None)
                if is_stub and a.asname and a.asname == a.name:
                    scope.reexports.add(bound)
        elif isinstance(node, ast.ImportFrom):
            mod = ("." * node.level) + (node.module or "")
            for a in node.names:
                if a.name == "*":
                    continue
                bound = a.asname or a.name
                scope.imports[bound] = (mod, a.name)
                if is_stub and a.asname and a.asname == a.name:
                    scope.reexports.add(bound)


def _target_names(tgt: ast.expr) -> list[str]:
    if isinstance(tgt, ast.Name):
        return [tgt.id]
    if isinstance(tgt, (ast.Tuple, ast.List)):
        out = []
        for e in tgt.elts:
            out += _target_names(e.value if isinstance(e, ast.Starred) else e)
        return out
    return []


def _assigned(name, value, annotation, lineno, scope, is_stub) -> Member:
    if _is_typealias(annotation):
        return Member(name, "typealias", values=[value] if value is not None else [], lineno=lineno, owner=scope)
    if isinstance(value, ast.Lambda):
        return Member(name, "function", "instance" if scope.parent is not None else "",
                      [_sig_of(value.args, scope.parent is not None)], lineno=lineno, owner=scope)
    if isinstance(value, ast.Call) and ast.unparse(value.func).split(".")[-1] in ("TypeVar", "ParamSpec", "NewType", "TypeVarTuple"):
        return Member(name, "typealias", lineno=lineno, owner=scope)
    return Member(name, "attribute", values=[value] if value is not None else [], lineno=lineno, owner=scope)


def _collect_self_attributes(fn: ast.FunctionDef | ast.AsyncFunctionDef, cscope: Scope) -> None:
    """`self.x = ...` in a method makes `x` a public attribute of the fake's instances."""
    params = fn.args.posonlyargs + fn.args.args
    if not params:
        return
    me = params[0].arg
    for node in ast.walk(fn):
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        stack = list(targets)
        while stack:
            t = stack.pop()
            if isinstance(t, (ast.Tuple, ast.List)):
                stack += [e.value if isinstance(e, ast.Starred) else e for e in t.elts]
            elif isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == me:
                if t.attr not in cscope.members:
                    cscope.members[t.attr] = Member(t.attr, "attribute", lineno=t.lineno, owner=cscope,
                                                    instance=True)


def _collect_globals(fn: ast.FunctionDef | ast.AsyncFunctionDef, scope: Scope) -> None:
    """`global x` + an assignment inside a module-level function binds module attribute `x`."""
    declared: set[str] = set()
    for node in ast.walk(fn):
        if isinstance(node, ast.Global):
            declared.update(node.names)
    if not declared:
        return
    for node in ast.walk(fn):
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        for t in targets:
            for name in _target_names(t):
                if name in declared and name not in scope.members:
                    scope.members[name] = Member(name, "attribute", lineno=node.lineno, owner=scope)


def _resolve_aliases(scope: Scope) -> None:
    """`localtime = gmtime`, `__call__ = value`: a name bound to a def or class of the same
    scope (or, in a class, of the module) is that function or class under another name. A name
    bound to something the checker cannot see (`sleep = simboard.sleep`) has an unknown kind."""
    for name, m in list(scope.members.items()):
        if m.kind == "class" and m.class_scope is not None:
            _resolve_aliases(m.class_scope)
        if m.kind != "attribute" or m.instance or len(m.values) != 1:
            continue
        value = m.values[0]
        if isinstance(value, ast.Name):
            target = None
            s = scope
            while s is not None and target is None:
                t = s.members.get(value.id)
                if t is not None and t is not m:
                    target = t
                elif s.parent is None and value.id in s.imports:
                    break
                s = s.parent
            if target is not None and target.kind in ("function", "class"):
                alias = Member(name, target.kind, target.method, list(target.sigs), members=target.members,
                               bases=target.bases, lineno=m.lineno, owner=target.owner,
                               class_scope=target.class_scope)
                if target.kind == "function" and scope.parent is not None and target.owner is not scope:
                    alias.method = "static"  # a module-level function stored on a class
                scope.members[name] = alias
            elif target is None:
                m.kind = "unknown"
        elif isinstance(value, ast.Attribute):
            m.kind = "unknown"


def parse_module(source: str, name: str, path: Path | None, is_stub: bool) -> ModuleModel:
    tree = ast.parse(source, filename=str(path or name))
    model = ModuleModel(name, path, is_stub)
    model.scope = Scope(name, module=model)
    _collect(tree.body, model.scope, is_stub, False)
    _resolve_aliases(model.scope)
    return model


# ---------------------------------------------------------------------------------------------
# Stub and sibling-module loading
# ---------------------------------------------------------------------------------------------
_stub_cache: dict[str, ModuleModel | None] = {}


def load_stub(module: str) -> ModuleModel | None:
    if module not in _stub_cache:
        path = find_stub(module)
        _stub_cache[module] = (
            parse_module(path.read_text(encoding="utf-8"), module, path, True) if path else None
        )
    return _stub_cache[module]


_sibling_cache: dict[Path, ModuleModel | None] = {}


def _load_sibling(fake_dir: Path | None, module: str) -> ModuleModel | None:
    """A module a fake imports, if it is one of the simulator's own (simboard, fake_machine...)."""
    if fake_dir is None or module.startswith("."):
        return None
    base = module.split(".")[-1]
    for cand in (fake_dir / (base + ".py"), fake_dir / ("fake_" + base + ".py")):
        if cand.is_file():
            if cand not in _sibling_cache:
                try:
                    _sibling_cache[cand] = parse_module(cand.read_text(encoding="utf-8"), cand.stem, cand, False)
                except SyntaxError:
                    _sibling_cache[cand] = None
            return _sibling_cache[cand]
    return None


# ---------------------------------------------------------------------------------------------
# Static evaluation of constants
# ---------------------------------------------------------------------------------------------
_BINOPS = {
    ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
    ast.FloorDiv: lambda a, b: a // b, ast.Div: lambda a, b: a / b, ast.Mod: lambda a, b: a % b,
    ast.Pow: lambda a, b: a ** b, ast.LShift: lambda a, b: a << b, ast.RShift: lambda a, b: a >> b,
    ast.BitOr: lambda a, b: a | b, ast.BitAnd: lambda a, b: a & b, ast.BitXor: lambda a, b: a ^ b,
}
_UNOPS = {ast.USub: lambda a: -a, ast.UAdd: lambda a: +a, ast.Invert: lambda a: ~a, ast.Not: lambda a: not a}


class _Evaluator:
    def __init__(self, fake_dir: Path | None, is_stub: bool):
        self.fake_dir = fake_dir
        self.is_stub = is_stub
        self.active: set[int] = set()

    def value_of(self, member: Member):
        """The single statically known value of an attribute member, or _NO_VALUE."""
        if member.kind != "attribute" or len(member.values) != 1 or member.values[0] is None:
            return _NO_VALUE
        key = id(member)
        if key in self.active:
            return _NO_VALUE
        self.active.add(key)
        try:
            return self.eval(member.values[0], member.owner)
        except (_Unknown, ArithmeticError, TypeError, ValueError, RecursionError):
            return _NO_VALUE
        finally:
            self.active.discard(key)

    def eval(self, node: ast.expr, scope: Scope | None):
        if isinstance(node, ast.Constant):
            if node.value is Ellipsis:
                raise _Unknown
            return node.value
        if isinstance(node, ast.Tuple):
            return tuple(self.eval(e, scope) for e in node.elts)
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNOPS:
            return _UNOPS[type(node.op)](self.eval(node.operand, scope))
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            return _BINOPS[type(node.op)](self.eval(node.left, scope), self.eval(node.right, scope))
        if isinstance(node, ast.Call) and len(node.args) == 1 and not node.keywords:
            fname = ast.unparse(node.func)
            if fname in ("const", "micropython.const"):
                return self.eval(node.args[0], scope)
            raise _Unknown
        if isinstance(node, ast.Name):
            return self.lookup(node.id, scope)
        if isinstance(node, ast.Attribute):
            # module.NAME (a sibling module such as simboard) or Class.NAME
            if isinstance(node.value, ast.Name) and scope is not None:
                owner = self._class_named(node.value.id, scope)
                if owner is not None:
                    m = owner.members.get(node.attr)
                    if m is not None:
                        v = self.value_of(m)
                        if v is not _NO_VALUE:
                            return v
                    raise _Unknown
                mod = self._module_bound_to(node.value.id, scope)
                if mod is not None:
                    return self.lookup(node.attr, mod.scope)
            raise _Unknown
        raise _Unknown

    def _class_named(self, name: str, scope: Scope):
        s = scope
        while s is not None:
            m = s.members.get(name)
            if m is not None:
                return m if m.kind == "class" else None
            s = s.parent
        return None

    def _module_bound_to(self, name: str, scope: Scope) -> ModuleModel | None:
        s = scope
        while s.parent is not None:
            s = s.parent
        imp = s.imports.get(name)
        if imp is None or imp[1] is not None:
            return None
        return load_stub(imp[0]) if self.is_stub else _load_sibling(self.fake_dir, imp[0])

    def lookup(self, name: str, scope: Scope | None):
        s = scope
        while s is not None:
            m = s.members.get(name)
            if m is not None:
                v = self.value_of(m)
                if v is _NO_VALUE:
                    raise _Unknown
                return v
            if s.parent is None:
                imp = s.imports.get(name)
                if imp is not None and imp[1] is not None:
                    v = self.imported_value(imp[0], imp[1])
                    if v is _NO_VALUE:
                        raise _Unknown
                    return v
            s = s.parent
        raise _Unknown

    def imported_value(self, module: str, attr: str):
        mod = load_stub(module) if self.is_stub else _load_sibling(self.fake_dir, module)
        if mod is None:
            return _NO_VALUE
        try:
            return self.lookup(attr, mod.scope)
        except _Unknown:
            return _NO_VALUE


# ---------------------------------------------------------------------------------------------
# Stub member lookup (with bases)
# ---------------------------------------------------------------------------------------------
def _resolve_stub_name(expr: ast.expr, scope: Scope, seen: set) -> Member | None:
    """The stub class a base-class expression names (same stub, or imported from another)."""
    module_scope = scope
    while module_scope.parent is not None:
        module_scope = module_scope.parent
    if isinstance(expr, ast.Subscript):  # Generic[...], Protocol[...]
        expr = expr.value
    if isinstance(expr, ast.Name):
        m = module_scope.members.get(expr.id)
        if m is not None:
            if m.kind == "class":
                return m
            if m.kind == "typealias" and m.values and isinstance(m.values[0], ast.expr):
                key = (id(module_scope), expr.id)
                if key in seen:
                    return None
                seen.add(key)
                return _resolve_stub_name(m.values[0], module_scope, seen)
            return None
        imp = module_scope.imports.get(expr.id)
        if imp is not None and imp[1] is not None:
            other = load_stub(imp[0])
            if other is not None:
                m = other.scope.members.get(imp[1])
                if m is not None and m.kind == "class":
                    return m
        return None
    if isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name):
        imp = module_scope.imports.get(expr.value.id)
        if imp is not None and imp[1] is None:
            other = load_stub(imp[0])
            if other is not None:
                m = other.scope.members.get(expr.attr)
                if m is not None and m.kind == "class":
                    return m
    return None


def stub_class_member(cls: Member, name: str, _seen: set | None = None) -> Member | None:
    """`name` in stub class `cls` or, failing that, in its bases (depth-first, in order)."""
    seen = _seen if _seen is not None else set()
    if id(cls) in seen:
        return None
    seen.add(id(cls))
    m = cls.members.get(name)
    if m is not None:
        return m
    for base in cls.bases:
        scope = cls.owner
        if scope is None:
            continue
        b = _resolve_stub_name(base, scope, set())
        if b is not None:
            m = stub_class_member(b, name, seen)
            if m is not None:
                return m
    return None


def stub_module_member(stub: ModuleModel, name: str) -> Member | None:
    m = stub.scope.members.get(name)
    if m is not None:
        return m
    if name in stub.scope.reexports:
        mod, attr = stub.scope.imports[name]
        if attr is None:
            return Member(name, "any")
        other = load_stub(mod)
        if other is not None and other is not stub:
            m = stub_module_member(other, attr)
            if m is not None:
                return m
        return Member(name, "any")
    return None


# ---------------------------------------------------------------------------------------------
# Signature matching
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Shape:
    """One way of calling the fake: k positional args plus keyword-only args `kw` (names)."""

    k: int
    kw: frozenset
    extra_pos: bool = False  # one more positional argument, taken by the fake's *args
    extra_kw: bool = False  # an unknown keyword, taken by the fake's **kwargs


def _shapes(f: Sig) -> list[_Shape]:
    required = sum(1 for p in f.pos if not p.default)
    req_kw = frozenset(p.name for p in f.kwonly if not p.default)
    opt_kw = [p.name for p in f.kwonly if p.default]
    out = []
    for k in range(required, len(f.pos) + 1):
        out.append(_Shape(k, req_kw))
        for name in opt_kw:
            out.append(_Shape(k, req_kw | {name}))
    if f.varpos:
        out.append(_Shape(len(f.pos), req_kw, extra_pos=True))
    if f.varkw:
        out.append(_Shape(len(f.pos), req_kw, extra_kw=True))
    return out


def _accept(f: Sig, shape: _Shape, s: Sig, alts: list[Sig]) -> tuple[bool, int, str]:
    """Does stub signature `s` accept the call `shape` of fake `f` the same way?

    Returns (ok, progress, problem); progress says how far the match got, to pick the closest
    overload for the message."""
    k = shape.k
    s_kw = s.kw
    for i in range(k):
        fp = f.pos[i]
        if i < len(s.pos):
            sp = s.pos[i]
            if fp.name != sp.name:
                # A positional-only stub parameter has no name callers can use; accept a name
                # some overload gives this position (the fake merges overloads).
                alias_ok = sp.posonly and any(
                    i < len(a.pos) and a.pos[i].name == fp.name for a in alts)
                if not alias_ok:
                    return False, i, "parameter %d is '%s' in the stub, '%s' in the fake" % (i + 1, sp.name, fp.name)
            if not fp.default and sp.default:
                return False, i, "parameter %d '%s' has a default in the stub but not in the fake" % (i + 1, fp.name)
        elif s.varpos:
            continue
        elif fp.name in s_kw:
            return False, i, "parameter '%s' is keyword-only in the stub but positional in the fake" % fp.name
        else:
            return False, i, "parameter %d '%s' is not in the stub (the stub takes %d positional parameters)" % (
                i + 1, fp.name, len(s.pos))
    progress = 100
    if shape.extra_pos and not s.varpos:
        return False, progress, "the fake accepts extra positional arguments (*%s), the stub does not" % "args"
    for i in range(k, len(s.pos)):
        sp = s.pos[i]
        if not sp.default:
            if i < len(f.pos):
                if f.pos[i].name == sp.name:
                    msg = "parameter %d '%s' is required in the stub but has a default in the fake" % (i + 1, sp.name)
                else:
                    msg = "parameter %d is required in the stub ('%s') but has a default in the fake ('%s')" % (
                        i + 1, sp.name, f.pos[i].name)
                return False, progress + 1, msg
            if f.varpos:
                continue  # the fake's *args takes it; names are not comparable there
            return False, progress + 1, "missing required parameter %d '%s'" % (i + 1, sp.name)
    progress = 200
    f_kw = f.kw
    s_pos_names = {p.name: p for p in s.pos}
    for name in sorted(shape.kw):
        fp = f_kw[name]
        sp = s_kw.get(name)
        if sp is not None:
            if not fp.default and sp.default:
                return False, progress, "keyword-only parameter '%s' has a default in the stub but not in the fake" % name
        elif name in s_pos_names and not s_pos_names[name].posonly:
            return False, progress, "parameter '%s' is positional in the stub but keyword-only in the fake" % name
        elif s.varkw:
            continue
        else:
            return False, progress, "keyword-only parameter '%s' is not in the stub" % name
    if shape.extra_kw and not s.varkw:
        return False, progress + 1, "the fake accepts arbitrary keyword arguments (**kwargs), the stub does not"
    progress = 300
    for sp in s.kwonly:
        if not sp.default and sp.name not in shape.kw:
            if sp.name in f_kw:
                return False, progress, "keyword-only parameter '%s' is required in the stub but has a default in the fake" % sp.name
            if f.varkw:
                continue
            return False, progress, "missing required keyword-only parameter '%s'" % sp.name
    return True, 1000, ""


def signature_problems(f: Sig, alts: list[Sig], name: str) -> list[str]:
    """Problems of fake signature `f` against the stub's alternatives `alts` (empty: it fits)."""
    if not alts:
        return []
    problems: list[str] = []
    seen: set[str] = set()
    for shape in _shapes(f):
        best = None
        for s in alts:
            ok, progress, msg = _accept(f, shape, s, alts)
            if ok:
                best = None
                break
            if best is None or progress > best[0]:
                best = (progress, msg, s)
        else:
            if best is not None and best[1] not in seen:
                seen.add(best[1])
                msg = best[1]
                if len(alts) > 1:
                    msg += " (no stub overload matches; closest of %d: %s)" % (len(alts), best[2].text(name))
                problems.append(msg)
    return problems


# ---------------------------------------------------------------------------------------------
# Comparing members
# ---------------------------------------------------------------------------------------------
def _describe(m: Member, in_class: bool) -> str:
    if m.kind == "function":
        if not in_class:
            return "a function"
        return {"instance": "a method", "static": "a staticmethod", "class": "a classmethod",
                "property": "a property"}.get(m.method, "a method")
    if m.kind == "attribute" and m.instance:
        return "an instance attribute (self.%s)" % m.name
    return {"class": "a class", "attribute": "a constant/attribute", "unknown": "a name", "typealias": "a type alias (no run-time object)",
            "any": "a re-exported name"}.get(m.kind, m.kind)


def _attribute_like(m: Member) -> bool:
    return m.kind == "attribute" or (m.kind == "function" and m.method == "property")


class Checker:
    def __init__(self, fake: ModuleModel, stub: ModuleModel, fake_dir: Path | None):
        self.fake = fake
        self.stub = stub
        self.problems: list[str] = []
        self.fake_eval = _Evaluator(fake_dir, is_stub=False)
        self.stub_eval = _Evaluator(None, is_stub=True)

    def report(self, qual: str, msg: str) -> None:
        self.problems.append("%s: %s" % (qual, msg))

    def run(self) -> list[str]:
        prefix = self.fake.name
        scope = self.fake.scope
        for name, fm in scope.members.items():
            if name.startswith("_"):
                continue
            qual = "%s.%s" % (prefix, name)
            sm = stub_module_member(self.stub, name)
            if sm is None:
                self.report(qual, "%s in the fake, not in the stub of `%s`" % (_describe(fm, False), self.stub.name))
                continue
            self.compare(fm, sm, qual, in_class=False)
        # Constants the fake imports from elsewhere (simboard) are still the module's values.
        for name, (mod, attr) in scope.imports.items():
            if name.startswith("_") or attr is None or name in scope.members:
                continue
            sm = stub_module_member(self.stub, name)
            if sm is None or sm.kind != "attribute":
                continue
            self.compare_values(self.fake_eval.imported_value(mod, attr), sm, "%s.%s" % (prefix, name))
        return self.problems

    def compare(self, fm: Member, sm: Member, qual: str, in_class: bool) -> None:
        if sm.kind == "any" or fm.kind == "unknown":
            return
        same_kind = (fm.kind == sm.kind and (fm.kind != "function" or fm.method == sm.method)) or (
            in_class and _attribute_like(fm) and _attribute_like(sm))
        if not same_kind:
            self.report(qual, "%s in the fake, %s in the stub" % (_describe(fm, in_class), _describe(sm, in_class)))
            return
        if fm.kind == "function" and fm.method != "property":
            name = qual.rsplit(".", 1)[-1]
            for f in fm.sigs:
                for msg in signature_problems(f, sm.sigs, name):
                    self.report(qual, msg)
        elif fm.kind == "class":
            self.compare_class(fm, sm, qual)
        elif fm.kind == "attribute" and sm.kind == "attribute":
            for node in fm.values:
                if node is None:
                    continue
                single = Member(fm.name, "attribute", values=[node], owner=fm.owner)
                self.compare_values(self.fake_eval.value_of(single), sm, qual)

    def compare_values(self, fv, sm: Member, qual: str) -> None:
        if fv is _NO_VALUE:
            return
        sv = self.stub_eval.value_of(sm)
        if sv is _NO_VALUE:
            return
        if type(fv) is not type(sv) or fv != sv:
            self.report(qual, "value is %r in the stub, %r in the fake" % (sv, fv))

    def compare_class(self, fc: Member, sc: Member, qual: str) -> None:
        for name, fm in fc.members.items():
            if name.startswith("__") and name.endswith("__"):
                if name not in CHECKED_DUNDERS:
                    continue
            elif name.startswith("_"):
                continue
            mqual = "%s.%s" % (qual, name)
            sm = stub_class_member(sc, name)
            if sm is None and name == "__init__":
                sm = stub_class_member(sc, "__new__")
                if sm is not None and sm.kind == "function":
                    sm = Member("__init__", "function", "instance", sm.sigs)
                else:
                    continue  # the stub says nothing about constructing this class
            if sm is None:
                self.report(mqual, "%s in the fake, not in the stub class `%s.%s`" % (
                    _describe(fm, True), self.stub.name, sc.name))
                continue
            self.compare(fm, sm, mqual, in_class=True)


def check_source(source: str, stub_module: str, fake_name: str | None = None,
                 fake_dir: Path | None = None) -> list[str]:
    """Problems of fake module source `source` against the stub of `stub_module`."""
    fake_name = fake_name or "fake_" + stub_module
    stub = load_stub(stub_module)
    if stub is None:
        return ["%s: no stub for module `%s` in %s" % (fake_name, stub_module, ", ".join(STUB_DISTRIBUTIONS))]
    fake = parse_module(source, fake_name, None, False)
    return Checker(fake, stub, fake_dir).run()


def stub_module_for(fake_path: Path | str) -> str:
    stem = Path(fake_path).stem
    if not stem.startswith("fake_"):
        raise ValueError("not a fake module: %s" % fake_path)
    return stem[len("fake_"):]


def check_fake(fake_path: Path | str, stub_module: str | None = None) -> list[str]:
    """Problems of the fake file at `fake_path` (fake_X.py is checked against stub X)."""
    path = Path(fake_path)
    return check_source(path.read_text(encoding="utf-8"), stub_module or stub_module_for(path),
                        fake_name=path.stem, fake_dir=path.parent)


if __name__ == "__main__":  # python tests/stubcheck.py simulator/mp/fake_*.py
    import sys

    rc = 0
    for arg in sys.argv[1:]:
        for p in check_fake(arg):
            print(p)
            rc = 1
    sys.exit(rc)
