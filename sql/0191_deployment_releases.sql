-- Promote / roll back: which successful deployment an environment serves. One row per
-- change (the newest row of a project and environment is current), so the previous
-- release is kept and a rollback is a new row pointing back at it.
create table if not exists public.deployment_releases (
  id uuid primary key default gen_random_uuid(),
  project_id uuid not null references public.projects(id) on delete cascade,
  environment text not null
    check (environment in ('development', 'staging', 'production')),
  deployment_id uuid not null references public.deployments(id) on delete cascade,
  previous_deployment_id uuid references public.deployments(id) on delete set null,
  action text not null check (action in ('deploy', 'promote', 'rollback')),
  released_by uuid references public.users(id) on delete set null,
  created_at timestamptz not null default now()
);

create index if not exists deployment_releases_current
  on public.deployment_releases (project_id, environment, created_at desc);

alter table public.deployment_releases enable row level security;
drop policy if exists deployment_releases_select on public.deployment_releases;
create policy deployment_releases_select on public.deployment_releases for select
  to authenticated using (project_id in (select public.my_project_ids('viewer')));
drop policy if exists deployment_releases_insert on public.deployment_releases;
create policy deployment_releases_insert on public.deployment_releases for insert
  to authenticated with check (project_id in (select public.my_project_ids('admin')));
drop policy if exists deployment_releases_service on public.deployment_releases;
create policy deployment_releases_service on public.deployment_releases
  for all to service_role using (true) with check (true);
revoke all on table public.deployment_releases from anon;
grant select, insert on table public.deployment_releases to authenticated;
grant all on table public.deployment_releases to service_role;
