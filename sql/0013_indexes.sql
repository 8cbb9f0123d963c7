-- The seed's indexes, minus exact duplicates.
-- Deliberately not created (each duplicates a UNIQUE constraint's index or another index;
-- a btree is scanned in either direction, so `x desc` duplicates `x`):
--   idx_workspaces_slug            = unique (slug)
--   idx_projects_slug              = unique (workspace_id, slug)
--   idx_customers_user             = unique (user_id)
--   idx_customers_stripe           = unique (stripe_customer_id)
--   idx_git_repositories_project   = unique (project_id)
--   idx_files_path                 = unique (project_id, path)
--   idx_files_project_path         = unique (project_id, path)
--   idx_file_versions_file         = unique (file_id, version_number)
--   idx_messages_conversation_created = idx_messages_conversation
--   idx_usage_records_user_date    = idx_usage_records_user
-- Indexes on the partitioned tables are partitioned indexes: every partition gets its own.

create index idx_users_email on public.users(email);
create index idx_users_github_username on public.users(github_username);

create index idx_workspaces_owner on public.workspaces(owner_id);

create index idx_workspace_members_workspace on public.workspace_members(workspace_id);
create index idx_workspace_members_user on public.workspace_members(user_id);

create index idx_projects_workspace on public.projects(workspace_id);
create index idx_projects_last_accessed on public.projects(last_accessed_at desc);

create index idx_conversations_project on public.conversations(project_id);
create index idx_conversations_user on public.conversations(user_id);
create index idx_conversations_updated on public.conversations(updated_at desc);

create index idx_messages_conversation on public.messages(conversation_id, created_at);
create index idx_messages_tokens on public.messages(tokens_used);

create index idx_oauth_connections_user on public.oauth_connections(user_id);
create index idx_oauth_connections_provider on public.oauth_connections(provider);

create index idx_user_sessions_user on public.user_sessions_extended(user_id);
create index idx_user_sessions_last_activity on public.user_sessions_extended(last_activity_at desc);

create index idx_subscription_plans_active on public.subscription_plans(is_active, sort_order);

create index idx_subscriptions_customer on public.subscriptions(customer_id);
create index idx_subscriptions_status on public.subscriptions(status);
create index idx_subscriptions_period_end on public.subscriptions(current_period_end);

create index idx_usage_records_user on public.usage_records(user_id, recorded_at desc);
create index idx_usage_records_workspace on public.usage_records(workspace_id, recorded_at desc);
create index idx_usage_records_type on public.usage_records(resource_type, recorded_at desc);

create index idx_invoices_customer on public.invoices(customer_id, created_at desc);
create index idx_invoices_status on public.invoices(status);

create index idx_ai_jobs_user on public.ai_jobs(user_id, created_at desc);
create index idx_ai_jobs_project on public.ai_jobs(project_id);
create index idx_ai_jobs_status on public.ai_jobs(status);
create index idx_ai_jobs_status_created on public.ai_jobs(status, created_at desc);

create index idx_code_analyses_project on public.code_analyses(project_id);
create index idx_code_analyses_file on public.code_analyses(project_id, file_path);
create index idx_code_analyses_expires on public.code_analyses(expires_at);

create index idx_files_project on public.files(project_id);
create index idx_files_parent on public.files(parent_id);

create index idx_editor_sessions_user on public.editor_sessions(user_id);
create index idx_editor_sessions_project on public.editor_sessions(project_id);

create index idx_terminal_sessions_project on public.terminal_sessions(project_id, created_at desc);
create index idx_terminal_sessions_user on public.terminal_sessions(user_id, created_at desc);

create index idx_background_jobs_status on public.background_jobs(status, priority desc);
create index idx_background_jobs_scheduled on public.background_jobs(scheduled_for);
create index idx_background_jobs_type on public.background_jobs(job_type, status);

create index idx_code_executions_user on public.code_executions(user_id, created_at desc);
create index idx_code_executions_project on public.code_executions(project_id);

create index idx_api_logs_user on public.api_logs(user_id, created_at desc);
create index idx_api_logs_endpoint on public.api_logs(endpoint, created_at desc);
create index idx_api_logs_status on public.api_logs(status_code, created_at desc);

create index idx_error_logs_user on public.error_logs(user_id, created_at desc);
create index idx_error_logs_project on public.error_logs(project_id);
create index idx_error_logs_severity on public.error_logs(severity, created_at desc);
create index idx_error_logs_sentry on public.error_logs(sentry_issue_id);

create index idx_analytics_events_user on public.analytics_events(user_id, created_at desc);
create index idx_analytics_events_name on public.analytics_events(event_name, created_at desc);
create index idx_analytics_events_category on public.analytics_events(event_category, created_at desc);

create index idx_performance_metrics_name on public.performance_metrics(metric_name, recorded_at desc);
create index idx_performance_metrics_type on public.performance_metrics(metric_type, recorded_at desc);

create index idx_api_integrations_user on public.api_integrations(user_id);
create index idx_api_integrations_workspace on public.api_integrations(workspace_id);

create index idx_webhook_logs_provider on public.webhook_logs(provider, created_at desc);
create index idx_webhook_logs_status on public.webhook_logs(status);
create index idx_webhook_logs_event_type on public.webhook_logs(event_type);

create index idx_deployments_project on public.deployments(project_id, created_at desc);
create index idx_deployments_environment on public.deployments(environment, status);
create index idx_deployments_project_env on public.deployments(project_id, environment, created_at desc);

create index idx_environment_variables_project on public.environment_variables(project_id);

-- GIN indexes for jsonb columns (seed "Indexes for Performance").
create index idx_projects_settings on public.projects using gin(settings);
create index idx_users_preferences on public.users using gin(preferences);
create index idx_analytics_events_properties on public.analytics_events using gin(properties);
