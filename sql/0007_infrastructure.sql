-- Infrastructure module.
-- Deliberate fix: api_logs is partitioned by month on created_at (seed note 3), so its primary
-- key must contain the partition key: (id, created_at), and created_at is not null.

create table public.background_jobs (
  id uuid primary key default gen_random_uuid(),
  job_name text not null,
  job_type text not null check (job_type in ('ai_processing', 'code_execution', 'file_processing', 'sync', 'cleanup')),
  status text default 'pending' check (status in ('pending', 'running', 'completed', 'failed', 'retrying')),
  input jsonb not null,
  output jsonb,
  error text,
  attempts integer default 0,
  max_attempts integer default 3,
  priority integer default 0,
  scheduled_for timestamptz,
  started_at timestamptz,
  completed_at timestamptz,
  created_at timestamptz default now()
);

create table public.code_executions (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null references public.users(id) on delete cascade,
  project_id uuid references public.projects(id) on delete cascade,
  language text not null,
  source_code text not null,
  stdin text,
  stdout text,
  stderr text,
  compile_output text,
  status text not null,
  exit_code integer,
  execution_time_ms decimal,
  memory_kb integer,
  token text, -- Judge0 token
  created_at timestamptz default now()
);

create table public.api_logs (
  id uuid not null default gen_random_uuid(),
  user_id uuid references public.users(id),
  endpoint text not null,
  method text not null,
  status_code integer not null,
  request_body jsonb,
  response_body jsonb,
  duration_ms integer,
  ip_address inet,
  user_agent text,
  created_at timestamptz not null default now(),
  primary key (id, created_at)
) partition by range (created_at);
