"""The commands each kind of host runs: one definition for the topology test and the compose file.

``docker/docker-compose.yml`` runs these in its services and
``tests/test_docker.py`` checks that it does; ``tests/topology/test_topology.py``
runs the same ones on its hosts (with the virtualenv's python for ``python``).
"""

from __future__ import annotations

from collections.abc import Sequence


def release_command() -> list[str]:
    """Migrations and the admin account, once per deploy (the image already collected static files)."""
    return ["python", "manage.py", "release", "--skip-collectstatic"]


def role_command(roles: Sequence[str], queues: Sequence[str] | None = None) -> list[str]:
    """``runconveyor`` with these roles (and, for workers, only these queues' pools)."""
    argv = ["python", "manage.py", "runconveyor"]
    for role in roles:
        argv += ["--role", role]
    if queues:
        argv += ["--queues", ",".join(queues)]
    return argv
