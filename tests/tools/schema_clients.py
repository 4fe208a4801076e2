"""What Python clients see of a database's schema through a MariaDB endpoint.

Usage: schema_clients.py HOST PORT USER PASSWORD DATABASE
Prints one JSON object: for each DB-API connector (PyMySQL, mysql-connector-python) the tables
listed through information_schema (plain, ordered with a limit, and the schemata), and what
SQLAlchemy's inspector reflects (table names, each table's columns), over both drivers.
Each client uses one connection at a time and closes it.
"""
import json
import sys

import mysql.connector
import pymysql
import sqlalchemy as sa

host, port, user, password, db = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]


def dbapi(conn):
    cur = conn.cursor()
    cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (db,))
    tables = sorted(r[0] for r in cur.fetchall())
    cur.execute(
        "SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
        "ORDER BY TABLE_NAME DESC LIMIT 2",
        (db,),
    )
    last_two = [r[0] for r in cur.fetchall()]
    cur.execute("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (db,))
    schemata = [r[0] for r in cur.fetchall()]
    cur.execute(
        "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s ORDER BY TABLE_NAME, ORDINAL_POSITION",
        (db,),
    )
    columns = [r[0] for r in cur.fetchall()]
    conn.close()
    return {"tables": tables, "last_two": last_two, "schemata": schemata, "columns": columns}


def reflect(url):
    engine = sa.create_engine(url)
    insp = sa.inspect(engine)
    names = sorted(insp.get_table_names(schema=db))
    cols = {t: [c["name"] for c in insp.get_columns(t, schema=db)] for t in names}
    views = sorted(insp.get_view_names(schema=db))
    engine.dispose()
    return {"tables": names, "columns": cols, "views": views}


def text(v):
    return v.decode() if isinstance(v, (bytes, bytearray)) else v


out = {
    "pymysql": dbapi(pymysql.connect(host=host, port=port, user=user, password=password)),
    "mysql_connector": dbapi(mysql.connector.connect(host=host, port=port, user=user, password=password)),
}
url = f"{user}:{password}@{host}:{port}/{db}"
out["sqlalchemy_pymysql"] = reflect(f"mysql+pymysql://{url}")
out["sqlalchemy_mysqlconnector"] = reflect(f"mysql+mysqlconnector://{url}")
print(json.dumps(out, default=text))
