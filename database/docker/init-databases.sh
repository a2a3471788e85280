#!/bin/sh
# First start of the compose PostgreSQL: the app, MLflow and Airflow databases, one owner each.
# Passwords come from the environment (docker-compose.yml / .env), never from this file.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres <<SQL
CREATE ROLE movierec LOGIN PASSWORD '${MOVIEREC_DB_PASSWORD}';
CREATE ROLE mlflow LOGIN PASSWORD '${MLFLOW_DB_PASSWORD}';
CREATE ROLE airflow LOGIN PASSWORD '${AIRFLOW_DB_PASSWORD}';
CREATE DATABASE movierec OWNER movierec;
CREATE DATABASE mlflow OWNER mlflow;
CREATE DATABASE airflow OWNER airflow;
SQL
