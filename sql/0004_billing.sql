-- Billing module. Money is integer cents, as in the seed.
-- Deliberate fix: usage_records is partitioned by month on recorded_at (seed note 3), so its
-- primary key must contain the partition key: (id, recorded_at), and recorded_at is not null.
-- Monthly partitions are created in 0014_partitions.

create table public.subscription_plans (
  id uuid primary key default gen_random_uuid(),
  name text not null unique,
  slug text not null unique,
  description text,
  price_monthly integer not null, -- in cents
  price_yearly integer not null, -- in cents
  stripe_price_id_monthly text,
  stripe_price_id_yearly text,
  features jsonb not null default '[]',
  limits jsonb not null default '{}', -- {ai_tokens: 100000, projects: 10, storage_gb: 5}
  is_active boolean default true,
  sort_order integer default 0,
  created_at timestamptz default now(),
  updated_at timestamptz default now()
);

create table public.customers (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null unique references public.users(id) on delete cascade,
  stripe_customer_id text unique not null,
  email text,
  billing_address jsonb,
  metadata jsonb default '{}',
  created_at timestamptz default now(),
  updated_at timestamptz default now()
);

create table public.subscriptions (
  id uuid primary key default gen_random_uuid(),
  customer_id uuid not null references public.customers(id) on delete cascade,
  plan_id uuid not null references public.subscription_plans(id),
  stripe_subscription_id text unique not null,
  status text not null check (status in ('active', 'past_due', 'canceled', 'unpaid', 'trialing')),
  billing_interval text not null check (billing_interval in ('monthly', 'yearly')),
  current_period_start timestamptz not null,
  current_period_end timestamptz not null,
  cancel_at_period_end boolean default false,
  canceled_at timestamptz,
  trial_start timestamptz,
  trial_end timestamptz,
  created_at timestamptz default now(),
  updated_at timestamptz default now()
);

create table public.usage_records (
  id uuid not null default gen_random_uuid(),
  user_id uuid not null references public.users(id) on delete cascade,
  workspace_id uuid references public.workspaces(id) on delete set null,
  resource_type text not null check (resource_type in ('ai_tokens', 'api_calls', 'storage_gb', 'executions')),
  amount decimal not null,
  unit text not null,
  metadata jsonb default '{}',
  recorded_at timestamptz not null default now(),
  created_at timestamptz default now(),
  primary key (id, recorded_at)
) partition by range (recorded_at);

create table public.invoices (
  id uuid primary key default gen_random_uuid(),
  customer_id uuid not null references public.customers(id) on delete cascade,
  stripe_invoice_id text unique not null,
  amount_due integer not null,
  amount_paid integer,
  currency text default 'usd',
  status text not null check (status in ('draft', 'open', 'paid', 'void', 'uncollectible')),
  invoice_pdf_url text,
  period_start timestamptz,
  period_end timestamptz,
  paid_at timestamptz,
  created_at timestamptz default now()
);
