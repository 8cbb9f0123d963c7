"""The queue's SQL, one named constant per statement (all as the service role)."""

from __future__ import annotations

UNFINISHED = "('pending', 'retrying', 'running')"

# $1 name, $2 job_type, $3 input (JSON text), $4 priority, $5 max_attempts, $6 run_at
# (null: now), $7 dedupe_key, $8 NOTIFY payload. The NOTIFY rides the caller's transaction,
# so workers hear of the job exactly when it commits.
ENQUEUE = f"""
with inserted as (
  insert into public.background_jobs
    (job_name, job_type, input, priority, max_attempts, scheduled_for, dedupe_key)
  values ($1, $2, $3::text::jsonb, $4, $5, coalesce($6, now()), $7)
  on conflict (dedupe_key) where dedupe_key is not null and status in {UNFINISHED}
  do nothing
  returning id
)
select id, pg_notify('background_jobs', $8) from inserted
"""
UNFINISHED_BY_DEDUPE_KEY = f"""
select id from public.background_jobs where dedupe_key = $1 and status in {UNFINISHED}
"""

# Per name ($1) up to $2 due rows, highest priority first then oldest due, skipping rows
# other workers hold; at most $4 in all. Each lateral probe walks idx_background_jobs_claim
# in order (no sort, no scan of finished rows). A claimed recurring row ($3 = period in
# seconds, 0 for none) inserts its next period's row in the same statement.
# $5 worker id, $6 lease seconds.
CLAIM = """
with params as (
  select * from unnest($1::text[], $2::int[], $3::float8[]) as p(job_name, slots, every_s)
), candidates as (
  select j.id, j.priority, j.scheduled_for
  from params p
  cross join lateral (
    select b.id, b.priority, b.scheduled_for
    from public.background_jobs b
    where b.job_name = p.job_name
      and b.status in ('pending', 'retrying')
      and b.scheduled_for <= now()
    order by b.priority desc, b.scheduled_for
    limit p.slots
    for update skip locked
  ) j
  order by j.priority desc, j.scheduled_for
  limit $4
), claimed as (
  update public.background_jobs b
  set status = 'running', attempts = coalesce(b.attempts, 0) + 1, started_at = now(),
      locked_by = $5, locked_until = now() + make_interval(secs => $6)
  from candidates c
  where b.id = c.id
  returning b.id, b.job_name, b.job_type, b.input, b.priority, b.attempts,
            coalesce(b.max_attempts, 3) as max_attempts, b.period_start
), chained as (
  insert into public.background_jobs
    (job_name, job_type, input, priority, max_attempts, period_start, scheduled_for)
  select c.job_name, c.job_type, c.input, c.priority, c.max_attempts, n.start, n.start
  from claimed c
  join params p on p.job_name = c.job_name
  cross join lateral (
    select to_timestamp((floor(extract(epoch from now()) / p.every_s) + 1) * p.every_s) as start
  ) n
  where c.period_start is not null and p.every_s > 0
  on conflict (job_name, period_start) where period_start is not null do nothing
)
select id, job_name, input::text as input, attempts, max_attempts, period_start from claimed
"""

# $1 name, $2 job_type, $3 input, $4 priority, $5 max_attempts, $6 period seconds.
ENSURE_PERIOD = """
with inserted as (
  insert into public.background_jobs
    (job_name, job_type, input, priority, max_attempts, period_start, scheduled_for)
  select $1, $2, $3::text::jsonb, $4, $5,
         to_timestamp(floor(extract(epoch from now()) / $6::float8) * $6::float8), now()
  on conflict (job_name, period_start) where period_start is not null do nothing
  returning job_name
)
select pg_notify('background_jobs', job_name) from inserted
"""

# Every write below is fenced by (locked_by, attempts): a worker whose lease ran out and
# whose job another worker took over changes nothing.
COMPLETE = """
update public.background_jobs b
set status = 'completed', output = u.output::jsonb, error = null, completed_at = now(),
    locked_by = null, locked_until = null
from unnest($1::uuid[], $2::int[], $3::text[]) as u(id, attempt, output)
where b.id = u.id and b.attempts = u.attempt and b.locked_by = $4 and b.status = 'running'
returning b.id
"""
# $1 id, $2 attempt, $3 worker, $4 error, $5 delay seconds, $6 NOTIFY payload.
RETRY = """
with updated as (
  update public.background_jobs
  set status = 'retrying', error = $4, scheduled_for = now() + make_interval(secs => $5),
      locked_by = null, locked_until = null
  where id = $1 and attempts = $2 and locked_by = $3 and status = 'running'
  returning id
)
select id, pg_notify('background_jobs', $6) from updated
"""
FAIL = """
update public.background_jobs
set status = 'failed', error = $4, completed_at = now(), locked_by = null, locked_until = null
where id = $1 and attempts = $2 and locked_by = $3 and status = 'running'
returning id
"""
# The worker's heartbeat: one statement for all its running jobs.
HEARTBEAT = """
update public.background_jobs set locked_until = now() + make_interval(secs => $3)
where id = any($1::uuid[]) and locked_by = $2 and status = 'running'
returning id
"""
# Shutdown past the grace period: the job goes back to waiting, the attempt not counted.
RELEASE = """
with released as (
  update public.background_jobs
  set status = 'pending', attempts = greatest(attempts - 1, 0), scheduled_for = now(),
      started_at = null, locked_by = null, locked_until = null
  where id = any($1::uuid[]) and locked_by = $2 and status = 'running'
  returning job_name
)
select pg_notify('background_jobs', job_name) from released
"""
# Running jobs whose lease ran out (their worker was killed or cut off): back to retrying
# now, or failed when that was the last attempt. Any worker may run this; each row once.
REAP = """
with expired as (
  select id from public.background_jobs
  where status = 'running' and locked_until < now()
  for update skip locked
), reaped as (
  update public.background_jobs b
  set status = case when b.attempts >= coalesce(b.max_attempts, 3) then 'failed'
                    else 'retrying' end,
      error = 'lease expired: worker ' || coalesce(b.locked_by, '?')
              || ' stopped renewing it during attempt ' || b.attempts,
      completed_at = case when b.attempts >= coalesce(b.max_attempts, 3) then now() end,
      scheduled_for = now(), locked_by = null, locked_until = null
  from expired e
  where b.id = e.id
  returning b.id, b.job_name, b.job_type, b.status, b.attempts,
            coalesce(b.max_attempts, 3) as max_attempts, b.error
)
select r.*, case when r.status = 'retrying' then pg_notify('background_jobs', r.job_name) end
from reaped r
"""
NOTIFY = "select pg_notify('background_jobs', $1)"
