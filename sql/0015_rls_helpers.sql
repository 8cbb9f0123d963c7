-- Membership lookups used by every RLS policy.
-- Fix of the seed's example policies: a policy subquery on workspace_members runs under
-- workspace_members' own RLS, so it sees nothing and nobody can read or create a project.
-- These functions are SECURITY DEFINER (they read the membership tables as their owner,
-- bypassing RLS) with `set search_path = ''` and schema-qualified names, so a caller cannot
-- redirect them to objects of their own. All take the caller from auth.uid().

-- The rank of a workspace role: viewer 0 < member 1 < admin 2 < owner 3; null if unknown.
create or replace function public.workspace_role_rank(role text)
returns int
language sql
immutable
set search_path = ''
as $$
  select case role when 'viewer' then 0 when 'member' then 1 when 'admin' then 2 when 'owner' then 3 end
$$;

-- The caller's role in workspace `ws`, or null when not a member.
create or replace function public.workspace_role(ws uuid)
returns text
language sql
stable
security definer
set search_path = ''
as $$
  select m.role from public.workspace_members m
  where m.workspace_id = ws and m.user_id = auth.uid()
$$;

-- True when the caller belongs to workspace `ws` with at least `min_role`.
create or replace function public.is_workspace_member(ws uuid, min_role text default 'viewer')
returns boolean
language sql
stable
security definer
set search_path = ''
as $$
  select coalesce(
    (select public.workspace_role_rank(m.role) >= public.workspace_role_rank(min_role)
     from public.workspace_members m
     where m.workspace_id = ws and m.user_id = auth.uid()),
    false)
$$;

-- The owner_id of workspace `ws`.
create or replace function public.workspace_owner(ws uuid)
returns uuid
language sql
stable
security definer
set search_path = ''
as $$
  select w.owner_id from public.workspaces w where w.id = ws
$$;

-- The workspace of project `project`.
create or replace function public.project_workspace(project uuid)
returns uuid
language sql
stable
security definer
set search_path = ''
as $$
  select p.workspace_id from public.projects p where p.id = project
$$;

-- True when the caller belongs to the workspace of project `project` with at least `min_role`.
create or replace function public.has_project_role(project uuid, min_role text default 'viewer')
returns boolean
language sql
stable
security definer
set search_path = ''
as $$
  select public.is_workspace_member(public.project_workspace(project), min_role)
$$;

-- The project of file `file`.
create or replace function public.file_project(file uuid)
returns uuid
language sql
stable
security definer
set search_path = ''
as $$
  select f.project_id from public.files f where f.id = file
$$;

-- The project of conversation `conversation`.
create or replace function public.conversation_project(conversation uuid)
returns uuid
language sql
stable
security definer
set search_path = ''
as $$
  select c.project_id from public.conversations c where c.id = conversation
$$;

-- The user of billing customer `customer`.
create or replace function public.customer_user(customer uuid)
returns uuid
language sql
stable
security definer
set search_path = ''
as $$
  select c.user_id from public.customers c where c.id = customer
$$;

-- True when the caller and user `other` are members of at least one common workspace.
create or replace function public.shares_workspace(other uuid)
returns boolean
language sql
stable
security definer
set search_path = ''
as $$
  select exists (
    select 1
    from public.workspace_members mine
    join public.workspace_members theirs on theirs.workspace_id = mine.workspace_id
    where mine.user_id = auth.uid() and theirs.user_id = other
  )
$$;

revoke all on function public.workspace_role_rank(text) from public;
revoke all on function public.workspace_role(uuid) from public;
revoke all on function public.is_workspace_member(uuid, text) from public;
revoke all on function public.workspace_owner(uuid) from public;
revoke all on function public.project_workspace(uuid) from public;
revoke all on function public.has_project_role(uuid, text) from public;
revoke all on function public.file_project(uuid) from public;
revoke all on function public.conversation_project(uuid) from public;
revoke all on function public.customer_user(uuid) from public;
revoke all on function public.shares_workspace(uuid) from public;
