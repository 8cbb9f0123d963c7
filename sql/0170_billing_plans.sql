-- The three plans (free / pro / team) and the limits every plan carries:
--   ai_tokens  tokens per UTC calendar month (input + output), summed over the payer's workspaces
--   projects   projects in all the workspaces the payer owns
--   storage_gb bytes of all files in the payer's workspaces (a counter, 0171)
--   executions code runs per UTC calendar month in the payer's workspaces
--   members    members of one workspace (the owner included)
-- A negative or missing limit means unlimited. Stripe price ids are set per deployment
-- (docs/billing.md); features 'metered_ai' marks a plan whose AI use is reported to a Stripe
-- meter. Idempotent: re-running changes nothing an operator set.
insert into public.subscription_plans
  (name, slug, description, price_monthly, price_yearly, features, limits, is_active, sort_order)
values
  ('Pro', 'pro', 'For one developer who builds every day', 1500, 15000,
   '["ai_chat", "realtime_collaboration", "priority_ai"]'::jsonb,
   '{"ai_tokens": 2000000, "projects": 50, "storage_gb": 20, "executions": 10000, "members": 10}'::jsonb,
   true, 10),
  ('Team', 'team', 'For teams: more of everything, AI use billed as you go', 4000, 40000,
   '["ai_chat", "realtime_collaboration", "priority_ai", "metered_ai"]'::jsonb,
   '{"ai_tokens": 20000000, "projects": 500, "storage_gb": 100, "executions": 100000, "members": 50}'::jsonb,
   true, 20)
on conflict (slug) do nothing;

-- The free plan of 0040 gains the two limits it lacked (an operator's own values are kept).
update public.subscription_plans
set limits = '{"executions": 500, "members": 5}'::jsonb || limits
where slug = 'free' and not (limits ? 'executions' and limits ? 'members');
