-- Keep updated_at current on every table that has the column (seed: "apply to all relevant
-- tables"). Fix: a fixed search_path, like every function here.

-- Sets NEW.updated_at to the transaction time before an update.
create or replace function public.update_updated_at_column()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  new.updated_at = pg_catalog.now();
  return new;
end;
$$;

create trigger update_users_updated_at before update on public.users
  for each row execute function public.update_updated_at_column();
create trigger update_workspaces_updated_at before update on public.workspaces
  for each row execute function public.update_updated_at_column();
create trigger update_projects_updated_at before update on public.projects
  for each row execute function public.update_updated_at_column();
create trigger update_conversations_updated_at before update on public.conversations
  for each row execute function public.update_updated_at_column();
create trigger update_oauth_connections_updated_at before update on public.oauth_connections
  for each row execute function public.update_updated_at_column();
create trigger update_subscription_plans_updated_at before update on public.subscription_plans
  for each row execute function public.update_updated_at_column();
create trigger update_customers_updated_at before update on public.customers
  for each row execute function public.update_updated_at_column();
create trigger update_subscriptions_updated_at before update on public.subscriptions
  for each row execute function public.update_updated_at_column();
create trigger update_files_updated_at before update on public.files
  for each row execute function public.update_updated_at_column();
create trigger update_git_repositories_updated_at before update on public.git_repositories
  for each row execute function public.update_updated_at_column();
create trigger update_api_integrations_updated_at before update on public.api_integrations
  for each row execute function public.update_updated_at_column();
create trigger update_environment_variables_updated_at before update on public.environment_variables
  for each row execute function public.update_updated_at_column();
