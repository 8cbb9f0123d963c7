-- Sign-in attempts, for brute-force limits that hold across server processes.
-- One row per attempt (email lower-cased, client ip, outcome). The limiter counts failures
-- per email since its last success and per ip within a window; old rows are pruned by the
-- application. Only the service touches this table: RLS on, no policies.

create table public.auth_attempts (
  id bigint generated always as identity primary key,
  email text not null,
  ip_address inet,
  succeeded boolean not null,
  created_at timestamptz not null default now()
);

create index idx_auth_attempts_email on public.auth_attempts(email, created_at desc);
create index idx_auth_attempts_ip on public.auth_attempts(ip_address, created_at desc);
create index idx_auth_attempts_created on public.auth_attempts(created_at);

alter table public.auth_attempts enable row level security;
