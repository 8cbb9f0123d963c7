-- Deployment module (seed as-is).

create table public.deployments (
  id uuid primary key default gen_random_uuid(),
  project_id uuid not null references public.projects(id) on delete cascade,
  environment text not null check (environment in ('development', 'staging', 'production')),
  status text not null check (status in ('pending', 'building', 'deploying', 'success', 'failed', 'canceled')),
  commit_sha text,
  branch text,
  deploy_url text,
  logs text,
  build_time_ms integer,
  deployed_by uuid references public.users(id),
  deployed_at timestamptz,
  created_at timestamptz default now()
);

create table public.environment_variables (
  id uuid primary key default gen_random_uuid(),
  project_id uuid not null references public.projects(id) on delete cascade,
  key text not null,
  value_encrypted text not null,
  environment text not null check (environment in ('development', 'staging', 'production', 'all')),
  is_secret boolean default true,
  created_by uuid references public.users(id),
  created_at timestamptz default now(),
  updated_at timestamptz default now(),
  unique (project_id, key, environment)
);
