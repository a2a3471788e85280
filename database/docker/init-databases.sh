#!/bin/sh
# First start of the compose PostgreSQL: the app, MLflow and Airflow databases, one owner each, and the
# read-only role the model server connects as (migration 0004 grants it SELECT on what the API reads), and
# movierec_feedback, the role it records dismissals with (migration 0007 grants it INSERT on dismissals only).
# Passwords come from the environment (docker-compose.yml / .env), never from this file; psql's :'var'
# quoting keeps any character in them safe.
#
# Every role logs in with its password. No role but a database's owner may connect to it or create temporary
# tables there, except that movierec_reader and movierec_feedback may connect to the app database; their
# statements and open transactions are bounded (pipeline/core/defaults.py READER_STATEMENT_TIMEOUT_S and
# READER_IDLE_IN_TRANSACTION_TIMEOUT_S, in seconds; keep them equal). The embedded server does the same
# (database/embedded.py _secure_reader).
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v movierec_pw="$MOVIEREC_DB_PASSWORD" -v mlflow_pw="$MLFLOW_DB_PASSWORD" \
    -v airflow_pw="$AIRFLOW_DB_PASSWORD" -v reader_pw="$MOVIEREC_READER_PASSWORD" \
    -v feedback_pw="$MOVIEREC_FEEDBACK_PASSWORD" <<'SQL'
CREATE ROLE movierec LOGIN PASSWORD :'movierec_pw';
CREATE ROLE mlflow LOGIN PASSWORD :'mlflow_pw';
CREATE ROLE airflow LOGIN PASSWORD :'airflow_pw';
CREATE ROLE movierec_reader LOGIN PASSWORD :'reader_pw';
ALTER ROLE movierec_reader SET statement_timeout = '60s';
ALTER ROLE movierec_reader SET idle_in_transaction_session_timeout = '60s';
CREATE ROLE movierec_feedback LOGIN PASSWORD :'feedback_pw';
ALTER ROLE movierec_feedback SET statement_timeout = '60s';
ALTER ROLE movierec_feedback SET idle_in_transaction_session_timeout = '60s';
CREATE DATABASE movierec OWNER movierec;
CREATE DATABASE mlflow OWNER mlflow;
CREATE DATABASE airflow OWNER airflow;
REVOKE CONNECT, TEMPORARY ON DATABASE movierec, mlflow, airflow, postgres FROM PUBLIC;
GRANT CONNECT ON DATABASE movierec TO movierec_reader, movierec_feedback;
SQL
