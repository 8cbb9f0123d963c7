-- A counter bumped by every change to workspace memberships, so the document hub re-reads
-- the roles of its connected editors only when one may have changed. It used to read them
-- all twice a second (a query over every connected (user, workspace) pair: about 40 ms of
-- the server's CPU per check at 5,000 sockets) to close a revoked member within a second;
-- now it reads this one row twice a second, and the roles when the counter moved (or after
-- a while regardless). Statement-level: a cascade that removes many memberships bumps it
-- once per statement.
create table public.member_roles_version (
  id boolean primary key default true check (id),
  version bigint not null default 0
);
insert into public.member_roles_version (id, version) values (true, 0);

alter table public.member_roles_version enable row level security;
create policy member_roles_version_service on public.member_roles_version
  for all to service_role using (true) with check (true);
revoke all on table public.member_roles_version from anon, authenticated;
grant all on table public.member_roles_version to service_role;

-- SECURITY DEFINER: memberships change through users' own transactions (RLS applies to
-- them), and they may not write the counter themselves.
create function public.bump_member_roles_version() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  update public.member_roles_version set version = version + 1;
  return null;
end;
$$;

revoke all on function public.bump_member_roles_version() from public;

create trigger workspace_members_roles_version
  after insert or update or delete or truncate on public.workspace_members
  for each statement execute function public.bump_member_roles_version();
