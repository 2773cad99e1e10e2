-- OLTP schema of the e-commerce seed, PostgreSQL side. Applied at every `cdcapp stack up`:
-- idempotent. Foreign keys are plain: the application deletes children explicitly, the same on
-- both sources (InnoDB cascades never reach the binlog).
--
-- The tables keep REPLICA IDENTITY DEFAULT: update and delete events carry only the primary key
-- as before-image, which is enough because the pipeline keeps its own state per key.

CREATE TABLE IF NOT EXISTS customers (
    id          BIGSERIAL    PRIMARY KEY,
    email       VARCHAR(255) NOT NULL,
    name        VARCHAR(255) NOT NULL,
    country     VARCHAR(64)  NOT NULL,
    city        VARCHAR(64)  NOT NULL,
    created_at  TIMESTAMP(0) NOT NULL
);

CREATE TABLE IF NOT EXISTS products (
    id          BIGSERIAL     PRIMARY KEY,
    name        VARCHAR(255)  NOT NULL,
    category    VARCHAR(64)   NOT NULL,
    price       NUMERIC(12,2) NOT NULL,
    created_at  TIMESTAMP(0)  NOT NULL
);

CREATE TABLE IF NOT EXISTS orders (
    id           BIGSERIAL     PRIMARY KEY,
    customer_id  BIGINT        NOT NULL REFERENCES customers (id),
    order_date   TIMESTAMP(0)  NOT NULL,
    status       VARCHAR(16)   NOT NULL,
    total        NUMERIC(14,2) NOT NULL
);

CREATE TABLE IF NOT EXISTS order_items (
    id          BIGSERIAL     PRIMARY KEY,
    order_id    BIGINT        NOT NULL REFERENCES orders (id),
    product_id  BIGINT        NOT NULL REFERENCES products (id),
    quantity    INTEGER       NOT NULL,
    price       NUMERIC(12,2) NOT NULL
);

-- PostgreSQL does not index a foreign key's column by itself (InnoDB does): without these,
-- every lookup of an order's items, every parent delete and every FK check scans the child table.
CREATE INDEX IF NOT EXISTS orders_customer_id ON orders (customer_id);
CREATE INDEX IF NOT EXISTS order_items_order_id ON order_items (order_id);
CREATE INDEX IF NOT EXISTS order_items_product_id ON order_items (product_id);

-- Debezium's signalling table (`cdcapp backfill`): a row asks the connector for an incremental
-- snapshot, and the connector writes its snapshot-window watermarks here. It is captured (it
-- must be in the publication for the watermarks to come back through the stream), but its
-- events are the connector's own business: no entity of the spec reads them.
CREATE TABLE IF NOT EXISTS debezium_signal (
    id    VARCHAR(42)   PRIMARY KEY,
    type  VARCHAR(32)   NOT NULL,
    data  VARCHAR(2048) NULL
);
