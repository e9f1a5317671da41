"""Exports on S3-compatible storage: the worker stores the file, the web host streams it back.

The worker pool and the web server (uvicorn, ASGI) each get their own empty
MEDIA_ROOT: the file can only pass between them through the bucket.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from exports.models import Export, ExportStatus
from jobs.models import JobStatus
from tests.exports.helpers import expected_rows, read_csv, seed_jobs, typed_csv_row
from tests.factories import UserFactory, api_token
from tests.jobs.helpers import start, wait_terminal
from tests.web_server import WebServer

#: Django's warning when it must buffer a synchronous streaming body under ASGI.
BUFFERED_UNDER_ASGI = "StreamingHttpResponse must consume synchronous iterators"


@pytest.mark.slow
def test_on_s3_an_export_job_stores_its_file_and_the_web_host_streams_it(pools, s3_bucket, user, tmp_path):
    # Given a csv-export worker and a web host that share only the bucket, and some of the user's jobs
    web_media, worker_media = tmp_path / "web-media", tmp_path / "worker-media"
    pools("csv-export", env={**s3_bucket.env, "MEDIA_ROOT": str(worker_media)})
    web = WebServer(env={**s3_bucket.env, "MEDIA_ROOT": str(web_media)}).start()
    try:
        jobs = seed_jobs(user, 30)
        # When the export job runs
        job = wait_terminal(
            start("csv-export", user, query_params={"dataset": "jobs", "filters": {"type": "report"}}, format="csv"),
            timeout=60,
        )
        # Then the file is in the bucket, named on the export only now that it is stored, with its size
        assert job.status == JobStatus.COMPLETED, job.error_message
        export = Export.objects.get(job=job)
        assert export.status == ExportStatus.COMPLETED
        stored = s3_bucket.objects()
        assert stored == {export.file.name: export.size_bytes}
        # When its owner downloads it from the web host
        token = api_token(user)
        url = f"{web.url}{job.progress_data['download_url']}"
        response = requests.get(url, headers={"Authorization": f"Token {token}"}, timeout=30)
        # Then it streams out of the bucket with the export's headers, the database rows exactly
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "text/csv"
        assert response.headers["Content-Disposition"] == f'attachment; filename="{export.download_name}"'
        header, rows = read_csv(response.content)
        assert [typed_csv_row(header, row) for row in rows] == expected_rows(jobs)
        # And another user gets 404
        other = api_token(UserFactory())
        assert requests.get(url, headers={"Authorization": f"Token {other}"}, timeout=30).status_code == 404
        # And the web host streamed without buffering; no host kept a file on its own disk
        assert BUFFERED_UNDER_ASGI not in web.log()
        assert [path for root in (web_media, worker_media) if root.exists() for path in Path(root).rglob("*")] == []
    finally:
        web.stop()
