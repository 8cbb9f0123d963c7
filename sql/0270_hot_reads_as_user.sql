-- The REST hot reads (a file with its content, a page of the tree, opening a project) in one
-- statement each: the access check as the service, the switch to the user (role
-- `authenticated` and the JWT claims, transaction-local as in `Database.as_user`), then the
-- read as the user under RLS. Called outside a transaction, the statement's own transaction
-- ends with it and the pooled connection is back to the service; a check and `as_user` cost
-- four round trips (BEGIN, check and switch, read, COMMIT) for the same work.
--
-- PL/pgSQL on purpose: each statement in it is planned when it runs (and replanned when the
-- role it was planned for changes), so the read is planned as `authenticated` and its RLS
-- policies apply. A SQL-language function would be rewritten up front, as the service.
-- SECURITY INVOKER (the default) and no SET clause: the caller's role is the one switched
-- from, and the transaction-local settings must outlive the function.
--
-- Each returns the check's answer (workspace, project, the caller's role: null when not a
-- member; all null when nothing matched); the read's columns are null unless the caller
-- has a role and RLS let the row through. Service-only.

create or replace function public.read_file_as_user(p_file uuid, p_user uuid, p_claims text)
returns table (
  access_workspace_id uuid, access_project_id uuid, access_role text, logged boolean,
  id uuid, project_id uuid, path text, name text, type text, size_bytes integer,
  mime_type text, language text, parent_id uuid, storage_path text, is_deleted boolean,
  created_by uuid, updated_by uuid, created_at timestamptz, updated_at timestamptz,
  content text
)
language plpgsql
volatile
as $$
#variable_conflict use_column
declare
  v_workspace uuid;
  v_project uuid;
  v_role text;
  v_logged boolean;
begin
  select p.workspace_id, p.id, m.role,
         exists (select 1 from public.document_updates u where u.file_id = f.id)
    into v_workspace, v_project, v_role, v_logged
  from public.files f
  join public.projects p on p.id = f.project_id
  left join public.workspace_members m on m.workspace_id = p.workspace_id and m.user_id = p_user
  where f.id = p_file;
  if v_role is null then
    access_workspace_id := v_workspace;
    access_project_id := v_project;
    return next;
    return;
  end if;
  perform set_config('role', 'authenticated', true),
          set_config('request.jwt.claims', p_claims, true),
          set_config('request.jwt.claim.sub', p_user::text, true);
  return query
    select v_workspace, v_project, v_role, v_logged,
           f.id, f.project_id, f.path, f.name, f.type, f.size_bytes, f.mime_type, f.language,
           f.parent_id, f.storage_path, f.is_deleted, f.created_by, f.updated_by,
           f.created_at, f.updated_at, f.content
    from (select) one
    left join public.files f on f.id = p_file;
end
$$;

-- The access row first (file columns null), then at most p_limit files in path order
-- (the order and cursor of `persistence.files.LIST_FILES`).
create or replace function public.list_files_as_user(
  p_project uuid, p_user uuid, p_claims text, p_include_deleted boolean,
  p_after_path text, p_after_id uuid, p_limit integer
)
returns table (
  access_workspace_id uuid, access_project_id uuid, access_role text,
  id uuid, project_id uuid, path text, name text, type text, size_bytes integer,
  mime_type text, language text, parent_id uuid, storage_path text, is_deleted boolean,
  created_by uuid, updated_by uuid, created_at timestamptz, updated_at timestamptz
)
language plpgsql
volatile
as $$
#variable_conflict use_column
begin
  select p.workspace_id, p.id, m.role
    into access_workspace_id, access_project_id, access_role
  from public.projects p
  left join public.workspace_members m on m.workspace_id = p.workspace_id and m.user_id = p_user
  where p.id = p_project;
  return next;
  if access_role is null then
    return;
  end if;
  perform set_config('role', 'authenticated', true),
          set_config('request.jwt.claims', p_claims, true),
          set_config('request.jwt.claim.sub', p_user::text, true);
  return query
    select null::uuid, null::uuid, null::text,
           f.id, f.project_id, f.path, f.name, f.type, f.size_bytes, f.mime_type, f.language,
           f.parent_id, f.storage_path, f.is_deleted, f.created_by, f.updated_by,
           f.created_at, f.updated_at
    from public.files f
    where f.project_id = p_project and (p_include_deleted or not f.is_deleted)
      and (p_after_path is null or (f.path collate "C", f.id) > (p_after_path collate "C", p_after_id))
    order by f.path collate "C", f.id
    limit p_limit;
end
$$;

-- Opening a project: for a member, last_accessed_at recorded (as the service: viewers open
-- projects too), then the project read as the user, so it shows the new time.
create or replace function public.open_project_as_user(p_project uuid, p_user uuid, p_claims text)
returns table (
  access_workspace_id uuid, access_project_id uuid, access_role text,
  id uuid, workspace_id uuid, name text, slug text, description text, repository_url text,
  language text, framework text, visibility text, settings jsonb,
  last_accessed_at timestamptz, created_at timestamptz, updated_at timestamptz
)
language plpgsql
volatile
as $$
#variable_conflict use_column
declare
  v_workspace uuid;
  v_role text;
begin
  select p.workspace_id, m.role
    into v_workspace, v_role
  from public.projects p
  left join public.workspace_members m on m.workspace_id = p.workspace_id and m.user_id = p_user
  where p.id = p_project;
  if v_role is null then
    access_workspace_id := v_workspace;
    access_project_id := case when v_workspace is null then null else p_project end;
    return next;
    return;
  end if;
  update public.projects set last_accessed_at = now() where id = p_project;
  perform set_config('role', 'authenticated', true),
          set_config('request.jwt.claims', p_claims, true),
          set_config('request.jwt.claim.sub', p_user::text, true);
  return query
    select v_workspace, p_project, v_role,
           p.id, p.workspace_id, p.name, p.slug, p.description, p.repository_url,
           p.language, p.framework, p.visibility, p.settings,
           p.last_accessed_at, p.created_at, p.updated_at
    from (select) one
    left join public.projects p on p.id = p_project;
end
$$;

revoke all on function public.read_file_as_user(uuid, uuid, text) from public, anon, authenticated;
revoke all on function public.list_files_as_user(uuid, uuid, text, boolean, text, uuid, integer)
  from public, anon, authenticated;
revoke all on function public.open_project_as_user(uuid, uuid, text) from public, anon, authenticated;
grant execute on function public.read_file_as_user(uuid, uuid, text) to service_role;
grant execute on function public.list_files_as_user(uuid, uuid, text, boolean, text, uuid, integer)
  to service_role;
grant execute on function public.open_project_as_user(uuid, uuid, text) to service_role;
