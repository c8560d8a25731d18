-- One authorization_code exchange as auth-server runs it on PostgreSQL, statement
-- for statement (auth-server/src/storage/queries.rs), without HTTP, JWT signing
-- or the driver: the database's own ceiling for the exchange, the baseline of
-- `/token` on PostgreSQL in bench/run.sh (case auth_token_pg). Run by pgbench with
-- -M prepared (auth-server's driver prepares each statement once per connection)
-- (variables: client, resource, scope) on a database the auth-server has just
-- served, seeded with unused codes
-- 'bench-code-N' and the sequence bench_code_seq (bench.py, pg_ceiling).
--
-- Client authentication: CLIENT_BY_ID.
SELECT client_id, client_name, secret_hash, metadata, source, registration_token_hash,
       can_introspect, created_at, updated_at
  FROM clients WHERE client_id = :client::text;
-- The code's claim (CLAIM_CODE; autocommit). The sequence picks the next unused
-- code inside the same statement: the claim stays one round trip.
WITH next_code AS (SELECT 'bench-code-' || nextval('bench_code_seq') AS code_hash)
UPDATE auth_codes SET used_at = extract(epoch from now())::bigint
  FROM next_code
 WHERE auth_codes.code_hash = next_code.code_hash AND used_at IS NULL
RETURNING auth_codes.code_hash AS code, auth_codes.client_id, auth_codes.user_id AS user_id,
          redirect_uri, scope, resource, code_challenge, nonce, auth_time,
          auth_codes.created_at, expires_at, grant_id
\gset
-- The user the code belongs to (USER_BY_ID).
SELECT id, username, password_hash, role, email, name, disabled, created_at
  FROM users WHERE id = :user_id::text;
-- The grant with its first tokens and audit row (create_grant), one transaction.
BEGIN;
UPDATE auth_codes SET grant_id = md5(:code::text) WHERE code_hash = :code::text AND grant_id IS NULL;
INSERT INTO grants (id, user_id, client_id, scope, resource, auth_time, created_at, expires_at, revoked_at)
  VALUES (md5(:code::text), :user_id::text, :client::text, :scope::text, :resource::text, 1, 1, 4102444800, NULL);
INSERT INTO access_tokens (jti, grant_id, client_id, user_id, scope, audience, issued_at, expires_at, revoked_at)
  VALUES (md5(:code::text || 'access'), md5(:code::text), :client::text, :user_id::text, :scope::text, :resource::text, 1, 4102444800, NULL);
INSERT INTO refresh_tokens (token_hash, grant_id, scope, created_at, expires_at, rotated_at)
  VALUES (md5(:code::text || 'refresh') || md5(:code::text || 'r2'), md5(:code::text), :scope::text, 1, 4102444800, NULL);
INSERT INTO audit_log (id, at_ms, event, username, client_id, ip, detail)
  VALUES (md5(:code::text || 'audit'), 1, 'token_issued', 'demo', :client::text, '127.0.0.1',
          'grant=authorization_code scope=' || :scope::text);
COMMIT;
