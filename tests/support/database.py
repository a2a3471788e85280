"""Databases on the test PostgreSQL server: URLs, a maintenance connection, and throw-away copies made with
``CREATE DATABASE ... TEMPLATE`` (a file copy: a migrated or published database in about a second)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg2
from sqlalchemy import Connection, Row, text
from sqlalchemy.engine import make_url

from database.engine import sqlalchemy_url

_counter = itertools.count()


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` (password kept)."""
    return make_url(sqlalchemy_url(url)).set(database=name).render_as_string(hide_password=False)


def database_name(url: str) -> str:
    return str(make_url(sqlalchemy_url(url)).database)


def admin_connection(url: str):  # type: ignore[no-untyped-def]
    """An autocommit psycopg2 connection to ``url``'s server, for CREATE and DROP DATABASE."""
    conn = psycopg2.connect(
        make_url(sqlalchemy_url(url)).set(drivername="postgresql").render_as_string(hide_password=False)
    )
    conn.autocommit = True
    return conn


def close_connections(server_url: str, name: str) -> None:
    """End every other session on database ``name``: a database is copied only while nobody is connected."""
    admin = admin_connection(server_url)
    try:
        with admin.cursor() as cur:
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
    finally:
        admin.close()


@contextmanager
def copy_of(server_url: str, template: str) -> Iterator[str]:
    """A new database cloned from database ``template`` (its name); yields its URL, drops it afterwards."""
    name = f"movierec_test_{os.getpid()}_{next(_counter)}"
    admin = admin_connection(server_url)
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    try:
        yield with_database(server_url, name)
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def fetch_rows(conn: Connection, sql: str, **params: object) -> list[Row[Any]]:
    """Every row of one parameterised query."""
    return list(conn.execute(text(sql), params).all())
