-- A deleted project leaves things outside the database: its workdir, its disk image
-- (execution/volumes.py) and the stored objects only its files named. Every deletion
-- (the API, a workspace's cascade, the service) queues the job `projects.cleanup`
-- (execution/cleanup.py) in the deleting transaction, with the object keys its files held
-- (read before the cascade removes the files). Its max_attempts (10) and job_type match
-- the job's definition (tests/execution/test_project_cleanup.py checks it).

create or replace function public.enqueue_project_cleanup()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into public.background_jobs (job_name, job_type, input, max_attempts)
  values (
    'projects.cleanup', 'cleanup',
    pg_catalog.jsonb_build_object(
      'project_id', old.id,
      'object_keys', coalesce((
        select pg_catalog.jsonb_agg(distinct f.storage_path)
        from public.files f
        where f.project_id = old.id and f.storage_path is not null
      ), '[]'::jsonb)
    ),
    10
  );
  perform pg_catalog.pg_notify('background_jobs', 'projects.cleanup');
  return old;
end;
$$;

revoke all on function public.enqueue_project_cleanup() from public;

drop trigger if exists projects_enqueue_cleanup on public.projects;
create trigger projects_enqueue_cleanup
  before delete on public.projects
  for each row execute function public.enqueue_project_cleanup();
