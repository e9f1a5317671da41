"""The only tags and filters an email template may use: Django's, minus the dangerous ones.

Email templates are edited by staff and rendered in workers with real users
and campaigns in the context, so the engine that compiles them
(``rendering.email_engine``) has this module as its one builtin library and
no other library to ``{% load %}``. Left out, and why:

* ``debug`` (dumps the whole context and the loaded modules), ``pprint``
  (the repr of any object);
* ``load``, ``include``, ``extends`` and the other loader tags (no other
  library, no template from disk);
* ``url``, ``csrf_token``, ``querystring`` (they need a project URL map or a
  request, neither of which an email has);
* ``safe``, ``safeseq`` (turn off escaping of user data in the HTML part);
* ``lorem``, ``ljust``, ``rjust``, ``center``, ``stringformat`` (a number in
  the template makes them build strings of any size, in the web process that
  checks the template and in every worker that sends it).
"""

from __future__ import annotations

from django.template import Library, defaultfilters, defaulttags

FORBIDDEN_TAGS = frozenset({"debug", "load", "url", "csrf_token", "querystring", "lorem"})
#: The loader tags: no builtin library of this engine defines them, so they are unknown here too.
LOADER_TAGS = frozenset({"include", "extends", "block"})
FORBIDDEN_FILTERS = frozenset({"pprint", "safe", "safeseq", "ljust", "rjust", "center", "stringformat"})

register = Library()
register.tags.update({name: tag for name, tag in defaulttags.register.tags.items() if name not in FORBIDDEN_TAGS})
register.filters.update(
    {name: filter_ for name, filter_ in defaultfilters.register.filters.items() if name not in FORBIDDEN_FILTERS}
)
