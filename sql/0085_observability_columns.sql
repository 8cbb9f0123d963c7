-- Observability writes: what api_logs records beyond the seed, and foreign keys that no longer
-- block deleting what a log row mentions.
--
-- api_logs gains workspace_id (known once a handler has authorized the caller), request_bytes
-- and response_bytes. workspace_id has no foreign key on purpose: rows are appended in batches
-- by COPY (no referential check per row), and a log row outlives its workspace until the
-- 90-day retention drops its month. A BRIN index on created_at serves the per-minute counts
-- (append-only table: a few pages per partition, nearly free to maintain).
--
-- Deliberate fix (documented in sql/README.md): the seed's log tables reference users,
-- workspaces and projects with no delete action, so once a row exists the workspace, project
-- or user it names can no longer be deleted (the app deletes workspaces and projects). Those
-- references become `on delete set null`; the indexes the set-null scan needs exist already
-- or are added here (analytics_events.workspace_id).
--
-- performance_metrics.metric_type also accepts 'execution' (run times of user code, which the
-- seed's four types do not cover).

alter table public.api_logs
  add column workspace_id uuid,
  add column request_bytes integer,
  add column response_bytes integer;

create index idx_api_logs_workspace on public.api_logs (workspace_id, created_at desc)
  where workspace_id is not null;
create index idx_api_logs_created on public.api_logs using brin (created_at);

alter table public.api_logs drop constraint api_logs_user_id_fkey;
alter table public.api_logs add constraint api_logs_user_id_fkey
  foreign key (user_id) references public.users(id) on delete set null;

alter table public.error_logs drop constraint error_logs_user_id_fkey;
alter table public.error_logs add constraint error_logs_user_id_fkey
  foreign key (user_id) references public.users(id) on delete set null;
alter table public.error_logs drop constraint error_logs_project_id_fkey;
alter table public.error_logs add constraint error_logs_project_id_fkey
  foreign key (project_id) references public.projects(id) on delete set null;
create index idx_error_logs_created on public.error_logs (created_at desc);

alter table public.analytics_events drop constraint analytics_events_user_id_fkey;
alter table public.analytics_events add constraint analytics_events_user_id_fkey
  foreign key (user_id) references public.users(id) on delete set null;
alter table public.analytics_events drop constraint analytics_events_workspace_id_fkey;
alter table public.analytics_events add constraint analytics_events_workspace_id_fkey
  foreign key (workspace_id) references public.workspaces(id) on delete set null;
create index idx_analytics_events_workspace on public.analytics_events (workspace_id, created_at desc)
  where workspace_id is not null;

alter table public.performance_metrics drop constraint performance_metrics_metric_type_check;
alter table public.performance_metrics add constraint performance_metrics_metric_type_check
  check (metric_type in ('api_latency', 'db_query', 'page_load', 'ai_response', 'execution'));
-- The hourly retention job deletes by age (error_logs uses idx_error_logs_created).
create index idx_performance_metrics_recorded on public.performance_metrics (recorded_at);
