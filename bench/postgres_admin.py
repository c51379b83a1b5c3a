"""Create and drop the benchmarks' own PostgreSQL databases, through the server's `postgres`
maintenance database (a database cannot be created or dropped from inside itself)."""

from contextlib import contextmanager


@contextmanager
def maintenance_connection(url: str, variable: str):
    """An autocommit connection to the server of `url`, and the database name `url` names.
    Exits with a message naming the `variable` to set unless `url` is PostgreSQL."""
    import dj_database_url
    import psycopg

    cfg = dj_database_url.parse(url)
    if "postgresql" not in cfg["ENGINE"]:
        raise SystemExit(f"The benchmark measures PostgreSQL: set {variable} to a postgres:// URL.")
    conninfo = {
        "host": cfg["HOST"] or "127.0.0.1",
        "port": cfg["PORT"] or 5432,
        "user": cfg["USER"] or "postgres",
        "dbname": "postgres",
    }
    if cfg["PASSWORD"]:
        conninfo["password"] = cfg["PASSWORD"]
    with psycopg.connect(**conninfo, autocommit=True) as conn:
        yield conn, cfg["NAME"]


def ensure_database(url: str, variable: str) -> None:
    with maintenance_connection(url, variable) as (conn, name):
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
            print(f"created database {name}")


def drop_database(url: str, variable: str) -> None:
    with maintenance_connection(url, variable) as (conn, name):
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def recreate_database(url: str, variable: str) -> None:
    drop_database(url, variable)
    ensure_database(url, variable)
