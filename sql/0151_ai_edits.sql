-- AI edits (job_type 'refactor' for a range, 'generate' for an insertion) are ai_jobs rows:
-- at most one pending or running per file, so two requests on one file (from any process)
-- cannot write into the same text at once; a second one is refused as busy. The process
-- that holds the edit expires it when it finishes; an edit whose process died is expired
-- by the next request after the stale limit (as chat jobs are).
create unique index ai_jobs_one_active_edit
  on public.ai_jobs (((input ->> 'file_id')))
  where job_type in ('refactor', 'generate') and status in ('pending', 'running');
