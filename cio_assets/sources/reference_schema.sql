-- Reference source schema for cio-assets (MySQL/MariaDB). Generated from cio_assets/sources/tables.py.
CREATE TABLE customers (
	id BIGINT NOT NULL, 
	email VARCHAR(320), 
	phone VARCHAR(64), 
	first_name VARCHAR(255), 
	last_name VARCHAR(255), 
	country CHAR(2), 
	accepts_email_marketing BOOL NOT NULL, 
	accepts_sms_marketing BOOL NOT NULL, 
	created_at DATETIME(6), 
	updated_at DATETIME(6), 
	PRIMARY KEY (id)
);

CREATE INDEX ix_customers_email ON customers (email);

CREATE INDEX ix_customers_updated_at ON customers (updated_at);

CREATE TABLE orders (
	id BIGINT NOT NULL, 
	customer_id BIGINT, 
	email VARCHAR(320), 
	cart_id BIGINT, 
	status VARCHAR(32) NOT NULL, 
	currency CHAR(3) NOT NULL, 
	subtotal NUMERIC(12, 2) NOT NULL, 
	discount_total NUMERIC(12, 2) NOT NULL, 
	shipping_total NUMERIC(12, 2) NOT NULL, 
	total NUMERIC(12, 2) NOT NULL, 
	discount_code VARCHAR(64), 
	created_at DATETIME(6), 
	paid_at DATETIME(6), 
	updated_at DATETIME(6), 
	PRIMARY KEY (id)
);

CREATE INDEX ix_orders_cart_id ON orders (cart_id);

CREATE INDEX ix_orders_customer_id ON orders (customer_id);

CREATE INDEX ix_orders_email ON orders (email);

CREATE INDEX ix_orders_paid_at ON orders (paid_at);

CREATE INDEX ix_orders_updated_at ON orders (updated_at);

CREATE TABLE order_items (
	id BIGINT NOT NULL, 
	order_id BIGINT NOT NULL, 
	sku VARCHAR(64) NOT NULL, 
	product_name VARCHAR(255), 
	category VARCHAR(255), 
	quantity INTEGER NOT NULL, 
	unit_price NUMERIC(12, 2) NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(order_id) REFERENCES orders (id)
);

CREATE INDEX ix_order_items_order_id ON order_items (order_id);

CREATE TABLE carts (
	id BIGINT NOT NULL, 
	customer_id BIGINT, 
	anonymous_id VARCHAR(64), 
	email VARCHAR(320), 
	created_at DATETIME(6), 
	updated_at DATETIME(6), 
	checkout_started_at DATETIME(6), 
	converted_order_id BIGINT, 
	PRIMARY KEY (id)
);

CREATE INDEX ix_carts_anonymous_id ON carts (anonymous_id);

CREATE INDEX ix_carts_checkout_started_at ON carts (checkout_started_at);

CREATE INDEX ix_carts_updated_at ON carts (updated_at);

CREATE TABLE cart_items (
	id BIGINT NOT NULL, 
	cart_id BIGINT NOT NULL, 
	sku VARCHAR(64) NOT NULL, 
	product_name VARCHAR(255), 
	category VARCHAR(255), 
	quantity INTEGER NOT NULL, 
	unit_price NUMERIC(12, 2) NOT NULL, 
	updated_at DATETIME(6), 
	PRIMARY KEY (id), 
	FOREIGN KEY(cart_id) REFERENCES carts (id)
);

CREATE INDEX ix_cart_items_cart_id ON cart_items (cart_id);

CREATE TABLE refunds (
	id BIGINT NOT NULL, 
	order_id BIGINT NOT NULL, 
	amount NUMERIC(12, 2) NOT NULL, 
	reason VARCHAR(255), 
	created_at DATETIME(6), 
	PRIMARY KEY (id), 
	FOREIGN KEY(order_id) REFERENCES orders (id)
);

CREATE INDEX ix_refunds_created_at ON refunds (created_at);

CREATE INDEX ix_refunds_order_id ON refunds (order_id);

CREATE TABLE subscriptions (
	id BIGINT NOT NULL, 
	customer_id BIGINT NOT NULL, 
	sku VARCHAR(64) NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	started_at DATETIME(6), 
	canceled_at DATETIME(6), 
	cancel_reason VARCHAR(255), 
	updated_at DATETIME(6), 
	PRIMARY KEY (id)
);

CREATE INDEX ix_subscriptions_customer_id ON subscriptions (customer_id);

CREATE INDEX ix_subscriptions_updated_at ON subscriptions (updated_at);

CREATE TABLE identity_links (
	anonymous_id VARCHAR(64) NOT NULL, 
	customer_id BIGINT NOT NULL, 
	linked_at DATETIME(6)
);

CREATE INDEX ix_identity_links_anonymous_id ON identity_links (anonymous_id);
