-- The OLTP schema for SQLite. Same tables and columns as postgres.sql / mariadb.sql.
-- Decimals are TEXT decimal strings ("12.30") so they stay exact (SQLite has no decimal
-- type and REAL would round); timestamps are TEXT 'YYYY-MM-DD HH:MM:SS' in UTC.
-- Idempotent: safe to apply to an existing database.
PRAGMA foreign_keys = ON;

CREATE TABLE IF NOT EXISTS customers (
    id         INTEGER PRIMARY KEY,
    email      TEXT NOT NULL,
    name       TEXT NOT NULL,
    country    TEXT NOT NULL,
    city       TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS products (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    category   TEXT NOT NULL,
    price      TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS orders (
    id          INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers (id),
    order_date  TEXT NOT NULL,
    status      TEXT NOT NULL,
    total       TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS order_items (
    id         INTEGER PRIMARY KEY,
    order_id   INTEGER NOT NULL REFERENCES orders (id),
    product_id INTEGER NOT NULL REFERENCES products (id),
    quantity   INTEGER NOT NULL,
    price      TEXT NOT NULL
);

-- Without these, every parent delete or FK check scans the child table.
CREATE INDEX IF NOT EXISTS orders_customer_id ON orders (customer_id);
CREATE INDEX IF NOT EXISTS order_items_order_id ON order_items (order_id);
CREATE INDEX IF NOT EXISTS order_items_product_id ON order_items (product_id);
