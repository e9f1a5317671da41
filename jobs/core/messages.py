"""Names of the message options Conveyor adds to Dramatiq messages."""

from __future__ import annotations

#: The job type (set on every message the job service sends).
JOB_TYPE = "conveyor_type"
#: How many attempts the Job had when this message was sent; a worker runs the
#: message only if the Job still has that many, so duplicates are skipped.
ATTEMPT = "conveyor_attempt"
MAX_ATTEMPTS = "conveyor_max_attempts"
PRIORITY = "conveyor_priority"
#: The parent job of a fan-out child, told when the child finishes.
PARENT = "conveyor_parent"
#: The fair-dispatch bucket the message waits in, and its owner's weight (``jobs.dispatch.fairness``).
OWNER = "conveyor_owner"
WEIGHT = "conveyor_weight"
#: The job's estimated seconds: what fair dispatch charges its owner for it.
COST = "conveyor_cost"
#: Set by the mirror on a message it skipped, for the log and the tests.
SKIP_REASON = "conveyor_skip_reason"

JOB_OPTIONS = (JOB_TYPE, ATTEMPT, MAX_ATTEMPTS, PRIORITY, PARENT, OWNER, WEIGHT, COST, SKIP_REASON)
