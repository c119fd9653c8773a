//! Integration tests: the real application on 127.0.0.1:0, b.well played by wiremock over HTTP.

mod audit;
mod browser;
mod create_health_link;
mod embedded;
mod faults;
mod front_door;
mod health;
mod helpers;
mod http_transport;
mod idempotency;
mod import_bundle;
mod manifest_protocol;
mod metrics;
mod operation_limits;
mod properties;
mod qr;
mod ratelimit;
mod replicas;
mod schema_contract;
mod secrets;
mod tls;
mod upstream_errors;
