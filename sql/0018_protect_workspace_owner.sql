-- The workspace's owner (workspaces.owner_id) always keeps an 'owner' membership:
-- 0016 let any owner (including the workspace's own owner) delete or demote 'owner' rows,
-- so the owner could leave, or a co-owner could remove them, and strand the workspace.
-- Now 'owner' rows can be changed or removed only by an owner, and never the row of the
-- workspace's owner_id (transfer ownership by changing workspaces.owner_id first).

-- True when the caller may change the membership row (ws, member, role) as a manager.
create or replace function public.can_manage_membership(ws uuid, member uuid, member_role text)
returns boolean
language sql
stable
security definer
set search_path = ''
as $$
  select public.is_workspace_member(ws, 'admin')
     and (member_role <> 'owner'
          or (public.is_workspace_member(ws, 'owner') and member <> public.workspace_owner(ws)))
$$;

revoke all on function public.can_manage_membership(uuid, uuid, text) from public;
grant execute on function public.can_manage_membership(uuid, uuid, text)
  to authenticated, service_role;

drop policy workspace_members_update on public.workspace_members;
create policy workspace_members_update on public.workspace_members for update to authenticated
  using (public.can_manage_membership(workspace_id, user_id, role))
  with check (public.is_workspace_member(workspace_id, 'admin')
              and (role <> 'owner' or public.is_workspace_member(workspace_id, 'owner')));

drop policy workspace_members_delete on public.workspace_members;
create policy workspace_members_delete on public.workspace_members for delete to authenticated
  using (
    (user_id = (select auth.uid())
      and (role <> 'owner' or user_id <> public.workspace_owner(workspace_id)))
    or public.can_manage_membership(workspace_id, user_id, role)
  );
