#!/usr/bin/env python
"""Django's command-line utility for Conveyor."""

from __future__ import annotations

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.core.management import execute_from_command_line

    from config.modes import START_REFUSALS, refusal_line

    try:
        execute_from_command_line(sys.argv)
    except START_REFUSALS as exc:
        # An unsafe or malformed environment (CONVEYOR_ENV=production's
        # refusals, a non-number in an integer variable): the message names
        # the variable, so one line instead of a traceback.
        sys.stderr.write(refusal_line(exc) + "\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
