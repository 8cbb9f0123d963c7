-- environment_variables by project role (issue 18), replacing the creator-only reads of
-- 0016/0060: every member of the project lists the variables (secret values never leave
-- the server; the API masks them), members write development and staging variables,
-- admins and owners also production and `all` (which applies to production). Viewers see
-- none. Runs and terminals get development (and `all`) variables only, so a member cannot
-- read a production secret by printing it from a run.
alter policy environment_variables_select on public.environment_variables
  using (project_id in (select public.my_project_ids('member')));
alter policy environment_variables_insert on public.environment_variables
  with check (
    created_by = (select auth.uid())
    and (project_id in (select public.my_project_ids('admin'))
         or (environment in ('development', 'staging')
             and project_id in (select public.my_project_ids('member')))));
alter policy environment_variables_update on public.environment_variables
  using (project_id in (select public.my_project_ids('admin'))
         or (environment in ('development', 'staging')
             and project_id in (select public.my_project_ids('member'))))
  with check (project_id in (select public.my_project_ids('admin'))
              or (environment in ('development', 'staging')
                  and project_id in (select public.my_project_ids('member'))));
alter policy environment_variables_delete on public.environment_variables
  using (project_id in (select public.my_project_ids('admin'))
         or (environment in ('development', 'staging')
             and project_id in (select public.my_project_ids('member'))));
