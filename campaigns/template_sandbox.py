"""What makes a staff-written email template safe to render: plain lookups and a render budget.

Three pieces, each closing one way out:

* ``PlainVariable``: a variable is looked up in plain data only. ``a.b``
  is a key of a dict or an index of a list; ``.items``, ``.keys`` and
  ``.values`` of a dict (for ``{% for k, v in d.items %}``) are the only
  names that are not keys. Never an attribute, never a call: even a model
  instance slipped into the context would give nothing away, and no method
  (one that writes, or reads a related manager) can run.
* ``RenderBudget``: counters that the render itself increments, so an
  over-budget render stops where it is, in the thread that runs it (there is
  no other thread or process to kill). Loop iterations are charged when a
  ``{% for %}`` starts (nested loops multiply, and are refused before the
  inner loop runs); the output is counted where it is made (text and
  ``{{ }}`` nodes); a filter's result is refused over the output budget
  (``|add`` chains and ``{% with %}`` could otherwise double a string per
  step); and each node and filter call checks a deadline, the backstop for
  work that makes no output. Every step between two checks is bounded by
  those sizes, so the deadline is met to within one step.
* ``EmailTemplateEngine``: compiles with the library of allowed tags and
  filters only (``campaigns.template_library``), through a parser that
  makes every variable a ``PlainVariable`` and every node list a counting one.

A render must run inside ``within_budget(budget)``; a counting node list
outside one raises rather than render without limits.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from time import monotonic as _monotonic
from typing import Any, cast

from django.template import Engine, Template
from django.template.base import FilterExpression, Lexer, Node, NodeList, Parser, Variable, VariableDoesNotExist
from django.template.defaulttags import ForNode, IfNode
from django.utils.safestring import SafeString


class TemplateBudgetExceeded(Exception):
    """A render went over its budget (loop iterations, output size or time) and was stopped."""


class RenderBudget:
    """What one render of a template (its subject and bodies together) may use."""

    __slots__ = ("deadline", "loops", "max_loops", "max_output", "output", "timeout_s")

    def __init__(self, *, max_loops: int, max_output_chars: int, timeout_s: float) -> None:
        self.max_loops = max_loops
        self.max_output = max_output_chars
        self.timeout_s = timeout_s
        self.loops = 0
        self.output = 0
        self.deadline = _monotonic() + timeout_s

    def tick(self) -> None:
        """One step of the render (a node, a filter call): stop once past the deadline."""
        if _monotonic() > self.deadline:
            raise TemplateBudgetExceeded(f"rendering took longer than {self.timeout_s:g} s")

    def charge_loop(self, iterations: int) -> None:
        self.loops += iterations
        if self.loops > self.max_loops:
            raise TemplateBudgetExceeded(f"more than {self.max_loops:,} loop iterations")

    def charge_output(self, chars: int) -> None:
        self.output += chars
        if self.output > self.max_output:
            raise TemplateBudgetExceeded(f"more than {self.max_output:,} characters of output")

    def check_value(self, made_by: str, value: Any) -> None:
        """A value a filter made may not be larger than the whole output may be."""
        if isinstance(value, str | list | tuple | dict):
            self.check_size(made_by, len(value))

    def check_size(self, made_by: str, size: int) -> None:
        if size > self.max_output:
            raise TemplateBudgetExceeded(
                f"the |{made_by} filter would make a value of {size:,} characters or items, over {self.max_output:,}"
            )


_current: contextvars.ContextVar[RenderBudget | None] = contextvars.ContextVar("email_render_budget", default=None)


@contextmanager
def within_budget(budget: RenderBudget) -> Iterator[RenderBudget]:
    """Renders in this block (this thread) count against ``budget``."""
    token = _current.set(budget)
    try:
        yield budget
    finally:
        _current.reset(token)


def enter_budget(budget: RenderBudget) -> contextvars.Token[RenderBudget | None]:
    """``within_budget`` without the context manager's cost, for the per-message render: pair with ``leave_budget``."""
    return _current.set(budget)


def leave_budget(token: contextvars.Token[RenderBudget | None]) -> None:
    _current.reset(token)


def current_budget() -> RenderBudget:
    budget = _current.get()
    if budget is None:
        raise RuntimeError("an email template renders only within a budget (campaigns.rendering.render_parts)")
    return budget


class PlainVariable(Variable):
    """A variable looked up in plain data: dict keys and list indexes, no attribute, no call."""

    __slots__ = ()  # Django's Variable has slots: the same layout, so a parsed one can become this class

    def _resolve_lookup(self, context: Any) -> Any:
        lookups = self.lookups or ()  # Django calls this for a variable only, never a literal
        try:
            current = context[lookups[0]]
            for bit in lookups[1:]:
                current = _plain_lookup(current, bit)
        except (KeyError, IndexError, ValueError, TypeError):
            # A short message: Django's own holds the repr of the whole context.
            raise VariableDoesNotExist("%s is not a template variable", (self.var,)) from None
        return current


_DICT_VIEWS = ("items", "keys", "values")


def _plain_lookup(current: Any, bit: str) -> Any:
    if isinstance(current, Mapping):
        if bit in current:
            return current[bit]
        if bit in _DICT_VIEWS:
            return list(getattr(current, bit)())
        raise KeyError(bit)
    if isinstance(current, list | tuple):
        return current[int(bit)]
    raise TypeError(bit)


def _plain_expression(expression: FilterExpression) -> FilterExpression:
    """The same expression, its variable and its filters' variable arguments looked up in plain data."""
    if isinstance(expression.var, Variable):
        expression.var.__class__ = PlainVariable
    for _, arguments in expression.filters:
        for is_lookup, argument in arguments:
            if is_lookup:
                argument.__class__ = PlainVariable
    return expression


class PlainParser(Parser):
    """Every expression a tag or ``{{ }}`` compiles is looked up in plain data."""

    def compile_filter(self, token: str) -> FilterExpression:
        return _plain_expression(super().compile_filter(token))


class CountingNodeList(NodeList):
    """A node list that checks the deadline before each node and counts the characters its leaf nodes make.

    A leaf (text, ``{{ }}``, ``{% now %}``, ...) makes output; a container
    (``{% if %}``, ``{% for %}``, ...) passes on what its own children made,
    which were counted already. (The checks are written out here, not called:
    this runs for every node of every email.)
    """

    #: (node, is a leaf) for each node, set once when the template is compiled.
    steps: tuple[tuple[Node, bool], ...] = ()

    def render(self, context: Any) -> SafeString:
        budget = _current.get()
        if budget is None:
            raise RuntimeError("an email template renders only within a budget (campaigns.rendering.render_parts)")
        bits: list[str] = []
        bit: Any
        for node, leaf in self.steps:
            if _monotonic() > budget.deadline:
                budget.tick()  # raises
            bit = node.render_annotated(context)
            if leaf:
                budget.output += len(bit)
                if budget.output > budget.max_output:
                    budget.charge_output(0)  # raises
            bits.append(bit)
        return SafeString("".join(bits))


def _child_nodelists(node: Node) -> list[NodeList]:
    if isinstance(node, IfNode):  # its ``nodelist`` is a new list of every branch's nodes
        return [nodelist for _, nodelist in node.conditions_nodelists]
    children = (getattr(node, name, None) for name in node.child_nodelists)
    return [child for child in children if isinstance(child, NodeList)]


class _LoopBody(Node):
    """A ``{% for %}``'s body as one node, rendered as a counting node list.

    Django's ``ForNode`` renders its body's nodes one by one itself, not
    through ``NodeList.render``: without this, nothing in a loop would be counted.
    """

    child_nodelists = ("nodelist",)

    def __init__(self, nodelist: NodeList) -> None:
        self.nodelist = nodelist

    def render(self, context: Any) -> str:
        return self.nodelist.render(context)


def _count(nodelist: NodeList) -> None:
    """Make this node list, and every one below it, a ``CountingNodeList``."""
    leaves = []
    for node in nodelist:
        children = _child_nodelists(node)
        for child in children:
            _count(child)
        if isinstance(node, ForNode):
            node.nodelist_loop = NodeList([_LoopBody(cast(NodeList, node.nodelist_loop))])
        leaves.append(not children)
    nodelist.__class__ = CountingNodeList
    nodelist.steps = tuple(zip(nodelist, leaves, strict=True))  # type: ignore[attr-defined]


class SandboxedTemplate(Template):
    """A template compiled by ``PlainParser``, its node lists counting."""

    def compile_nodelist(self) -> NodeList:
        tokens = Lexer(self.source).tokenize()
        parser = PlainParser(tokens, self.engine.template_libraries, self.engine.template_builtins, self.origin)
        nodelist = parser.parse()
        self.extra_data = parser.extra_data  # type: ignore[attr-defined]
        _count(nodelist)
        return nodelist


class EmailTemplateEngine(Engine):
    """An engine whose only builtins are the allowed tags and filters (``campaigns.template_library``)."""

    default_builtins = ["campaigns.template_library"]

    def __init__(self) -> None:
        # No libraries to {% load %}, no template files, no debug pages.
        super().__init__(libraries={}, loaders=[("django.template.loaders.locmem.Loader", {})], debug=False)

    def from_string(self, template_code: str) -> Template:
        return SandboxedTemplate(template_code, engine=self)
