-- Which node runs the PTY of a shared terminal, so a socket that lands on any node of a
-- cluster finds the one shell (execution/terminal_relay.py). The owner renews its lease
-- every second or so; a lease that ran out is a dead node's, and the next attach takes the
-- terminal over (a new shell). Service-only: RLS on, one policy for the service.
create table if not exists public.terminal_owners (
  project_id uuid not null references public.projects(id) on delete cascade,
  name text not null,
  node_id text not null,
  lease_until timestamptz not null,
  primary key (project_id, name)
);
create index if not exists terminal_owners_node_idx on public.terminal_owners (node_id);

alter table public.terminal_owners enable row level security;
drop policy if exists terminal_owners_service on public.terminal_owners;
create policy terminal_owners_service on public.terminal_owners
  for all to service_role using (true) with check (true);
revoke all on table public.terminal_owners from anon, authenticated;
grant all on table public.terminal_owners to service_role;
