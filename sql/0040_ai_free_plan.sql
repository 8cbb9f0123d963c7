-- The free plan: what a user without an active subscription may use. The AI chat reads
-- limits.ai_tokens (tokens per UTC calendar month, input + output) before every reply.
insert into public.subscription_plans
  (name, slug, description, price_monthly, price_yearly, features, limits, is_active, sort_order)
values
  ('Free', 'free', 'Everything to get started, with a monthly AI allowance', 0, 0,
   '["ai_chat", "realtime_collaboration"]'::jsonb,
   '{"ai_tokens": 100000, "projects": 3, "storage_gb": 1}'::jsonb,
   true, 0)
on conflict (slug) do nothing;
