-- OLTP schema of the e-commerce seed, MariaDB side. Applied at every `cdcapp stack up`:
-- idempotent. Foreign keys are plain, without ON DELETE CASCADE: InnoDB runs cascades inside the
-- storage engine and they never reach the binlog, so Debezium would not see the child deletes.
-- The application deletes children explicitly.

CREATE TABLE IF NOT EXISTS customers (
    id          BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    email       VARCHAR(255) NOT NULL,
    name        VARCHAR(255) NOT NULL,
    country     VARCHAR(64)  NOT NULL,
    city        VARCHAR(64)  NOT NULL,
    created_at  DATETIME     NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS products (
    id          BIGINT        NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name        VARCHAR(255)  NOT NULL,
    category    VARCHAR(64)   NOT NULL,
    price       DECIMAL(12,2) NOT NULL,
    created_at  DATETIME      NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS orders (
    id           BIGINT        NOT NULL AUTO_INCREMENT PRIMARY KEY,
    customer_id  BIGINT        NOT NULL,
    order_date   DATETIME      NOT NULL,
    status       VARCHAR(16)   NOT NULL,
    total        DECIMAL(14,2) NOT NULL,
    CONSTRAINT fk_orders_customer FOREIGN KEY (customer_id) REFERENCES customers (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS order_items (
    id          BIGINT        NOT NULL AUTO_INCREMENT PRIMARY KEY,
    order_id    BIGINT        NOT NULL,
    product_id  BIGINT        NOT NULL,
    quantity    INTEGER       NOT NULL,
    price       DECIMAL(12,2) NOT NULL,
    CONSTRAINT fk_order_items_order FOREIGN KEY (order_id) REFERENCES orders (id),
    CONSTRAINT fk_order_items_product FOREIGN KEY (product_id) REFERENCES products (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Debezium's signalling table (`cdcapp backfill`): a row asks the connector for an incremental
-- snapshot, and the connector writes its snapshot-window watermarks here.
CREATE TABLE IF NOT EXISTS debezium_signal (
    id    VARCHAR(42)   NOT NULL PRIMARY KEY,
    type  VARCHAR(32)   NOT NULL,
    data  VARCHAR(2048) NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
