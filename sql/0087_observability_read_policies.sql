-- Who reads the observability tables (the operator page's endpoints query them as the user):
-- admins and owners of a workspace read its rows; service operators (0086) read every row.
-- Rows without a workspace (sign-in requests, errors outside any project, server-wide metrics,
-- the job queue) are the operator's alone. Policies are OR-ed with the existing ones (users
-- still read their own usage_records; inserts are unchanged).

create policy api_logs_select_admin on public.api_logs for select to authenticated
  using (workspace_id in (select public.my_workspace_ids('admin'))
         or (select public.is_service_operator()));

create policy error_logs_select_admin on public.error_logs for select to authenticated
  using (project_id in (select public.my_project_ids('admin'))
         or (select public.is_service_operator()));

create policy analytics_events_select_admin on public.analytics_events for select to authenticated
  using (workspace_id in (select public.my_workspace_ids('admin'))
         or (select public.is_service_operator()));

-- Users also see the analytics events recorded about themselves (and the endpoint counts
-- them for its per-user rate limit, as the user).
create policy analytics_events_select_own on public.analytics_events for select to authenticated
  using (user_id = (select auth.uid()));

create policy usage_records_select_admin on public.usage_records for select to authenticated
  using (workspace_id in (select public.my_workspace_ids('admin'))
         or (select public.is_service_operator()));

create policy performance_metrics_select_operator on public.performance_metrics
  for select to authenticated using ((select public.is_service_operator()));

create policy background_jobs_select_operator on public.background_jobs
  for select to authenticated using ((select public.is_service_operator()));
