-- Reference source schema for cio-assets (MySQL/MariaDB). Generated from cio_assets/schema/shop.py.
CREATE TABLE customers (
	id BIGINT NOT NULL COMMENT 'Customer id', 
	email VARCHAR(320) COMMENT 'E-mail as typed (normalised and validated by the pipeline)', 
	phone VARCHAR(64) COMMENT 'Phone as typed, any format (made E.164 by the pipeline, reading national formats by country)', 
	first_name VARCHAR(255) COMMENT 'First name', 
	last_name VARCHAR(255) COMMENT 'Last name', 
	country CHAR(2) COMMENT 'ISO 3166 country code, for national phone formats', 
	accepts_email_marketing BOOL COMMENT 'E-mail marketing consent: 1 opted in, 0 opted out, NULL never asked (unknown: never unsubscribes)', 
	accepts_sms_marketing BOOL COMMENT 'SMS marketing consent: 1 opted in, 0 opted out, NULL never asked (unknown)', 
	created_at DATETIME(6) COMMENT 'When the account was created', 
	updated_at DATETIME(6) COMMENT 'Last change to the row (the sensor''s high-water mark)', 
	PRIMARY KEY (id)
)COMMENT='One row per customer account';

CREATE INDEX ix_customers_email ON customers (email);

CREATE INDEX ix_customers_updated_at ON customers (updated_at);

CREATE TABLE orders (
	id BIGINT NOT NULL COMMENT 'Order id', 
	customer_id BIGINT COMMENT 'The customer, or null for a guest checkout', 
	email VARCHAR(320) COMMENT 'Checkout e-mail (links guest orders to people)', 
	cart_id BIGINT COMMENT 'The cart the order came from, if any', 
	status VARCHAR(32) NOT NULL COMMENT 'pending, paid, payment_failed, cancelled or refunded (ORDER_STATUSES)', 
	currency CHAR(3) NOT NULL COMMENT 'ISO 4217 currency code', 
	subtotal NUMERIC(12, 2) NOT NULL COMMENT 'Sum of the lines', 
	discount_total NUMERIC(12, 2) NOT NULL COMMENT 'Discounts applied', 
	shipping_total NUMERIC(12, 2) NOT NULL COMMENT 'Shipping charged', 
	total NUMERIC(12, 2) NOT NULL COMMENT 'Amount paid', 
	discount_code VARCHAR(64) COMMENT 'Discount code used, if any', 
	created_at DATETIME(6) COMMENT 'When the order was placed', 
	paid_at DATETIME(6) COMMENT 'When payment succeeded; null until then', 
	updated_at DATETIME(6) COMMENT 'Last change to the row', 
	PRIMARY KEY (id)
)COMMENT='One row per order, paid or not';

CREATE INDEX ix_orders_cart_id ON orders (cart_id);

CREATE INDEX ix_orders_customer_id ON orders (customer_id);

CREATE INDEX ix_orders_email ON orders (email);

CREATE INDEX ix_orders_paid_at ON orders (paid_at);

CREATE INDEX ix_orders_updated_at ON orders (updated_at);

CREATE TABLE order_items (
	id BIGINT NOT NULL COMMENT 'Line id', 
	order_id BIGINT NOT NULL COMMENT 'The order', 
	sku VARCHAR(64) NOT NULL COMMENT 'Product SKU', 
	product_name VARCHAR(255) COMMENT 'Product name', 
	category VARCHAR(255) COMMENT 'Product category', 
	quantity INTEGER NOT NULL COMMENT 'Units', 
	unit_price NUMERIC(12, 2) NOT NULL COMMENT 'Price per unit', 
	PRIMARY KEY (id), 
	FOREIGN KEY(order_id) REFERENCES orders (id)
)COMMENT='One row per order line';

CREATE INDEX ix_order_items_order_id ON order_items (order_id);

CREATE TABLE carts (
	id BIGINT NOT NULL COMMENT 'Cart id', 
	customer_id BIGINT COMMENT 'The customer, if logged in', 
	anonymous_id VARCHAR(64) COMMENT 'The visitor''s anonymous id', 
	email VARCHAR(320) COMMENT 'E-mail given at checkout, if any', 
	created_at DATETIME(6) COMMENT 'When the cart was created', 
	updated_at DATETIME(6) COMMENT 'Last change to the cart (idle carts are abandoned after CIO_CART_IDLE_MINUTES)', 
	checkout_started_at DATETIME(6) COMMENT 'When checkout started, if it did', 
	converted_order_id BIGINT COMMENT 'The order it became, if any', 
	PRIMARY KEY (id)
)COMMENT='One row per shopping cart, of a customer or an anonymous visitor';

CREATE INDEX ix_carts_anonymous_id ON carts (anonymous_id);

CREATE INDEX ix_carts_checkout_started_at ON carts (checkout_started_at);

CREATE INDEX ix_carts_updated_at ON carts (updated_at);

CREATE TABLE cart_items (
	id BIGINT NOT NULL COMMENT 'Line id', 
	cart_id BIGINT NOT NULL COMMENT 'The cart', 
	sku VARCHAR(64) NOT NULL COMMENT 'Product SKU', 
	product_name VARCHAR(255) COMMENT 'Product name', 
	category VARCHAR(255) COMMENT 'Product category', 
	quantity INTEGER NOT NULL COMMENT 'Units', 
	unit_price NUMERIC(12, 2) NOT NULL COMMENT 'Price per unit', 
	updated_at DATETIME(6) COMMENT 'Last change to the line', 
	PRIMARY KEY (id), 
	FOREIGN KEY(cart_id) REFERENCES carts (id)
)COMMENT='One row per cart line';

CREATE INDEX ix_cart_items_cart_id ON cart_items (cart_id);

CREATE INDEX ix_cart_items_updated_at ON cart_items (updated_at);

CREATE TABLE refunds (
	id BIGINT NOT NULL COMMENT 'Refund id', 
	order_id BIGINT NOT NULL COMMENT 'The refunded order', 
	amount NUMERIC(12, 2) NOT NULL COMMENT 'Amount refunded', 
	reason VARCHAR(255) COMMENT 'Why, as entered', 
	created_at DATETIME(6) COMMENT 'When the refund was issued', 
	PRIMARY KEY (id), 
	FOREIGN KEY(order_id) REFERENCES orders (id)
)COMMENT='One row per refund';

CREATE INDEX ix_refunds_created_at ON refunds (created_at);

CREATE INDEX ix_refunds_order_id ON refunds (order_id);

CREATE TABLE subscriptions (
	id BIGINT NOT NULL COMMENT 'Subscription id', 
	customer_id BIGINT NOT NULL COMMENT 'The subscriber', 
	sku VARCHAR(64) NOT NULL COMMENT 'Subscribed product SKU', 
	status VARCHAR(16) NOT NULL COMMENT 'active, paused or canceled (SUBSCRIPTION_STATUSES)', 
	started_at DATETIME(6) COMMENT 'When it started', 
	canceled_at DATETIME(6) COMMENT 'When it was canceled, if it was', 
	cancel_reason VARCHAR(255) COMMENT 'Why, as entered', 
	updated_at DATETIME(6) COMMENT 'Last change to the row', 
	PRIMARY KEY (id)
)COMMENT='One row per product subscription';

CREATE INDEX ix_subscriptions_customer_id ON subscriptions (customer_id);

CREATE INDEX ix_subscriptions_updated_at ON subscriptions (updated_at);

CREATE TABLE identity_links (
	anonymous_id VARCHAR(64) NOT NULL COMMENT 'The visitor''s anonymous id', 
	customer_id BIGINT NOT NULL COMMENT 'The customer it belongs to', 
	linked_at DATETIME(6) COMMENT 'When the link was made'
)COMMENT='Anonymous visitor ids linked to customers (e.g. at login)';

CREATE INDEX ix_identity_links_anonymous_id ON identity_links (anonymous_id);

CREATE TABLE erasure_requests (
	customer_id BIGINT COMMENT 'The customer to erase, if known by id', 
	email VARCHAR(320) COMMENT 'The e-mail to erase, as typed (normalised by the pipeline)', 
	requested_at DATETIME(6) NOT NULL COMMENT 'When the person asked'
)COMMENT='Right-to-erasure requests (GDPR/CCPA), by customer id or e-mail; optional';
