-- Observability module.
-- Deliberate fix: analytics_events is partitioned by month on created_at (seed note 3), so its
-- primary key must contain the partition key: (id, created_at), and created_at is not null.

create table public.error_logs (
  id uuid primary key default gen_random_uuid(),
  user_id uuid references public.users(id),
  project_id uuid references public.projects(id),
  sentry_issue_id text,
  error_type text not null,
  message text not null,
  stack_trace text,
  context jsonb default '{}',
  severity text check (severity in ('fatal', 'error', 'warning', 'info')),
  environment text default 'production',
  created_at timestamptz default now()
);

create table public.analytics_events (
  id uuid not null default gen_random_uuid(),
  user_id uuid references public.users(id),
  workspace_id uuid references public.workspaces(id),
  event_name text not null,
  event_category text not null,
  properties jsonb default '{}',
  session_id text,
  page_url text,
  referrer text,
  created_at timestamptz not null default now(),
  primary key (id, created_at)
) partition by range (created_at);

create table public.performance_metrics (
  id uuid primary key default gen_random_uuid(),
  metric_name text not null,
  metric_type text not null check (metric_type in ('api_latency', 'db_query', 'page_load', 'ai_response')),
  value decimal not null,
  unit text not null,
  tags jsonb default '{}',
  recorded_at timestamptz default now()
);
