-- api_integrations of a workspace (issue 18): one key per workspace and provider (the
-- chat uses it for every conversation of the workspace), managed by the workspace's
-- admins and owners; personal rows (workspace_id null) by their user only. Replaces the
-- rules of 0016/0060, under which any member could add a workspace key and a demoted
-- admin kept editing the rows they had created.
create unique index api_integrations_one_per_workspace
  on public.api_integrations (workspace_id, provider) where workspace_id is not null;

alter policy api_integrations_select on public.api_integrations
  using ((workspace_id is null and user_id = (select auth.uid()))
         or workspace_id in (select public.my_workspace_ids('admin')));
alter policy api_integrations_insert on public.api_integrations
  with check (user_id = (select auth.uid())
              and (workspace_id is null
                   or workspace_id in (select public.my_workspace_ids('admin'))));
alter policy api_integrations_update on public.api_integrations
  using ((workspace_id is null and user_id = (select auth.uid()))
         or workspace_id in (select public.my_workspace_ids('admin')))
  with check ((workspace_id is null and user_id = (select auth.uid()))
              or workspace_id in (select public.my_workspace_ids('admin')));
alter policy api_integrations_delete on public.api_integrations
  using ((workspace_id is null and user_id = (select auth.uid()))
         or workspace_id in (select public.my_workspace_ids('admin')));
