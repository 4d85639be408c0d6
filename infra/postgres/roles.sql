-- Roles for a PostgreSQL deployment of Onshi Cloud. Run once as a superuser, before `onshi migrate`.
--
-- onshi_owner  owns the schema; `onshi migrate` and `onshi audit verify` connect as it
--              (database_migration_url).
-- onshi_app    the application (database_url): not the owner, not superuser, no BYPASSRLS, so the
--              row-level-security policies the migrations create apply to it. The migration grants it
--              what it needs and no UPDATE/DELETE on audit_log.
CREATE ROLE onshi_owner LOGIN PASSWORD 'change-me-owner' NOSUPERUSER NOBYPASSRLS;
CREATE ROLE onshi_app LOGIN PASSWORD 'change-me-app' NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
CREATE DATABASE onshi OWNER onshi_owner;
\connect onshi
-- PostgreSQL 15: only the owner may create objects in public.
ALTER SCHEMA public OWNER TO onshi_owner;
