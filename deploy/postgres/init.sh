#!/bin/sh
# One database per service, each owned by the role the services log in with; each service
# creates its own tables at start-up (migrations). Run once by the postgres image on an
# empty data volume.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" <<SQL
CREATE ROLE gradients LOGIN PASSWORD '$POSTGRES_PASSWORD';
CREATE DATABASE gradients_intake OWNER gradients;
CREATE DATABASE gradients_dispatch OWNER gradients;
CREATE DATABASE gradients_ledger OWNER gradients;
CREATE DATABASE gradients_audit OWNER gradients;
SQL
