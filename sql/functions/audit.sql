-- audit.sql: The audit trail: one entry per security event, written in the transaction of the
-- event.
set local role authgres_owner;

create or replace function auth._audit(
  p_user auth.users, p_action text, p_log_type text, p_ip inet, p_traits jsonb default null
) returns void
  language plpgsql volatile
  set search_path = ''
as $$
begin
  insert into auth.audit_log_entries (payload, ip_address)
  values (
    pg_catalog.json_strip_nulls(pg_catalog.json_build_object(
      'actor_id', p_user.id,
      'actor_username', p_user.email,
      'actor_via_sso', false,
      'action', p_action,
      'log_type', p_log_type,
      'traits', p_traits)),
    coalesce(pg_catalog.host(p_ip), ''));
end
$$;
comment on function auth._audit(auth.users, text, text, inet, jsonb) is
  'Appends one audit_log_entries row, in the caller''s transaction.';

create or replace function auth._audit_admin(p_action text, p_user auth.users, p_ip inet, p_traits jsonb default '{}')
  returns void
  language plpgsql volatile
  set search_path = ''
as $$
begin
  insert into auth.audit_log_entries (payload, ip_address)
  values (pg_catalog.json_build_object(
            'actor_id', '00000000-0000-0000-0000-000000000000',
            'actor_username', 'service_role',
            'actor_via_sso', false,
            'action', p_action,
            'log_type', 'admin',
            'traits', pg_catalog.jsonb_build_object('user_id', p_user.id, 'user_email', p_user.email) || p_traits),
          coalesce(pg_catalog.host(p_ip), ''));
end
$$;
comment on function auth._audit_admin(text, auth.users, inet, jsonb) is 'Audits an admin action on a user.';
