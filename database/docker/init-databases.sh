#!/bin/sh
# First start of the compose PostgreSQL: the app, MLflow and Airflow databases, one owner each, and the
# read-only role the model server connects as (migration 0003 grants it SELECT on the app's tables).
# Passwords come from the environment (docker-compose.yml / .env), never from this file; psql's :'var'
# quoting keeps any character in them safe.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v movierec_pw="$MOVIEREC_DB_PASSWORD" -v mlflow_pw="$MLFLOW_DB_PASSWORD" \
    -v airflow_pw="$AIRFLOW_DB_PASSWORD" -v reader_pw="$MOVIEREC_READER_PASSWORD" <<'SQL'
CREATE ROLE movierec LOGIN PASSWORD :'movierec_pw';
CREATE ROLE mlflow LOGIN PASSWORD :'mlflow_pw';
CREATE ROLE airflow LOGIN PASSWORD :'airflow_pw';
CREATE ROLE movierec_reader LOGIN PASSWORD :'reader_pw';
CREATE DATABASE movierec OWNER movierec;
CREATE DATABASE mlflow OWNER mlflow;
CREATE DATABASE airflow OWNER airflow;
REVOKE CONNECT ON DATABASE mlflow, airflow FROM PUBLIC;
SQL
