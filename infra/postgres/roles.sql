-- Roles for a PostgreSQL deployment of Onshi Cloud. Run once as a superuser, before `onshi migrate`
-- (the Compose file mounts it into the postgres image's init folder).
--
-- onshi_owner  owns the schema. Only operators' commands connect as it (database_migration_url):
--              `onshi migrate`, `onshi maintain` (partitions, retention), `onshi backup`/`restore`,
--              `onshi audit verify`. BYPASSRLS because those commands work across tenants, and pg_dump
--              refuses to dump tables whose policies would hide rows. Never give its URL to the API or
--              the workers.
-- onshi_app    the application (database_url): not the owner, not superuser, no BYPASSRLS, so the
--              row-level-security policies the migrations create apply to it. The migrations grant it DML
--              on the tenant tables (not on their monthly partitions) and no UPDATE/DELETE on audit_log.
CREATE ROLE onshi_owner LOGIN PASSWORD 'change-me-owner' NOSUPERUSER BYPASSRLS;
CREATE ROLE onshi_app LOGIN PASSWORD 'change-me-app' NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
CREATE DATABASE onshi OWNER onshi_owner;
\connect onshi
-- PostgreSQL 15: only the owner may create objects in public.
ALTER SCHEMA public OWNER TO onshi_owner;
