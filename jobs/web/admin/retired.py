"""Admin pages of installed apps that only mislead here: unregistered, the apps stay installed.

* django-dramatiq's "Tasks": its ``AdminMiddleware`` is not in our broker's stack (the
  Job table is the record of every message), so the list is always empty.
* django-apscheduler's "Django jobs" and "Django job executions": the scheduler's job store
  needs the app, but its pages offer "run selected django jobs", which calls the stored
  function outside our scheduler and fails; schedules are run, paused and fired from the
  Schedule admin (``jobs.web.admin.schedules``).

``jobs.admin`` imports this module after those apps' own admin modules (``INSTALLED_APPS``
lists them first), so their registrations exist when these lines run.
"""

from __future__ import annotations

from django.contrib import admin
from django_apscheduler.models import DjangoJob, DjangoJobExecution
from django_dramatiq.models import Task

for model in (Task, DjangoJob, DjangoJobExecution):
    if admin.site.is_registered(model):
        admin.site.unregister(model)
