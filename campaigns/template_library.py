"""The only tags and filters an email template may use: an allow-list of Django's, each within the budget.

Email templates are edited by staff and rendered in workers for every
recipient, so the engine that compiles them
(``template_sandbox.EmailTemplateEngine``) has this module as its one builtin
library and nothing to ``{% load %}``. A tag or filter not listed here is
unknown to that engine.

Allowed, and how each stays bounded:

* tags: ``if``, ``for`` (its iterations charged to the budget before the
  loop runs), ``with``, ``firstof``, ``cycle``, ``resetcycle``, ``now``,
  ``spaceless``, ``comment``, ``filter``, ``ifchanged``, ``templatetag``,
  ``verbatim``, ``widthratio``, and ``autoescape on`` (``off`` is refused:
  the HTML part escapes what it prints);
* filters: the string, number, date and list filters below, each call a
  step of the budget, its result no larger than the output may be;
  ``|join`` is refused before it builds a string over the budget, and
  ``|floatformat`` beyond 30 decimal places.

Left out, and why:

* reaching data or code: ``debug`` (the whole context), ``pprint`` (any
  repr), ``dictsort``/``dictsortreversed`` (attribute paths), ``regroup``
  (groups read by attribute), ``load``, ``include``, ``extends``, ``block``
  (other libraries, other templates), ``url``, ``csrf_token``,
  ``querystring`` (the project's URL map, a request);
* escaping turned off: ``safe``, ``safeseq``, ``json_script`` (safe output),
  ``autoescape off``;
* size or time unbounded by their input: ``lorem``, ``ljust``, ``rjust``,
  ``center``, ``stringformat`` (a number in the template sets the size),
  ``wordwrap`` (quadratic in its input), ``unordered_list`` (recursion);
* HTML or URL parsing with a history of slow inputs: ``striptags``,
  ``urlize``, ``urlizetrunc``, ``truncatechars_html``, ``truncatewords_html``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

from django.template import Library, TemplateSyntaxError, defaultfilters, defaulttags
from django.template.base import Node, Parser, Token

from campaigns.template_sandbox import TemplateBudgetExceeded, current_budget

ALLOWED_TAGS = frozenset(
    {
        "autoescape",
        "comment",
        "cycle",
        "filter",
        "firstof",
        "for",
        "if",
        "ifchanged",
        "now",
        "resetcycle",
        "spaceless",
        "templatetag",
        "verbatim",
        "widthratio",
        "with",
    }
)
#: The closing and middle parts of the allowed tags (the parser reads them inside their tag).
INNER_TAGS = frozenset(
    {
        "elif",
        "else",
        "empty",
        "endautoescape",
        "endcomment",
        "endfilter",
        "endfor",
        "endif",
        "endifchanged",
        "endspaceless",
        "endverbatim",
        "endwith",
    }
)
ALLOWED_FILTERS = frozenset(
    {
        "add",
        "addslashes",
        "capfirst",
        "cut",
        "date",
        "default",
        "default_if_none",
        "divisibleby",
        "escape",
        "escapejs",
        "escapeseq",
        "filesizeformat",
        "first",
        "floatformat",
        "force_escape",
        "get_digit",
        "iriencode",
        "join",
        "last",
        "length",
        "linebreaks",
        "linebreaksbr",
        "linenumbers",
        "lower",
        "make_list",
        "phone2numeric",
        "pluralize",
        "random",
        "slice",
        "slugify",
        "time",
        "timesince",
        "timeuntil",
        "title",
        "truncatechars",
        "truncatewords",
        "upper",
        "urlencode",
        "wordcount",
        "yesno",
    }
)
#: ``|floatformat``'s precision is its output's length: beyond this, refused.
MAX_FLOAT_DECIMALS = 30

register = Library()


def _within_budget(name: str, filter_: Callable[..., Any]) -> Callable[..., Any]:
    """The filter as one step of the render's budget; a result over the output budget is refused."""

    @functools.wraps(filter_)  # keeps is_safe, needs_autoescape, expects_localtime and the signature
    def bounded(value: Any, *args: Any, **kwargs: Any) -> Any:
        budget = current_budget()
        budget.tick()
        result = filter_(value, *args, **kwargs)
        budget.check_value(name, result)
        return result

    return bounded


def _join(value: Any, arg: Any, autoescape: bool = True) -> Any:
    """``|join``, refused before it builds a string over the output budget (a long separator, many items)."""
    if isinstance(value, list | tuple):
        size = sum(len(str(item)) for item in value) + len(str(arg)) * max(len(value) - 1, 0)
        current_budget().check_size("join", size)
    return defaultfilters.join(value, arg, autoescape=autoescape)


def _floatformat(text: Any, arg: Any = -1) -> Any:
    """``|floatformat``, refused beyond ``MAX_FLOAT_DECIMALS`` places (its precision sets its length)."""
    digits = re.search(r"\d+", str(arg))
    if digits and int(digits.group()) > MAX_FLOAT_DECIMALS:
        raise TemplateBudgetExceeded(f"|floatformat beyond {MAX_FLOAT_DECIMALS} decimal places")
    return defaultfilters.floatformat(text, arg)


_SPECIAL_FILTERS: dict[str, Callable[..., Any]] = {"join": _join, "floatformat": _floatformat}

for _name in sorted(ALLOWED_FILTERS):
    _django_filter = defaultfilters.register.filters[_name]
    _filter = _SPECIAL_FILTERS.get(_name, _django_filter)
    if _filter is not _django_filter:
        functools.update_wrapper(_filter, _django_filter)  # Django's flags and argument count
    register.filters[_name] = _within_budget(_name, _filter)

register.tags.update(
    {name: tag for name, tag in defaulttags.register.tags.items() if name in ALLOWED_TAGS - {"for", "autoescape"}}
)


@register.tag("for")
def do_for(parser: Parser, token: Token) -> Node:
    """``{% for %}``, its iterations charged to the budget before the first one runs."""
    node = defaulttags.do_for(parser, token)
    node.sequence = _ChargedSequence(node.sequence)  # type: ignore[assignment]
    return node


class _ChargedSequence:
    """A ``{% for %}``'s sequence: resolving it charges its length to the render's loop budget."""

    def __init__(self, expression: Any) -> None:
        self.expression = expression

    def resolve(self, context: Any, ignore_failures: bool = False) -> Any:
        values = self.expression.resolve(context, ignore_failures)
        if values is None:
            return values
        if not hasattr(values, "__len__"):
            values = list(values)
        current_budget().charge_loop(len(values))
        return values

    def __str__(self) -> str:
        return str(self.expression)


@register.tag("autoescape")
def autoescape(parser: Parser, token: Token) -> Node:
    """``{% autoescape on %}`` only: the HTML part escapes everything it prints."""
    args = token.contents.split()
    if len(args) == 2 and args[1] == "off":
        raise TemplateSyntaxError("{% autoescape off %} is not allowed in email templates")
    return defaulttags.autoescape(parser, token)
