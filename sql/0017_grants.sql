-- Privileges: RLS decides which rows; grants decide which tables.
-- authenticated: select/insert/update/delete on every application table (not on partitions:
-- users reach partitioned rows only through the parent, whose policies apply); usage on
-- schemas public and auth; execute on auth.uid()/jwt()/role() and the RLS helpers.
-- anon: nothing on application tables (revoked explicitly: Supabase's default privileges
-- grant them to anon). service_role: everything (it bypasses RLS).
-- Tables added by later migrations must grant and write policies themselves.

grant usage on schema public to authenticated, service_role;
grant usage on schema auth to authenticated, service_role;

do $$
declare
  t regclass;
begin
  for t in
    select c.oid::regclass
    from pg_catalog.pg_class c
    where c.relnamespace = 'public'::regnamespace
      and c.relkind in ('r', 'p')
      and not c.relispartition
  loop
    execute pg_catalog.format('revoke all on table %s from anon', t);
    execute pg_catalog.format('grant all on table %s to service_role', t);
    if t <> 'public.schema_migrations'::regclass then
      execute pg_catalog.format('grant select, insert, update, delete on table %s to authenticated', t);
    end if;
  end loop;
end
$$;

revoke all on table public.schema_migrations from authenticated;

grant execute on function auth.uid() to authenticated, service_role;
grant execute on function auth.jwt() to authenticated, service_role;
grant execute on function auth.role() to authenticated, service_role;

grant execute on function public.workspace_role_rank(text) to authenticated, service_role;
grant execute on function public.workspace_role(uuid) to authenticated, service_role;
grant execute on function public.is_workspace_member(uuid, text) to authenticated, service_role;
grant execute on function public.workspace_owner(uuid) to authenticated, service_role;
grant execute on function public.project_workspace(uuid) to authenticated, service_role;
grant execute on function public.has_project_role(uuid, text) to authenticated, service_role;
grant execute on function public.file_project(uuid) to authenticated, service_role;
grant execute on function public.conversation_project(uuid) to authenticated, service_role;
grant execute on function public.customer_user(uuid) to authenticated, service_role;
grant execute on function public.shares_workspace(uuid) to authenticated, service_role;

grant execute on function public.create_monthly_partitions(regclass, int) to service_role;
grant execute on function public.drop_old_partitions(regclass, interval) to service_role;
grant execute on function public.secure_partition(regclass) to service_role;
