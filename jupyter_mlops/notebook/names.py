"""Which names one cell of plain Python defines, uses and mutates, found with ``ast``.

Module-level code runs top to bottom, so a walk in evaluation order tells a use before a
definition (``x = x + 1`` uses ``x``). Function and class bodies run later, when called, so
the globals they read are *late* uses, found with ``symtable`` which applies Python's own
scoping rules (closures, ``global``, ``nonlocal``, comprehensions).
"""

from __future__ import annotations

import ast
import functools
import symtable
from dataclasses import dataclass, field

#: Methods that change their object when called for their effect (``model.fit(X, y)``).
MUTATING_METHODS = frozenset({
    "fit", "partial_fit", "fit_transform", "fit_predict", "set_params", "append", "extend",
    "update", "insert", "pop", "popitem", "remove", "clear", "sort", "reverse", "discard",
    "setdefault", "resize", "fill", "shuffle", "itemset", "put", "setflags",
})
#: Methods called for their output only: a bare ``df.head()`` does not change ``df``.
READ_ONLY_METHODS = frozenset({
    "head", "tail", "describe", "info", "sample", "plot", "hist", "boxplot", "show",
    "value_counts", "nunique", "unique", "corr", "cov", "to_csv", "to_parquet", "to_json",
    "to_excel", "to_pickle", "to_string", "to_markdown", "savefig", "display", "items",
    "keys", "values", "get", "copy", "count", "mean", "sum", "min", "max", "std", "var",
    "median", "predict", "predict_proba", "decision_function", "score", "transform",
    "isna", "isnull", "notna", "notnull", "memory_usage", "print", "summary", "get_params",
    "debug", "warning", "error", "critical", "exception", "log", "format", "join",
    "tolist", "to_numpy", "to_dict", "to_list", "any", "all", "round", "dtypes", "nlargest",
    "nsmallest", "idxmax", "idxmin", "agg", "aggregate", "apply", "map", "groupby",
    "pivot_table", "merge", "concat", "astype", "close", "tight_layout", "legend",
    "set_title", "set_xlabel", "set_ylabel", "write", "flush",
})


@dataclass
class CellNames:
    """The names one cell reads and binds."""

    #: Names read at top level before the cell binds them, in order of first use.
    uses: list[str] = field(default_factory=list)
    #: Globals read inside functions, lambdas and classes the cell defines.
    late_uses: list[str] = field(default_factory=list)
    #: Names the cell binds, with the kind of the last binding: import, def, class or data.
    defines: dict[str, str] = field(default_factory=dict)
    #: Names changed in place (``df["x"] = 1``, ``df.dropna(inplace=True)``, ``model.fit()``).
    mutates: list[str] = field(default_factory=list)
    #: Import statements and def/class sources by the name they bind, for replay in a step.
    code: dict[str, str] = field(default_factory=dict)
    star_imports: list[str] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)


def _base_name(node: ast.expr) -> str | None:
    """``df`` for ``df["a"].iloc[0]``, ``model`` for ``model.named_steps["x"]``."""
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _changed_object(node: ast.expr) -> str | None:
    """The name a method call on ``node`` changes: ``df`` for ``df.dropna(inplace=True)`` or
    ``model.named_steps["x"].fit()``; none for a call's result (``Ridge().fit(X, y)`` makes a
    new object and changes no name, so ``Ridge`` is not an output of the cell)."""
    return None if isinstance(node, ast.Call) else _base_name(node)


#: Builtins whose result iterates over the items of their one argument.
_SAME_ITEMS = frozenset({"reversed", "sorted", "list", "tuple", "iter"})


def _item_sources(target: ast.expr, items: ast.expr, found: dict[str, list[str]]) -> None:
    """Add to ``found`` which names' values ``target`` is bound to items of, when a ``for``
    binds it to the items of ``items``: ``m`` to ``models`` for ``models``,
    ``models.values()`` or ``enumerate(models)`` (its index to none), ``ax`` to ``axes``
    and ``col`` to ``features`` for ``zip(axes, features)``; ``m`` to ``lr`` and ``rf`` for
    ``(lr, rf)``; nothing for another call's result (``range(3)``, ``df.iterrows()``)."""
    if isinstance(items, ast.Call) and isinstance(items.func, ast.Name):
        args = items.args
        if items.func.id == "enumerate" and args and isinstance(target, ast.Tuple) \
                and len(target.elts) == 2:
            _item_sources(target.elts[1], args[0], found)
        elif items.func.id == "zip" and isinstance(target, ast.Tuple) \
                and len(target.elts) == len(args):
            for index, part in enumerate(target.elts):  # as many as args (3.9: no strict)
                _item_sources(part, args[index], found)
        elif items.func.id in _SAME_ITEMS and len(args) == 1:
            _item_sources(target, args[0], found)
        return
    if isinstance(items, ast.Call):
        base = (_changed_object(items.func.value) if isinstance(items.func, ast.Attribute)
                else None)
        method = items.func.attr if isinstance(items.func, ast.Attribute) else ""
        if base is not None and method == "values":
            _bind(target, [base], found)
        elif base is not None and method == "items" and isinstance(target, ast.Tuple) \
                and len(target.elts) == 2:
            _bind(target.elts[1], [base], found)
        return
    if isinstance(items, (ast.Tuple, ast.List, ast.Set)):
        _bind(target, [b for b in map(_base_name, items.elts) if b is not None], found)
        return
    base = _base_name(items)
    if base is not None:
        _bind(target, [base], found)


def _bind(target: ast.expr, sources: list[str], found: dict[str, list[str]]) -> None:
    """Each name of ``target`` bound to items of ``sources`` (not to itself), in order."""
    for node in ast.walk(target):
        if isinstance(node, ast.Name):
            mine = found.setdefault(node.id, [])
            mine.extend(s for s in sources if s != node.id and s not in mine)


class _Walker(ast.NodeVisitor):
    """Walks module-level statements in evaluation order."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.out = CellNames()
        self.bound: set[str] = set()
        self.comprehension_locals: list[set[str]] = []
        #: A loop's names bound to the items of a name's value (``for m in models.values()``):
        #: changing one in place changes that value (``m.fit(X, y)`` fits a model of
        #: ``models``), until the name is bound again.
        self.aliases: dict[str, list[str]] = {}
        #: ``from __future__ import annotations`` makes annotations strings, never run.
        self.lazy_annotations = False

    # -- recording -------------------------------------------------------------------
    def use(self, name: str) -> None:
        if any(name in scope for scope in self.comprehension_locals):
            return
        if name not in self.bound and name not in self.out.uses:
            self.out.uses.append(name)

    def define(self, name: str, kind: str = "data") -> None:
        if self.comprehension_locals:
            self.comprehension_locals[-1].add(name)
            return
        self.bound.add(name)
        self.aliases.pop(name, None)
        self.out.defines.pop(name, None)  # keep the order of the last binding
        self.out.defines[name] = kind
        if name in self.out.deletes:
            self.out.deletes.remove(name)

    def mutate(self, name: str | None, seen: frozenset[str] = frozenset()) -> None:
        if name is None or any(name in s for s in self.comprehension_locals):
            return
        for source in self.aliases.get(name, ()):
            if source not in seen and source != name:
                self.mutate(source, seen | {name})
        self.use(name)
        if name not in self.bound and name not in self.out.mutates:
            self.out.mutates.append(name)

    # -- names and stores ------------------------------------------------------------
    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            self.use(node.id)
        elif isinstance(node.ctx, ast.Store):
            self.define(node.id)
        else:  # Del
            self.use(node.id)
            self.bound.discard(node.id)
            self.out.defines.pop(node.id, None)
            self.out.deletes.append(node.id)

    def _store_target(self, target: ast.expr) -> None:
        if isinstance(target, ast.Name):
            self.define(target.id)
        elif isinstance(target, (ast.Tuple, ast.List)):
            for elt in target.elts:
                self._store_target(elt)
        elif isinstance(target, ast.Starred):
            self._store_target(target.value)
        elif isinstance(target, (ast.Subscript, ast.Attribute)):
            # df["x"] = ...: reads df, evaluates the index, and changes df in place.
            self.visit(target.value)
            if isinstance(target, ast.Subscript):
                self.visit(target.slice)
            self.mutate(_base_name(target))

    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)
        for target in node.targets:
            self._store_target(target)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)
        if not self.lazy_annotations:
            self.visit(node.annotation)
        if node.value is not None or not isinstance(node.target, ast.Name):
            self._store_target(node.target)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        if isinstance(node.target, ast.Name):
            self.use(node.target.id)
            self.visit(node.value)
            self.define(node.target.id)
        else:
            self.visit(node.value)
            self._store_target(node.target)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.visit(node.value)
        # PEP 572: a walrus in a comprehension binds in the enclosing scope.
        saved, self.comprehension_locals = self.comprehension_locals, []
        self._store_target(node.target)
        self.comprehension_locals = saved

    def visit_Delete(self, node: ast.Delete) -> None:
        for target in node.targets:
            if isinstance(target, ast.Name):
                self.visit(target)
            else:
                self.visit(target)
                self.mutate(_base_name(target))

    # -- statements with targets ------------------------------------------------------
    def visit_For(self, node: ast.For | ast.AsyncFor) -> None:
        self.visit(node.iter)
        self._store_target(node.target)
        if not self.comprehension_locals:
            found: dict[str, list[str]] = {}
            _item_sources(node.target, node.iter, found)
            self.aliases.update({name: sources for name, sources in found.items() if sources})
        for stmt in node.body + node.orelse:
            self.visit(stmt)

    visit_AsyncFor = visit_For

    def visit_With(self, node: ast.With | ast.AsyncWith) -> None:
        for item in node.items:
            self.visit(item.context_expr)
            if item.optional_vars is not None:
                self._store_target(item.optional_vars)
        for stmt in node.body:
            self.visit(stmt)

    visit_AsyncWith = visit_With

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.type is not None:
            self.visit(node.type)
        if node.name:
            self.define(node.name)
        for stmt in node.body:
            self.visit(stmt)

    def visit_MatchAs(self, node: ast.MatchAs) -> None:
        if node.pattern is not None:
            self.visit(node.pattern)
        if node.name:
            self.define(node.name)

    def visit_MatchStar(self, node: ast.MatchStar) -> None:
        if node.name:
            self.define(node.name)

    def visit_MatchMapping(self, node: ast.MatchMapping) -> None:
        self.generic_visit(node)
        if node.rest:
            self.define(node.rest)

    # -- imports, functions, classes: bound now, bodies run later -------------------------
    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            name = alias.asname or alias.name.split(".")[0]
            self.define(name, "import")
            self.out.code[name] = f"import {alias.name}" + (
                f" as {alias.asname}" if alias.asname else "")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = "." * node.level + (node.module or "")
        if module == "__future__":
            self.lazy_annotations |= any(a.name == "annotations" for a in node.names)
            return
        for alias in node.names:
            if alias.name == "*":
                self.out.star_imports.append(module)
                continue
            name = alias.asname or alias.name
            self.define(name, "import")
            self.out.code[name] = f"from {module} import {alias.name}" + (
                f" as {alias.asname}" if alias.asname else "")

    def _definition(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef,
                    kind: str) -> None:
        for decorator in node.decorator_list:
            self.visit(decorator)
        if isinstance(node, ast.ClassDef):
            for expr in node.bases + [k.value for k in node.keywords]:
                self.visit(expr)
        else:
            args = node.args
            for default in args.defaults + [d for d in args.kw_defaults if d is not None]:
                self.visit(default)
            if not self.lazy_annotations:  # annotations run when the def runs
                every = args.posonlyargs + args.args + args.kwonlyargs + [
                    a for a in (args.vararg, args.kwarg) if a is not None]
                for annotation in [a.annotation for a in every] + [node.returns]:
                    if annotation is not None:
                        self.visit(annotation)
        nested = bool(self.comprehension_locals)
        self.define(node.name, kind)
        if not nested:
            start = min([d.lineno for d in node.decorator_list] + [node.lineno])
            lines = self.source.splitlines()[start - 1:node.end_lineno]
            self.out.code[node.name] = "\n".join(lines)
        if isinstance(node, ast.ClassDef):
            # A class body runs when the class is defined, in a scope of its own.
            self.comprehension_locals.append(set())
            for stmt in node.body:
                self.visit(stmt)
            self.comprehension_locals.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._definition(node, "def")

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._definition(node, "def")

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._definition(node, "class")

    def visit_Lambda(self, node: ast.Lambda) -> None:
        for default in node.args.defaults + [d for d in node.args.kw_defaults if d]:
            self.visit(default)

    def visit_Global(self, node: ast.Global) -> None:  # meaningless at top level
        return

    # -- calls that change their object -------------------------------------------------
    def visit_Expr(self, node: ast.Expr) -> None:
        self.visit(node.value)
        call = node.value
        if isinstance(call, ast.Await):
            call = call.value
        if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                and call.func.attr not in READ_ONLY_METHODS):
            self.mutate(_changed_object(call.func.value))

    def visit_Call(self, node: ast.Call) -> None:
        self.generic_visit(node)
        if isinstance(node.func, ast.Attribute):
            inplace = any(
                k.arg == "inplace" and isinstance(k.value, ast.Constant) and k.value.value is True
                for k in node.keywords
            )
            if inplace or node.func.attr in MUTATING_METHODS:
                self.mutate(_changed_object(node.func.value))

    # -- comprehensions: their own scope ------------------------------------------------
    def _comprehension(self, node: ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp,
                       elements: list[ast.expr]) -> None:
        generators = node.generators
        self.visit(generators[0].iter)  # evaluated in the enclosing scope
        self.comprehension_locals.append(set())
        for index, generator in enumerate(generators):
            if index:
                self.visit(generator.iter)
            self._store_target(generator.target)
            for condition in generator.ifs:
                self.visit(condition)
        for element in elements:
            self.visit(element)
        self.comprehension_locals.pop()

    def visit_ListComp(self, node: ast.ListComp) -> None:
        self._comprehension(node, [node.elt])

    visit_SetComp = visit_ListComp
    visit_GeneratorExp = visit_ListComp

    def visit_DictComp(self, node: ast.DictComp) -> None:
        self._comprehension(node, [node.key, node.value])


_COMPREHENSIONS = {"listcomp", "setcomp", "dictcomp", "genexpr"}


def _late_names(table: symtable.SymbolTable, top: bool, reads: list[str],
                writes: list[str]) -> None:
    """Globals read (and written through ``global``) by bodies that run later."""
    own = not (top and table.get_name() in _COMPREHENSIONS)
    if own and table.get_type() != "module":
        for symbol in table.get_symbols():
            name = symbol.get_name()
            if symbol.is_global() and symbol.is_referenced() and name not in reads:
                reads.append(name)
            if symbol.is_declared_global() and symbol.is_assigned() and name not in writes:
                writes.append(name)
    for child in table.get_children():
        _late_names(child, table.get_type() == "module" or (top and not own), reads, writes)


def cell_names(source: str, filename: str = "<cell>") -> CellNames:
    """Analyse one cell of plain Python. Raises SyntaxError as ``ast.parse`` does.

    Results are remembered by source: the sidebar analyses the same notebook after every
    save, and only the edited cells need parsing again. Each caller gets its own copy.
    """
    found = _cell_names(source, filename)
    return CellNames(list(found.uses), list(found.late_uses), dict(found.defines),
                     list(found.mutates), dict(found.code), list(found.star_imports),
                     list(found.deletes))


@functools.lru_cache(maxsize=16384)
def _cell_names(source: str, filename: str) -> CellNames:
    tree = ast.parse(source, filename)
    walker = _Walker(source)
    for stmt in tree.body:
        walker.visit(stmt)
    result = walker.out
    reads: list[str] = []
    writes: list[str] = []
    _late_names(symtable.symtable(source, filename, "exec"), True, reads, writes)
    result.late_uses = [n for n in reads if n not in result.uses]
    for name in writes:
        result.defines.setdefault(name, "data")
    return result
