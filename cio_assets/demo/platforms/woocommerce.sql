-- WooCommerce (High-Performance Order Storage) on WordPress, with MailPoet: the tables a retention feed reads.
--
-- Each CREATE TABLE is the platform's own string with $wpdb->prefix = 'wp_' (the loader, platforms/ddl.py,
-- substitutes another prefix in the table names only), $collate = the utf8mb4 collation WordPress picks and
-- $max_index_length = 191. Nothing added; tables the feed does not read are left out.
--
-- Checked, column by column and index by index, against (read through the code index, 2026):
--   github.com/WordPress/wordpress-develop @ 01501ab4787d053da5eb1425696ec3363d3adf4c
--     src/wp-admin/includes/schema.php, wp_get_db_schema(), single-site users:   wp_users, wp_usermeta
--   github.com/woocommerce/woocommerce @ 000233cc9f474bf75440ea306801f663f40b90e2
--     plugins/woocommerce/src/Internal/DataStores/Orders/OrdersTableDataStore.php, get_database_schema():
--       wp_wc_orders, wp_wc_order_addresses, wp_wc_order_operational_data, wp_wc_orders_meta
--       (customer_id_billing_email prefix 191 - 20 = 171; orders meta value prefix 191 - 8 - 100 - 1 = 82)
--   github.com/woocommerce/woocommerce @ 0129f1922d587d3adbf2e0987dd50d198adb6643
--     plugins/woocommerce/includes/class-wc-install.php, get_schema():
--       wp_woocommerce_order_items, wp_woocommerce_order_itemmeta, wp_wc_order_product_lookup
--       (date_created DEFAULT CURRENT_TIMESTAMP: the branch taken on MySQL >= 5.6 and on every MariaDB)
--   wp_posts (src/wp-admin/includes/schema.php at 01501ab, as above: WordPress's privacy requests are posts of type
--     user_request) and wp_wc_product_meta_lookup (class-wc-install.php, get_schema(), as copied in
--     ../shared/platform-schemas at aa094f1b8114883a86120cc48af22ebadd7b0784: a product's SKU), which the
--     woocommerce preset reads too
--   github.com/mailpoet/mailpoet @ 102ed8529e2cf5010abc7f57ec9549a0c1a5a945
--     mailpoet/lib/Migrations/Db/Migration_20221028_105818.php, subscribers() (moved there from
--     lib/Config/Migrator.php): wp_mailpoet_subscribers
--
-- Differences from ../shared/platform-schemas/woocommerce-hpos.sql (which copied older commits):
-- * wp_wc_order_product_lookup: PRIMARY KEY (order_item_id, order_id), not (order_item_id); a new
--   KEY customer_product_date (customer_id, product_id, date_created); date_created defaults to CURRENT_TIMESTAMP.
-- * (not copied here) wp_woocommerce_sessions gained KEY session_expiry; wp_wc_customer_lookup gained
--   billing_phone and shipping_phone; wp_posts at 01501ab has no type_status_post_date_gmt /
--   type_status_modified_date_gmt keys.
-- * MailPoet's string defaults are written with single quotes as in the migration (the shared copy's double
--   quotes break under sql_mode ANSI_QUOTES).
--
-- Conventions a feed must know (the platforms', not this project's):
-- * Customers are wp_users whose wp_usermeta 'wp_capabilities' (the key carries the prefix) is a PHP-serialised
--   role array, e.g. a:1:{s:8:"customer";b:1;}. Administrators and shop managers are users too.
-- * Names, phone and country are usermeta: first_name, last_name, billing_first_name, billing_last_name,
--   billing_phone, billing_country, billing_email. Nothing stops a key being written twice for one user.
-- * wp_users.user_registered is UTC. wp_users has no change time (WooCommerce writes usermeta 'last_update',
--   Unix seconds, when it saves a customer).
-- * Orders and refunds share wp_wc_orders: type 'shop_order' or 'shop_order_refund' (parent_order_id = the
--   refunded order, total_amount negative; amount and reason also in wp_wc_orders_meta _refund_amount and
--   _refund_reason). Statuses carry 'wc-': wc-pending, wc-processing, wc-on-hold, wc-completed, wc-cancelled,
--   wc-refunded, wc-failed, wc-checkout-draft, plus what plugins register. Refund rows have status
--   wc-completed. Guests have customer_id 0, not NULL, and their e-mail in billing_email.
-- * *_gmt columns are DATETIME in UTC. Order ids are not AUTO_INCREMENT (HPOS takes them from a placeholder
--   row in wp_posts). date_paid_gmt is in wp_wc_order_operational_data, set when payment completes.
-- * wp_wc_order_product_lookup.date_created is the site's local time, and the table is filled asynchronously.
-- * Core WooCommerce keeps no marketing consent and no cart table. MailPoet's status: subscribed,
--   unsubscribed, unconfirmed, inactive, bounced. Its TIMESTAMP columns are written with WordPress' UTC times.

CREATE TABLE wp_users (
	ID bigint(20) unsigned NOT NULL auto_increment,
	user_login varchar(60) NOT NULL default '',
	user_pass varchar(255) NOT NULL default '',
	user_nicename varchar(50) NOT NULL default '',
	user_email varchar(100) NOT NULL default '',
	user_url varchar(100) NOT NULL default '',
	user_registered datetime NOT NULL default '0000-00-00 00:00:00',
	user_activation_key varchar(255) NOT NULL default '',
	user_status int(11) NOT NULL default '0',
	display_name varchar(250) NOT NULL default '',
	PRIMARY KEY  (ID),
	KEY user_login_key (user_login),
	KEY user_nicename (user_nicename),
	KEY user_email (user_email)
) DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_520_ci;

CREATE TABLE wp_usermeta (
	umeta_id bigint(20) unsigned NOT NULL auto_increment,
	user_id bigint(20) unsigned NOT NULL default '0',
	meta_key varchar(255) default NULL,
	meta_value longtext,
	PRIMARY KEY  (umeta_id),
	KEY user_id (user_id),
	KEY meta_key (meta_key(191))
) DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_520_ci;

CREATE TABLE wp_wc_orders (
	id bigint(20) unsigned,
	status varchar(20) null,
	currency varchar(10) null,
	type varchar(20) null,
	tax_amount decimal(26,8) null,
	total_amount decimal(26,8) null,
	customer_id bigint(20) unsigned null,
	billing_email varchar(320) null,
	date_created_gmt datetime null,
	date_updated_gmt datetime null,
	parent_order_id bigint(20) unsigned null,
	payment_method varchar(100) null,
	payment_method_title text null,
	transaction_id varchar(100) null,
	ip_address varchar(100) null,
	user_agent text null,
	customer_note text null,
	PRIMARY KEY (id),
	KEY status (status),
	KEY date_created (date_created_gmt),
	KEY customer_id_billing_email (customer_id, billing_email(171)),
	KEY billing_email (billing_email(191)),
	KEY type_status_date (type, status, date_created_gmt),
	KEY parent_order_id (parent_order_id),
	KEY date_updated (date_updated_gmt)
) DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_520_ci;

CREATE TABLE wp_wc_order_addresses (
	id bigint(20) unsigned auto_increment primary key,
	order_id bigint(20) unsigned NOT NULL,
	address_type varchar(20) null,
	first_name text null,
	last_name text null,
	company text null,
	address_1 text null,
	address_2 text null,
	city text null,
	state text null,
	postcode text null,
	country text null,
	email varchar(320) null,
	phone varchar(100) null,
	KEY order_id (order_id),
	UNIQUE KEY address_type_order_id (address_type, order_id),
	KEY email (email(191)),
	KEY phone (phone)
) DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_520_ci;

CREATE TABLE wp_wc_order_operational_data (
	id bigint(20) unsigned auto_increment primary key,
	order_id bigint(20) unsigned NULL,
	created_via varchar(100) NULL,
	woocommerce_version varchar(20) NULL,
	prices_include_tax tinyint(1) NULL,
	coupon_usages_are_counted tinyint(1) NULL,
	download_permission_granted tinyint(1) NULL,
	cart_hash varchar(100) NULL,
	new_order_email_sent tinyint(1) NULL,
	order_key varchar(100) NULL,
	order_stock_reduced tinyint(1) NULL,
	date_paid_gmt datetime NULL,
	date_completed_gmt datetime NULL,
	shipping_tax_amount decimal(26,8) NULL,
	shipping_total_amount decimal(26,8) NULL,
	discount_tax_amount decimal(26,8) NULL,
	discount_total_amount decimal(26,8) NULL,
	recorded_sales tinyint(1) NULL,
	UNIQUE KEY order_id (order_id),
	KEY order_key (order_key)
) DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_520_ci;

CREATE TABLE wp_wc_orders_meta (
	id bigint(20) unsigned auto_increment primary key,
	order_id bigint(20) unsigned null,
	meta_key varchar(255),
	meta_value text null,
	KEY meta_key_value (meta_key(100), meta_value(82)),
	KEY order_id_meta_key_meta_value (order_id, meta_key(100), meta_value(82))
) DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_520_ci;

CREATE TABLE wp_woocommerce_order_items (
  order_item_id bigint(20) unsigned NOT NULL auto_increment,
  order_item_name text NOT NULL,
  order_item_type varchar(200) NOT NULL DEFAULT '',
  order_id bigint(20) unsigned NOT NULL,
  PRIMARY KEY  (order_item_id),
  KEY order_id (order_id)
) DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_520_ci;

CREATE TABLE wp_woocommerce_order_itemmeta (
  meta_id bigint(20) unsigned NOT NULL auto_increment,
  order_item_id bigint(20) unsigned NOT NULL,
  meta_key varchar(255) default NULL,
  meta_value longtext NULL,
  PRIMARY KEY  (meta_id),
  KEY order_item_id (order_item_id),
  KEY meta_key (meta_key(32))
) DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_520_ci;

CREATE TABLE wp_posts (
	ID bigint(20) unsigned NOT NULL auto_increment,
	post_author bigint(20) unsigned NOT NULL default '0',
	post_date datetime NOT NULL default '0000-00-00 00:00:00',
	post_date_gmt datetime NOT NULL default '0000-00-00 00:00:00',
	post_content longtext NOT NULL,
	post_title text NOT NULL,
	post_excerpt text NOT NULL,
	post_status varchar(20) NOT NULL default 'publish',
	comment_status varchar(20) NOT NULL default 'open',
	ping_status varchar(20) NOT NULL default 'open',
	post_password varchar(255) NOT NULL default '',
	post_name varchar(200) NOT NULL default '',
	to_ping text NOT NULL,
	pinged text NOT NULL,
	post_modified datetime NOT NULL default '0000-00-00 00:00:00',
	post_modified_gmt datetime NOT NULL default '0000-00-00 00:00:00',
	post_content_filtered longtext NOT NULL,
	post_parent bigint(20) unsigned NOT NULL default '0',
	guid varchar(255) NOT NULL default '',
	menu_order int(11) NOT NULL default '0',
	post_type varchar(20) NOT NULL default 'post',
	post_mime_type varchar(100) NOT NULL default '',
	comment_count bigint(20) NOT NULL default '0',
	PRIMARY KEY  (ID),
	KEY post_name (post_name(191)),
	KEY type_status_date (post_type,post_status,post_date,ID),
	KEY post_parent (post_parent),
	KEY post_author (post_author)
) DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_520_ci;

CREATE TABLE wp_wc_product_meta_lookup (
  `product_id` bigint(20) NOT NULL,
  `sku` varchar(100) NULL default '',
  `global_unique_id` varchar(100) NULL default '',
  `virtual` tinyint(1) NULL default 0,
  `downloadable` tinyint(1) NULL default 0,
  `min_price` decimal(19,4) NULL default NULL,
  `max_price` decimal(19,4) NULL default NULL,
  `onsale` tinyint(1) NULL default 0,
  `stock_quantity` double NULL default NULL,
  `stock_status` varchar(100) NULL default 'instock',
  `rating_count` bigint(20) NULL default 0,
  `average_rating` decimal(3,2) NULL default 0.00,
  `total_sales` bigint(20) NULL default 0,
  `tax_status` varchar(100) NULL default 'taxable',
  `tax_class` varchar(100) NULL default '',
  PRIMARY KEY  (`product_id`),
  KEY `virtual` (`virtual`),
  KEY `downloadable` (`downloadable`),
  KEY `stock_status` (`stock_status`),
  KEY `stock_quantity` (`stock_quantity`),
  KEY `onsale` (`onsale`),
  KEY min_max_price (`min_price`, `max_price`),
  KEY sku (sku(50))
) DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_520_ci;

CREATE TABLE wp_wc_order_product_lookup (
	order_item_id bigint(20) unsigned NOT NULL,
	order_id bigint(20) unsigned NOT NULL,
	product_id bigint(20) unsigned NOT NULL,
	variation_id bigint(20) unsigned NOT NULL,
	customer_id bigint(20) unsigned NULL,
	date_created datetime DEFAULT CURRENT_TIMESTAMP NOT NULL,
	product_qty int(11) NOT NULL,
	product_net_revenue double DEFAULT 0 NOT NULL,
	product_gross_revenue double DEFAULT 0 NOT NULL,
	coupon_amount double DEFAULT 0 NOT NULL,
	tax_amount double DEFAULT 0 NOT NULL,
	shipping_amount double DEFAULT 0 NOT NULL,
	shipping_tax_amount double DEFAULT 0 NOT NULL,
	PRIMARY KEY  (order_item_id, order_id),
	KEY order_id (order_id),
	KEY product_id (product_id),
	KEY customer_id (customer_id),
	KEY date_created (date_created),
	KEY customer_product_date (customer_id, product_id, date_created)
) DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_520_ci;

CREATE TABLE wp_mailpoet_subscribers (
  id int(11) unsigned NOT NULL AUTO_INCREMENT,
  wp_user_id bigint(20) NULL,
  is_woocommerce_user int(1) NOT NULL DEFAULT 0,
  first_name varchar(255) NOT NULL DEFAULT '',
  last_name varchar(255) NOT NULL DEFAULT '',
  email varchar(150) NOT NULL,
  status varchar(12) NOT NULL DEFAULT 'unconfirmed',
  subscribed_ip varchar(45) NULL,
  confirmed_ip varchar(45) NULL,
  confirmed_at timestamp NULL,
  last_subscribed_at timestamp NULL,
  created_at timestamp NULL,
  updated_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  deleted_at timestamp NULL,
  unconfirmed_data longtext,
  source enum('form','imported','administrator','api','wordpress_user','woocommerce_user','woocommerce_checkout','unknown') DEFAULT 'unknown',
  count_confirmations int(11) unsigned NOT NULL DEFAULT 0,
  unsubscribe_token char(15) NULL,
  link_token char(32) NULL,
  engagement_score FLOAT unsigned NULL,
  engagement_score_updated_at timestamp NULL,
  last_engagement_at timestamp NULL,
  woocommerce_synced_at timestamp NULL,
  email_count int(11) unsigned NOT NULL DEFAULT 0,
  PRIMARY KEY  (id),
  UNIQUE KEY email (email),
  UNIQUE KEY unsubscribe_token (unsubscribe_token),
  KEY wp_user_id (wp_user_id),
  KEY updated_at (updated_at),
  KEY status_deleted_at (status,deleted_at),
  KEY last_subscribed_at (last_subscribed_at),
  KEY engagement_score_updated_at (engagement_score_updated_at),
  KEY link_token (link_token)
) DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_520_ci;
