-- Authentication module: OAuth connections and extended sessions (seed as-is).

create table public.oauth_connections (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null references public.users(id) on delete cascade,
  provider text not null check (provider in ('github', 'google', 'gitlab', 'bitbucket')),
  provider_user_id text not null,
  access_token text,
  refresh_token text,
  token_expires_at timestamptz,
  scopes text[],
  metadata jsonb default '{}',
  created_at timestamptz default now(),
  updated_at timestamptz default now(),
  unique (user_id, provider)
);

create table public.user_sessions_extended (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null references public.users(id) on delete cascade,
  ip_address inet,
  user_agent text,
  device_type text,
  browser text,
  os text,
  country text,
  last_activity_at timestamptz default now(),
  created_at timestamptz default now()
);
