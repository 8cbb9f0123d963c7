-- Sign-ups are limited per ip as well (account farming, and a 409 on a taken email would
-- otherwise let anyone probe addresses at full speed). They are recorded beside the sign-in
-- attempts of 0031, told apart by kind; the sign-in limits count only sign-in rows.
alter table public.auth_attempts
  add column kind text not null default 'sign_in' check (kind in ('sign_in', 'sign_up'));

create index idx_auth_attempts_ip_kind on public.auth_attempts(ip_address, kind, created_at desc);
