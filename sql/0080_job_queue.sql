-- background_jobs becomes the job queue (jobs/ package; docs/jobs.md).
-- Deliberate additions to the seed's table, all nullable or defaulted so the seed's columns
-- keep their meaning:
--   locked_by      the worker holding a running job (a lease, not a row lock);
--   locked_until   when that lease runs out; the worker's heartbeat pushes it forward, and a
--                  running job past it (worker killed, connection lost) is taken back;
--   dedupe_key     at most one unfinished (pending/retrying/running) job per key: enqueueing
--                  the same logical job again before it finished returns the unfinished one;
--   period_start   the period a recurring job's row stands for: one row per (job_name,
--                  period_start), so N processes scheduling the same period insert it once.
-- scheduled_for gets a default of now() (the seed has none): the claim reads
-- `scheduled_for <= now()`, so a row inserted without it by hand is due at once.

alter table public.background_jobs
  add column locked_by text,
  add column locked_until timestamptz,
  add column dedupe_key text,
  add column period_start timestamptz;

alter table public.background_jobs alter column scheduled_for set default now();
update public.background_jobs set scheduled_for = coalesce(created_at, now())
where scheduled_for is null;

-- The claim: per job name, waiting rows by priority desc then due time, `scheduled_for <=
-- now()` read from the same index; partial, so finished rows never enter it.
create index idx_background_jobs_claim on public.background_jobs
  (job_name, priority desc, scheduled_for)
  where status in ('pending', 'retrying');

-- The reaper: running rows whose lease ran out.
create index idx_background_jobs_lease on public.background_jobs (locked_until)
  where status = 'running';

-- Running is included: a retried or released job goes back to waiting with its key, which
-- must not collide with a second job enqueued meanwhile.
create unique index idx_background_jobs_dedupe on public.background_jobs (dedupe_key)
  where dedupe_key is not null and status in ('pending', 'retrying', 'running');

create unique index idx_background_jobs_period on public.background_jobs (job_name, period_start)
  where period_start is not null;

-- Failures per job name over time (the operator page) and the retention of finished rows.
create index idx_background_jobs_finished on public.background_jobs (completed_at)
  where status in ('completed', 'failed');
