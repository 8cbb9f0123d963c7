-- Deployments as jobs (preview/builds.py): what a build needs beside the seed's columns.
-- target: where it goes ('preview': the built-in sandbox preview; 'vercel': Vercel's API).
-- job_id: the background job building it (cancel, status).
-- external_id / external_url: the target's own deployment id and URL (Vercel).
-- error: the short reason of a failed build (the full output is in logs).
-- finished_at: when it reached success, failed or canceled.
alter table public.deployments
  add column if not exists target text not null default 'preview',
  add column if not exists job_id uuid,
  add column if not exists external_id text,
  add column if not exists error text,
  add column if not exists finished_at timestamptz;

alter table public.deployments drop constraint if exists deployments_target_check;
alter table public.deployments
  add constraint deployments_target_check check (target in ('preview', 'vercel'));

-- At most one unfinished deployment per project, environment and target: a second request
-- while one builds is answered with the running one.
create unique index if not exists deployments_one_unfinished
  on public.deployments (project_id, environment, target)
  where status in ('pending', 'building', 'deploying');
