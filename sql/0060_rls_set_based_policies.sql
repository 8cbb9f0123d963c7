-- Set-based RLS checks. The policies of 0016 call per-row membership functions
-- (has_project_role(project_id) ...), which PostgreSQL cannot inline (SECURITY DEFINER,
-- fixed search_path): listing 2,000 files as a user took ~900 ms against 1.5 ms as the
-- service. Here each policy compares the row's key with the set of workspaces/projects the
-- caller may use, computed once per statement (`x in (select public.my_project_ids(...))`
-- becomes one hashed subplan). Same rules as 0016/0019; only the form changes.

-- Ids of the workspaces where the caller's role is at least `min_role`.
create or replace function public.my_workspace_ids(min_role text default 'viewer')
returns setof uuid
language sql
stable
security definer
set search_path = ''
as $$
  select m.workspace_id from public.workspace_members m
  where m.user_id = auth.uid()
    and public.workspace_role_rank(m.role) >= public.workspace_role_rank(min_role)
$$;

-- Ids of the projects in workspaces where the caller's role is at least `min_role`.
create or replace function public.my_project_ids(min_role text default 'viewer')
returns setof uuid
language sql
stable
security definer
set search_path = ''
as $$
  select p.id from public.projects p
  join public.workspace_members m on m.workspace_id = p.workspace_id
  where m.user_id = auth.uid()
    and public.workspace_role_rank(m.role) >= public.workspace_role_rank(min_role)
$$;

-- Ids of the users who share at least one workspace with the caller (the caller included).
create or replace function public.my_collaborator_ids()
returns setof uuid
language sql
stable
security definer
set search_path = ''
as $$
  select distinct theirs.user_id
  from public.workspace_members mine
  join public.workspace_members theirs on theirs.workspace_id = mine.workspace_id
  where mine.user_id = auth.uid()
$$;

revoke all on function public.my_workspace_ids(text) from public;
revoke all on function public.my_project_ids(text) from public;
revoke all on function public.my_collaborator_ids() from public;
grant execute on function public.my_workspace_ids(text) to authenticated, service_role;
grant execute on function public.my_project_ids(text) to authenticated, service_role;
grant execute on function public.my_collaborator_ids() to authenticated, service_role;

-- users
alter policy users_select on public.users
  using (id = (select auth.uid()) or id in (select public.my_collaborator_ids()));

-- workspaces
alter policy workspaces_select on public.workspaces
  using (owner_id = (select auth.uid()) or id in (select public.my_workspace_ids('viewer')));
alter policy workspaces_update_admin on public.workspaces
  using (id in (select public.my_workspace_ids('admin')))
  with check (id in (select public.my_workspace_ids('admin')));
alter policy workspaces_delete_owner on public.workspaces
  using (id in (select public.my_workspace_ids('owner')));

-- workspace_members (insert/update/delete keep their per-row rules: they touch single rows)
alter policy workspace_members_select on public.workspace_members
  using (user_id = (select auth.uid())
         or workspace_id in (select public.my_workspace_ids('viewer')));

-- projects
alter policy projects_select on public.projects
  using (workspace_id in (select public.my_workspace_ids('viewer')));
alter policy projects_insert on public.projects
  with check (workspace_id in (select public.my_workspace_ids('member')));
alter policy projects_update on public.projects
  using (workspace_id in (select public.my_workspace_ids('member')))
  with check (workspace_id in (select public.my_workspace_ids('member')));
alter policy projects_delete on public.projects
  using (workspace_id in (select public.my_workspace_ids('admin')));

-- conversations
alter policy conversations_select on public.conversations
  using (project_id in (select public.my_project_ids('viewer')));
alter policy conversations_insert on public.conversations
  with check (user_id = (select auth.uid())
              and project_id in (select public.my_project_ids('member')));
alter policy conversations_update on public.conversations
  using (project_id in (select public.my_project_ids('member')))
  with check (project_id in (select public.my_project_ids('member')));
alter policy conversations_delete on public.conversations
  using ((user_id = (select auth.uid()) and project_id in (select public.my_project_ids('member')))
         or project_id in (select public.my_project_ids('admin')));

-- messages: through their conversation (an index lookup per row, the project set once)
alter policy messages_select on public.messages
  using (exists (select 1 from public.conversations c where c.id = conversation_id
                 and c.project_id in (select public.my_project_ids('viewer'))));
alter policy messages_insert on public.messages
  with check (exists (select 1 from public.conversations c where c.id = conversation_id
                      and c.project_id in (select public.my_project_ids('member'))));
alter policy messages_update on public.messages
  using (exists (select 1 from public.conversations c where c.id = conversation_id
                 and c.project_id in (select public.my_project_ids('member'))))
  with check (exists (select 1 from public.conversations c where c.id = conversation_id
                      and c.project_id in (select public.my_project_ids('member'))));
alter policy messages_delete on public.messages
  using (exists (select 1 from public.conversations c where c.id = conversation_id
                 and c.project_id in (select public.my_project_ids('member'))));

-- project content
alter policy code_analyses_select on public.code_analyses
  using (project_id in (select public.my_project_ids('viewer')));
alter policy code_analyses_write on public.code_analyses
  with check (project_id in (select public.my_project_ids('member')));
alter policy code_analyses_update on public.code_analyses
  using (project_id in (select public.my_project_ids('member')))
  with check (project_id in (select public.my_project_ids('member')));
alter policy code_analyses_delete on public.code_analyses
  using (project_id in (select public.my_project_ids('member')));

alter policy files_select on public.files
  using (project_id in (select public.my_project_ids('viewer')));
alter policy files_insert on public.files
  with check (project_id in (select public.my_project_ids('member')));
alter policy files_update on public.files
  using (project_id in (select public.my_project_ids('member')))
  with check (project_id in (select public.my_project_ids('member')));
alter policy files_delete on public.files
  using (project_id in (select public.my_project_ids('member')));

alter policy file_versions_select on public.file_versions
  using (exists (select 1 from public.files f where f.id = file_id
                 and f.project_id in (select public.my_project_ids('viewer'))));
alter policy file_versions_insert on public.file_versions
  with check (exists (select 1 from public.files f where f.id = file_id
                      and f.project_id in (select public.my_project_ids('member'))));
alter policy file_versions_update on public.file_versions
  using (exists (select 1 from public.files f where f.id = file_id
                 and f.project_id in (select public.my_project_ids('member'))))
  with check (exists (select 1 from public.files f where f.id = file_id
                      and f.project_id in (select public.my_project_ids('member'))));
alter policy file_versions_delete on public.file_versions
  using (exists (select 1 from public.files f where f.id = file_id
                 and f.project_id in (select public.my_project_ids('member'))));

alter policy git_repositories_select on public.git_repositories
  using (project_id in (select public.my_project_ids('viewer')));
alter policy git_repositories_insert on public.git_repositories
  with check (project_id in (select public.my_project_ids('member')));
alter policy git_repositories_update on public.git_repositories
  using (project_id in (select public.my_project_ids('member')))
  with check (project_id in (select public.my_project_ids('member')));
alter policy git_repositories_delete on public.git_repositories
  using (project_id in (select public.my_project_ids('member')));

alter policy deployments_select on public.deployments
  using (project_id in (select public.my_project_ids('viewer')));
alter policy deployments_insert on public.deployments
  with check (project_id in (select public.my_project_ids('member')));
alter policy deployments_update on public.deployments
  using (project_id in (select public.my_project_ids('member')))
  with check (project_id in (select public.my_project_ids('member')));
alter policy deployments_delete on public.deployments
  using (project_id in (select public.my_project_ids('member')));

-- personal rows tied to a project
alter policy editor_sessions_own on public.editor_sessions
  with check (user_id = (select auth.uid())
              and project_id in (select public.my_project_ids('viewer')));
alter policy terminal_sessions_insert_own on public.terminal_sessions
  with check (user_id = (select auth.uid())
              and project_id in (select public.my_project_ids('member')));
alter policy terminal_sessions_update_own on public.terminal_sessions
  with check (user_id = (select auth.uid())
              and project_id in (select public.my_project_ids('member')));
alter policy ai_jobs_insert_own on public.ai_jobs
  with check (user_id = (select auth.uid())
              and (project_id is null or project_id in (select public.my_project_ids('member'))));
alter policy ai_jobs_update_own on public.ai_jobs
  with check (user_id = (select auth.uid())
              and (project_id is null or project_id in (select public.my_project_ids('member'))));
alter policy code_executions_insert_own on public.code_executions
  with check (user_id = (select auth.uid())
              and (project_id is null or project_id in (select public.my_project_ids('member'))));
alter policy code_executions_update_own on public.code_executions
  with check (user_id = (select auth.uid())
              and (project_id is null or project_id in (select public.my_project_ids('member'))));

-- billing: through the caller's customer row
alter policy subscriptions_select_own on public.subscriptions
  using (exists (select 1 from public.customers c
                 where c.id = customer_id and c.user_id = (select auth.uid())));
alter policy invoices_select_own on public.invoices
  using (exists (select 1 from public.customers c
                 where c.id = customer_id and c.user_id = (select auth.uid())));

-- logs
alter policy analytics_events_insert_own on public.analytics_events
  with check (user_id = (select auth.uid())
              and (workspace_id is null
                   or workspace_id in (select public.my_workspace_ids('viewer'))));
alter policy error_logs_insert_own on public.error_logs
  with check (user_id = (select auth.uid())
              and (project_id is null or project_id in (select public.my_project_ids('viewer'))));

-- secrets
alter policy api_integrations_select on public.api_integrations
  using (user_id = (select auth.uid())
         or workspace_id in (select public.my_workspace_ids('admin')));
alter policy api_integrations_insert on public.api_integrations
  with check (user_id = (select auth.uid())
              and (workspace_id is null
                   or workspace_id in (select public.my_workspace_ids('member'))));
alter policy api_integrations_update on public.api_integrations
  using (user_id = (select auth.uid())
         or workspace_id in (select public.my_workspace_ids('admin')))
  with check ((user_id = (select auth.uid())
               and (workspace_id is null
                    or workspace_id in (select public.my_workspace_ids('member'))))
              or workspace_id in (select public.my_workspace_ids('admin')));
alter policy api_integrations_delete on public.api_integrations
  using (user_id = (select auth.uid())
         or workspace_id in (select public.my_workspace_ids('admin')));

alter policy environment_variables_select on public.environment_variables
  using ((created_by = (select auth.uid())
          and project_id in (select public.my_project_ids('member')))
         or project_id in (select public.my_project_ids('admin')));
alter policy environment_variables_insert on public.environment_variables
  with check (created_by = (select auth.uid())
              and project_id in (select public.my_project_ids('member')));
alter policy environment_variables_update on public.environment_variables
  using ((created_by = (select auth.uid())
          and project_id in (select public.my_project_ids('member')))
         or project_id in (select public.my_project_ids('admin')))
  with check ((created_by = (select auth.uid())
               and project_id in (select public.my_project_ids('member')))
              or project_id in (select public.my_project_ids('admin')));
alter policy environment_variables_delete on public.environment_variables
  using ((created_by = (select auth.uid())
          and project_id in (select public.my_project_ids('member')))
         or project_id in (select public.my_project_ids('admin')));
