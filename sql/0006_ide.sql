-- IDE / editor module (seed as-is).

create table public.files (
  id uuid primary key default gen_random_uuid(),
  project_id uuid not null references public.projects(id) on delete cascade,
  path text not null,
  name text not null,
  type text not null check (type in ('file', 'folder')),
  content text,
  size_bytes integer,
  mime_type text,
  language text,
  parent_id uuid references public.files(id) on delete cascade,
  storage_path text, -- for Supabase Storage
  is_deleted boolean default false,
  created_by uuid references public.users(id),
  updated_by uuid references public.users(id),
  created_at timestamptz default now(),
  updated_at timestamptz default now(),
  unique (project_id, path)
);

create table public.file_versions (
  id uuid primary key default gen_random_uuid(),
  file_id uuid not null references public.files(id) on delete cascade,
  version_number integer not null,
  content text not null,
  size_bytes integer,
  changed_by uuid references public.users(id),
  change_message text,
  created_at timestamptz default now(),
  unique (file_id, version_number)
);

create table public.editor_sessions (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null references public.users(id) on delete cascade,
  project_id uuid not null references public.projects(id) on delete cascade,
  open_files jsonb default '[]', -- [{file_id, cursor_position, scroll_position}]
  active_file_id uuid references public.files(id),
  layout_state jsonb default '{}',
  last_active_at timestamptz default now(),
  created_at timestamptz default now(),
  unique (user_id, project_id)
);

create table public.terminal_sessions (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null references public.users(id) on delete cascade,
  project_id uuid not null references public.projects(id) on delete cascade,
  command text not null,
  output text,
  exit_code integer,
  duration_ms integer,
  working_directory text,
  created_at timestamptz default now()
);

create table public.git_repositories (
  id uuid primary key default gen_random_uuid(),
  project_id uuid not null unique references public.projects(id) on delete cascade,
  provider text not null check (provider in ('github', 'gitlab', 'bitbucket')),
  repo_url text not null,
  repo_full_name text, -- e.g., "username/repo"
  default_branch text default 'main',
  last_sync_at timestamptz,
  sync_status text check (sync_status in ('idle', 'syncing', 'error')),
  created_at timestamptz default now(),
  updated_at timestamptz default now()
);
