-- Replaces 0018's rule. 0018 pinned the membership of workspaces.owner_id, but ownership is
-- shared: any owner may hand over (promote someone to owner) and then leave, and the REST
-- API locks the owner rows (`select ... for update`, which needs the UPDATE policy to pass)
-- to enforce "a workspace keeps at least one owner". The database now enforces exactly
-- that rule: an 'owner' row may be demoted or deleted only while another owner remains.
-- Only owners change 'owner' rows; admins manage the other roles; anyone may leave.

-- True when the caller may change the membership row (ws, member, role) as a manager.
create or replace function public.can_manage_membership(ws uuid, member uuid, member_role text)
returns boolean
language sql
stable
security definer
set search_path = ''
as $$
  select public.is_workspace_member(ws, 'admin')
     and (member_role <> 'owner' or public.is_workspace_member(ws, 'owner'))
$$;

-- True when workspace `ws` has an owner other than user `member`.
create or replace function public.other_owner_exists(ws uuid, member uuid)
returns boolean
language sql
stable
security definer
set search_path = ''
as $$
  select exists (
    select 1 from public.workspace_members m
    where m.workspace_id = ws and m.role = 'owner' and m.user_id <> member
  )
$$;

revoke all on function public.other_owner_exists(uuid, uuid) from public;
grant execute on function public.other_owner_exists(uuid, uuid) to authenticated, service_role;

drop policy workspace_members_update on public.workspace_members;
create policy workspace_members_update on public.workspace_members for update to authenticated
  using (public.can_manage_membership(workspace_id, user_id, role))
  with check (public.is_workspace_member(workspace_id, 'admin')
              and (role <> 'owner' or public.is_workspace_member(workspace_id, 'owner'))
              and (role = 'owner' or public.other_owner_exists(workspace_id, user_id)));

drop policy workspace_members_delete on public.workspace_members;
create policy workspace_members_delete on public.workspace_members for delete to authenticated
  using (
    (user_id = (select auth.uid()) or public.can_manage_membership(workspace_id, user_id, role))
    and (role <> 'owner' or public.other_owner_exists(workspace_id, user_id))
  );
