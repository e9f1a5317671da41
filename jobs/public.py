"""The platform's public face: everything a domain app may use from ``jobs``, and nothing else.

Domain apps (``documents``, ``campaigns``, ``exports``) import only this
module (``lint-imports`` enforces it). Through it they:

* **declare** a job type once (``JobType``: its queue, actor, payload
  serializer, plan, estimate and outcome hooks; ``register_job_type``) and
  its actor (``@job_actor(THE_TYPE)``, which takes the name and queue from
  the type);
* **start** jobs (``start_job`` for a request's payload; ``build_job`` and
  ``create_jobs`` for jobs a domain service creates itself, sent after commit);
* **report progress** from inside a run (``progress``, the fan-out helpers,
  ``write_progress`` from another thread of the run; ``yield_if_others_wait``
  between the steps of a long child, so fair dispatch can let another owner in)
  and run stoppable work
  in child processes (``run_command``, ``run_in_child``);
* **write only while the run holds its job**: domain writes of a run go
  through ``fenced()`` (a transaction refused with ``RunSuperseded`` once
  another worker took the job over), outputs are named per attempt
  (``current_fence().attempt``), claims of domain rows carry
  ``str(current_fence())``, and a step that must not be cut in the middle (an
  email handed to its server) runs in ``uninterrupted()``;
* **keep files** in the configured storage, never a host's path: copy one
  to a scratch directory for a tool (``local_copy``, ``scratch_dir``), store
  what a job made (``save_local_file``), stream one to a client after the
  owner-or-staff check (``stored_file_response``);
* **let a finished job run again** (``JobType.rerun``: plan the new job from
  the original, or refuse with ``JobNotRerunnable``) and **point its owner at
  what it made** (``JobType.result_links``: a list of ``ResultLink`` for the job page);
* **hear outcomes** through their type's hooks (``on_finished``,
  ``on_failed``, ``on_cancelled``, ``on_cancel_requested``,
  ``on_children_done``), with a ``JobOutcome`` of plain values; hooks run
  after commit, at least once (``jobs.dispatch.outcomes`` says exactly when);
* **plug in** what the platform reports on: alert rules, weekly report
  columns and links, cleanups, datasets for exports, per-user activity for the digest;
* **look alike** in the admin (``status_badge`` with a ``Tone`` per status);
* **reach Redis** as the platform does (``connect_redis``: the configured
  host, or the primary Redis Sentinel names, followed through a failover).
"""

from __future__ import annotations

from jobs.core.access import may_see, sees_everything, visible_to
from jobs.core.context import current_job
from jobs.core.enums import ACTIVE_STATUSES, TERMINAL_STATUSES, JobPriority, JobStatus, StopReason
from jobs.core.exceptions import (
    JobCancelled,
    JobNotRerunnable,
    JobTimedOut,
    PermanentJobError,
    Reschedule,
    RunSuperseded,
    TransientJobError,
    readable_reason,
)
from jobs.core.files import local_copy, open_stream, save_local_file, scratch_dir, stored_size
from jobs.core.origin import AuditAction, JobOrigin, Origin, Via
from jobs.core.queues import get_queue
from jobs.core.redis_connection import connect_redis
from jobs.dispatch.outcomes import ChildrenSummary, FailedChild, JobOutcome
from jobs.dispatch.registry import JobPlan, JobType, ResultLink, default_plan, get_job_type, register_job_type
from jobs.dispatch.services import build_job, create_jobs, start_job
from jobs.dispatch.status import is_unfinished, recent_results
from jobs.ops.activity import activity_sources, recently_active_users, register_activity_source
from jobs.ops.alerts.rules import AlertRule, Breach, register_alert_rule, slow_jobs_rule, timed_out_rule
from jobs.ops.datasets.spec import (
    DATETIME,
    INTEGER,
    TEXT,
    Column,
    Dataset,
    DatasetQuery,
    Filter,
    InvalidDatasetQuery,
    choice,
    get_dataset,
    quoted_table,
    register_dataset,
)
from jobs.ops.reports import register_report_column, register_report_link
from jobs.ops.scheduling import register_cleanup
from jobs.ops.stats import register_work_counter
from jobs.state.audit import record_audit
from jobs.state.fencing import Fence, current_fence, fenced
from jobs.web.admin.badges import Tone, status_badge
from jobs.web.api.permissions import ModelPermissions
from jobs.web.api.throttles import UploadThrottle
from jobs.web.api.tokens import TOO_MANY as TOO_MANY_REQUESTS
from jobs.web.downloads import stored_file_response
from jobs.worker.actors import job_actor
from jobs.worker.fanout import AwaitChildren, ChildJob, fan_out, report_parent_progress, set_parent_progress
from jobs.worker.isolation import (
    ChildFailedPermanently,
    ChildProcessFailed,
    MemoryCeilingExceeded,
    last_peak_rss_mb,
    preload_in_children,
    run_command,
    run_in_child,
)
from jobs.worker.liveness import run_may_still_be_going
from jobs.worker.progress import progress, write_progress_of
from jobs.worker.stopping import uninterrupted
from jobs.worker.yielding import others_waiting, yield_if_others_wait

__all__ = [
    "Fence",
    "RunSuperseded",
    "current_fence",
    "fenced",
    "run_may_still_be_going",
    "uninterrupted",
    "ModelPermissions",
    "AuditAction",
    "JobOrigin",
    "Origin",
    "Via",
    "record_audit",
    "TOO_MANY_REQUESTS",
    "UploadThrottle",
    "connect_redis",
    "DATETIME",
    "INTEGER",
    "TEXT",
    "Column",
    "Dataset",
    "DatasetQuery",
    "Filter",
    "InvalidDatasetQuery",
    "choice",
    "get_dataset",
    "quoted_table",
    "readable_reason",
    "register_dataset",
    "ACTIVE_STATUSES",
    "TERMINAL_STATUSES",
    "Tone",
    "AlertRule",
    "activity_sources",
    "AwaitChildren",
    "Breach",
    "ChildFailedPermanently",
    "ChildJob",
    "ChildProcessFailed",
    "ChildrenSummary",
    "FailedChild",
    "JobCancelled",
    "JobNotRerunnable",
    "JobOutcome",
    "JobPlan",
    "JobPriority",
    "JobStatus",
    "JobTimedOut",
    "JobType",
    "MemoryCeilingExceeded",
    "PermanentJobError",
    "Reschedule",
    "ResultLink",
    "StopReason",
    "TransientJobError",
    "build_job",
    "create_jobs",
    "current_job",
    "default_plan",
    "fan_out",
    "get_job_type",
    "get_queue",
    "is_unfinished",
    "job_actor",
    "last_peak_rss_mb",
    "local_copy",
    "may_see",
    "open_stream",
    "preload_in_children",
    "progress",
    "recent_results",
    "recently_active_users",
    "register_activity_source",
    "register_alert_rule",
    "register_cleanup",
    "register_job_type",
    "register_report_column",
    "register_work_counter",
    "register_report_link",
    "report_parent_progress",
    "run_command",
    "run_in_child",
    "save_local_file",
    "scratch_dir",
    "sees_everything",
    "set_parent_progress",
    "slow_jobs_rule",
    "start_job",
    "status_badge",
    "stored_file_response",
    "stored_size",
    "timed_out_rule",
    "visible_to",
    "write_progress_of",
    "others_waiting",
    "yield_if_others_wait",
]
