-- External APIs module.
-- Deliberate fix: the seed's unique (user_id, workspace_id, provider) lets a user store any
-- number of personal (workspace_id null) keys for one provider, because nulls are distinct;
-- `nulls not distinct` (PostgreSQL 15+) makes a personal key unique per provider too.

create table public.api_integrations (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null references public.users(id) on delete cascade,
  workspace_id uuid references public.workspaces(id) on delete cascade,
  provider text not null check (provider in ('github', 'firecrawl', 'openai', 'anthropic', 'vercel')),
  api_key_encrypted text,
  config jsonb default '{}',
  is_active boolean default true,
  last_used_at timestamptz,
  created_at timestamptz default now(),
  updated_at timestamptz default now(),
  unique nulls not distinct (user_id, workspace_id, provider)
);

create table public.webhook_logs (
  id uuid primary key default gen_random_uuid(),
  provider text not null,
  event_type text not null,
  payload jsonb not null,
  signature text,
  status text default 'received' check (status in ('received', 'processing', 'processed', 'failed')),
  response jsonb,
  error text,
  processed_at timestamptz,
  created_at timestamptz default now()
);
