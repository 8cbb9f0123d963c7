-- Row-level security on every table, with policies for every table (the seed enables RLS on
-- 9 tables and shows 4 example policies, 2 of which cannot work; see 0015). The matrix is
-- documented in sql/README.md. Policies apply to `authenticated`; `anon` has no policy (and no
-- grants, 0017); `service_role` bypasses RLS and tables written only by the service carry an
-- explicit service_role policy so that every table states who may touch it.
-- Roles: owner > admin > member > viewer. Viewers read, members write content, admins manage
-- members and workspace settings, only owners grant or revoke ownership.

alter table public.schema_migrations enable row level security;
alter table public.users enable row level security;
alter table public.workspaces enable row level security;
alter table public.workspace_members enable row level security;
alter table public.projects enable row level security;
alter table public.conversations enable row level security;
alter table public.messages enable row level security;
alter table public.oauth_connections enable row level security;
alter table public.user_sessions_extended enable row level security;
alter table public.subscription_plans enable row level security;
alter table public.customers enable row level security;
alter table public.subscriptions enable row level security;
alter table public.usage_records enable row level security;
alter table public.invoices enable row level security;
alter table public.ai_jobs enable row level security;
alter table public.code_analyses enable row level security;
alter table public.files enable row level security;
alter table public.file_versions enable row level security;
alter table public.editor_sessions enable row level security;
alter table public.terminal_sessions enable row level security;
alter table public.git_repositories enable row level security;
alter table public.background_jobs enable row level security;
alter table public.code_executions enable row level security;
alter table public.api_logs enable row level security;
alter table public.error_logs enable row level security;
alter table public.analytics_events enable row level security;
alter table public.performance_metrics enable row level security;
alter table public.api_integrations enable row level security;
alter table public.webhook_logs enable row level security;
alter table public.deployments enable row level security;
alter table public.environment_variables enable row level security;

-- Service-only tables.
create policy schema_migrations_service on public.schema_migrations
  for all to service_role using (true) with check (true);
create policy background_jobs_service on public.background_jobs
  for all to service_role using (true) with check (true);
create policy performance_metrics_service on public.performance_metrics
  for all to service_role using (true) with check (true);
create policy webhook_logs_service on public.webhook_logs
  for all to service_role using (true) with check (true);

-- users: yourself and the people you share a workspace with (collaborators' names);
-- update yourself; profiles are created and deleted through auth.users.
create policy users_select on public.users for select to authenticated
  using (id = (select auth.uid()) or public.shares_workspace(id));
create policy users_update_self on public.users for update to authenticated
  using (id = (select auth.uid())) with check (id = (select auth.uid()));

-- workspaces: members read; anyone creates one they own; admins update; the owner deletes.
create policy workspaces_select on public.workspaces for select to authenticated
  using (owner_id = (select auth.uid()) or public.is_workspace_member(id, 'viewer'));
create policy workspaces_insert_own on public.workspaces for insert to authenticated
  with check (owner_id = (select auth.uid()));
create policy workspaces_update_admin on public.workspaces for update to authenticated
  using (public.is_workspace_member(id, 'admin'))
  with check (public.is_workspace_member(id, 'admin'));
create policy workspaces_delete_owner on public.workspaces for delete to authenticated
  using (public.is_workspace_member(id, 'owner'));

-- workspace_members: members see the member list; admins add, change and remove members
-- (only an owner touches 'owner' rows); the workspace's owner adds their own 'owner' row
-- right after creating it; anyone but an owner may leave.
create policy workspace_members_select on public.workspace_members for select to authenticated
  using (user_id = (select auth.uid()) or public.is_workspace_member(workspace_id, 'viewer'));
create policy workspace_members_insert on public.workspace_members for insert to authenticated
  with check (
    (public.is_workspace_member(workspace_id, 'admin')
      and (role <> 'owner' or public.is_workspace_member(workspace_id, 'owner')))
    or (user_id = (select auth.uid()) and role = 'owner'
        and public.workspace_owner(workspace_id) = (select auth.uid()))
  );
create policy workspace_members_update on public.workspace_members for update to authenticated
  using (public.is_workspace_member(workspace_id, 'admin')
         and (role <> 'owner' or public.is_workspace_member(workspace_id, 'owner')))
  with check (public.is_workspace_member(workspace_id, 'admin')
              and (role <> 'owner' or public.is_workspace_member(workspace_id, 'owner')));
create policy workspace_members_delete on public.workspace_members for delete to authenticated
  using (
    (user_id = (select auth.uid()) and role <> 'owner')
    or (public.is_workspace_member(workspace_id, 'admin')
        and (role <> 'owner' or public.is_workspace_member(workspace_id, 'owner')))
  );

-- projects: viewers read, members create and edit, admins delete.
create policy projects_select on public.projects for select to authenticated
  using (public.is_workspace_member(workspace_id, 'viewer'));
create policy projects_insert on public.projects for insert to authenticated
  with check (public.is_workspace_member(workspace_id, 'member'));
create policy projects_update on public.projects for update to authenticated
  using (public.is_workspace_member(workspace_id, 'member'))
  with check (public.is_workspace_member(workspace_id, 'member'));
create policy projects_delete on public.projects for delete to authenticated
  using (public.is_workspace_member(workspace_id, 'admin'));

-- conversations: shared AI threads of a project; viewers read, members write their own,
-- the author or an admin deletes.
create policy conversations_select on public.conversations for select to authenticated
  using (public.has_project_role(project_id, 'viewer'));
create policy conversations_insert on public.conversations for insert to authenticated
  with check (user_id = (select auth.uid()) and public.has_project_role(project_id, 'member'));
create policy conversations_update on public.conversations for update to authenticated
  using (public.has_project_role(project_id, 'member'))
  with check (public.has_project_role(project_id, 'member'));
create policy conversations_delete on public.conversations for delete to authenticated
  using ((user_id = (select auth.uid()) and public.has_project_role(project_id, 'member'))
         or public.has_project_role(project_id, 'admin'));

-- messages: follow their conversation's project.
create policy messages_select on public.messages for select to authenticated
  using (public.has_project_role(public.conversation_project(conversation_id), 'viewer'));
create policy messages_insert on public.messages for insert to authenticated
  with check (public.has_project_role(public.conversation_project(conversation_id), 'member'));
create policy messages_update on public.messages for update to authenticated
  using (public.has_project_role(public.conversation_project(conversation_id), 'member'))
  with check (public.has_project_role(public.conversation_project(conversation_id), 'member'));
create policy messages_delete on public.messages for delete to authenticated
  using (public.has_project_role(public.conversation_project(conversation_id), 'member'));

-- oauth_connections (secrets, personal): only the user.
create policy oauth_connections_own on public.oauth_connections for all to authenticated
  using (user_id = (select auth.uid())) with check (user_id = (select auth.uid()));

-- user_sessions_extended: the service records sessions; users list and end their own.
create policy user_sessions_extended_select_own on public.user_sessions_extended
  for select to authenticated using (user_id = (select auth.uid()));
create policy user_sessions_extended_delete_own on public.user_sessions_extended
  for delete to authenticated using (user_id = (select auth.uid()));

-- Billing: plans are readable by every signed-in user; customers, subscriptions, invoices
-- and usage are read-own; all billing writes are made by the service (Stripe webhooks).
create policy subscription_plans_select on public.subscription_plans
  for select to authenticated using (true);
create policy customers_select_own on public.customers
  for select to authenticated using (user_id = (select auth.uid()));
create policy subscriptions_select_own on public.subscriptions
  for select to authenticated using (public.customer_user(customer_id) = (select auth.uid()));
create policy invoices_select_own on public.invoices
  for select to authenticated using (public.customer_user(customer_id) = (select auth.uid()));
create policy usage_records_select_own on public.usage_records
  for select to authenticated using (user_id = (select auth.uid()));

-- ai_jobs, code_executions: personal rows, optionally tied to a project the user may write.
create policy ai_jobs_select_own on public.ai_jobs for select to authenticated
  using (user_id = (select auth.uid()));
create policy ai_jobs_insert_own on public.ai_jobs for insert to authenticated
  with check (user_id = (select auth.uid())
              and (project_id is null or public.has_project_role(project_id, 'member')));
create policy ai_jobs_update_own on public.ai_jobs for update to authenticated
  using (user_id = (select auth.uid()))
  with check (user_id = (select auth.uid())
              and (project_id is null or public.has_project_role(project_id, 'member')));
create policy ai_jobs_delete_own on public.ai_jobs for delete to authenticated
  using (user_id = (select auth.uid()));

create policy code_executions_select_own on public.code_executions for select to authenticated
  using (user_id = (select auth.uid()));
create policy code_executions_insert_own on public.code_executions for insert to authenticated
  with check (user_id = (select auth.uid())
              and (project_id is null or public.has_project_role(project_id, 'member')));
create policy code_executions_update_own on public.code_executions for update to authenticated
  using (user_id = (select auth.uid()))
  with check (user_id = (select auth.uid())
              and (project_id is null or public.has_project_role(project_id, 'member')));
create policy code_executions_delete_own on public.code_executions for delete to authenticated
  using (user_id = (select auth.uid()));

-- Project content: viewers read, members write.
create policy code_analyses_select on public.code_analyses for select to authenticated
  using (public.has_project_role(project_id, 'viewer'));
create policy code_analyses_write on public.code_analyses for insert to authenticated
  with check (public.has_project_role(project_id, 'member'));
create policy code_analyses_update on public.code_analyses for update to authenticated
  using (public.has_project_role(project_id, 'member'))
  with check (public.has_project_role(project_id, 'member'));
create policy code_analyses_delete on public.code_analyses for delete to authenticated
  using (public.has_project_role(project_id, 'member'));

create policy files_select on public.files for select to authenticated
  using (public.has_project_role(project_id, 'viewer'));
create policy files_insert on public.files for insert to authenticated
  with check (public.has_project_role(project_id, 'member'));
create policy files_update on public.files for update to authenticated
  using (public.has_project_role(project_id, 'member'))
  with check (public.has_project_role(project_id, 'member'));
create policy files_delete on public.files for delete to authenticated
  using (public.has_project_role(project_id, 'member'));

create policy file_versions_select on public.file_versions for select to authenticated
  using (public.has_project_role(public.file_project(file_id), 'viewer'));
create policy file_versions_insert on public.file_versions for insert to authenticated
  with check (public.has_project_role(public.file_project(file_id), 'member'));
create policy file_versions_update on public.file_versions for update to authenticated
  using (public.has_project_role(public.file_project(file_id), 'member'))
  with check (public.has_project_role(public.file_project(file_id), 'member'));
create policy file_versions_delete on public.file_versions for delete to authenticated
  using (public.has_project_role(public.file_project(file_id), 'member'));

create policy git_repositories_select on public.git_repositories for select to authenticated
  using (public.has_project_role(project_id, 'viewer'));
create policy git_repositories_insert on public.git_repositories for insert to authenticated
  with check (public.has_project_role(project_id, 'member'));
create policy git_repositories_update on public.git_repositories for update to authenticated
  using (public.has_project_role(project_id, 'member'))
  with check (public.has_project_role(project_id, 'member'));
create policy git_repositories_delete on public.git_repositories for delete to authenticated
  using (public.has_project_role(project_id, 'member'));

create policy deployments_select on public.deployments for select to authenticated
  using (public.has_project_role(project_id, 'viewer'));
create policy deployments_insert on public.deployments for insert to authenticated
  with check (public.has_project_role(project_id, 'member'));
create policy deployments_update on public.deployments for update to authenticated
  using (public.has_project_role(project_id, 'member'))
  with check (public.has_project_role(project_id, 'member'));
create policy deployments_delete on public.deployments for delete to authenticated
  using (public.has_project_role(project_id, 'member'));

-- editor_sessions: a user's own editor state in projects they can see (viewers too: it is
-- their layout, not project content).
create policy editor_sessions_own on public.editor_sessions for all to authenticated
  using (user_id = (select auth.uid()))
  with check (user_id = (select auth.uid()) and public.has_project_role(project_id, 'viewer'));

-- terminal_sessions: a user's own command history; running commands needs member.
create policy terminal_sessions_select_own on public.terminal_sessions for select to authenticated
  using (user_id = (select auth.uid()));
create policy terminal_sessions_insert_own on public.terminal_sessions for insert to authenticated
  with check (user_id = (select auth.uid()) and public.has_project_role(project_id, 'member'));
create policy terminal_sessions_update_own on public.terminal_sessions for update to authenticated
  using (user_id = (select auth.uid()))
  with check (user_id = (select auth.uid()) and public.has_project_role(project_id, 'member'));
create policy terminal_sessions_delete_own on public.terminal_sessions for delete to authenticated
  using (user_id = (select auth.uid()));

-- Log tables: users may only append rows about themselves (in scopes they belong to).
create policy api_logs_insert_own on public.api_logs for insert to authenticated
  with check (user_id = (select auth.uid()));
create policy analytics_events_insert_own on public.analytics_events for insert to authenticated
  with check (user_id = (select auth.uid())
              and (workspace_id is null or public.is_workspace_member(workspace_id, 'viewer')));
create policy error_logs_insert_own on public.error_logs for insert to authenticated
  with check (user_id = (select auth.uid())
              and (project_id is null or public.has_project_role(project_id, 'viewer')));

-- Secrets: api_integrations readable and writable by their user; workspace admins read and
-- manage the workspace's integrations.
create policy api_integrations_select on public.api_integrations for select to authenticated
  using (user_id = (select auth.uid())
         or (workspace_id is not null and public.is_workspace_member(workspace_id, 'admin')));
create policy api_integrations_insert on public.api_integrations for insert to authenticated
  with check (user_id = (select auth.uid())
              and (workspace_id is null or public.is_workspace_member(workspace_id, 'member')));
create policy api_integrations_update on public.api_integrations for update to authenticated
  using (user_id = (select auth.uid())
         or (workspace_id is not null and public.is_workspace_member(workspace_id, 'admin')))
  with check ((user_id = (select auth.uid())
               and (workspace_id is null or public.is_workspace_member(workspace_id, 'member')))
              or (workspace_id is not null and public.is_workspace_member(workspace_id, 'admin')));
create policy api_integrations_delete on public.api_integrations for delete to authenticated
  using (user_id = (select auth.uid())
         or (workspace_id is not null and public.is_workspace_member(workspace_id, 'admin')));

-- Secrets: environment_variables readable by their creator (while still a member) and by
-- workspace admins; members create their own; the creator or an admin changes and deletes.
create policy environment_variables_select on public.environment_variables
  for select to authenticated
  using ((created_by = (select auth.uid()) and public.has_project_role(project_id, 'member'))
         or public.has_project_role(project_id, 'admin'));
create policy environment_variables_insert on public.environment_variables
  for insert to authenticated
  with check (created_by = (select auth.uid()) and public.has_project_role(project_id, 'member'));
create policy environment_variables_update on public.environment_variables
  for update to authenticated
  using ((created_by = (select auth.uid()) and public.has_project_role(project_id, 'member'))
         or public.has_project_role(project_id, 'admin'))
  with check ((created_by = (select auth.uid()) and public.has_project_role(project_id, 'member'))
              or public.has_project_role(project_id, 'admin'));
create policy environment_variables_delete on public.environment_variables
  for delete to authenticated
  using ((created_by = (select auth.uid()) and public.has_project_role(project_id, 'member'))
         or public.has_project_role(project_id, 'admin'));
