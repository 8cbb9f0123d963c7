-- AI & agents module (seed as-is).

create table public.ai_jobs (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null references public.users(id) on delete cascade,
  project_id uuid references public.projects(id) on delete cascade,
  job_type text not null check (job_type in ('chat', 'refactor', 'explain', 'generate', 'analyze')),
  status text default 'pending' check (status in ('pending', 'running', 'completed', 'failed', 'canceled')),
  input jsonb not null,
  output jsonb,
  error text,
  tokens_used integer,
  model text,
  duration_ms integer,
  started_at timestamptz,
  completed_at timestamptz,
  created_at timestamptz default now()
);

create table public.code_analyses (
  id uuid primary key default gen_random_uuid(),
  project_id uuid not null references public.projects(id) on delete cascade,
  file_path text not null,
  analysis_type text not null check (analysis_type in ('explain', 'complexity', 'security', 'performance')),
  result jsonb not null,
  model text,
  created_at timestamptz default now(),
  expires_at timestamptz
);
