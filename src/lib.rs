//! shl-gateway: a GraphQL gateway for SMART Health Links.
//!
//! An app sends b.well's `createHealthLink` mutation here and gets back, in one round trip, the
//! link, its QR code, its passcode and its validity. Module map:
//!
//! - [`clock`]: the one clock of the store and the issuer (milliseconds since the epoch).
//! - [`audit`]: the tamper-evident audit trail (HMAC chain; file or PostgreSQL), verify, export.
//! - [`config`]: the typed command line and environment, validated at startup.
//! - [`startup`]: `Application::build` (bind, assemble) and `run_until_stopped` (serve, drain).
//! - [`telemetry`]: the tracing subscriber (text or JSON lines), the optional OTLP exporter.
//! - [`error`]: `AppError` and the closed list of error codes clients see.
//! - [`http`]: everything HTTP: the connection loop and its limits, routes and middleware,
//!   GraphQL over HTTP, the SHL data plane and viewer of embedded mode, health, GraphiQL, the
//!   client address, work slots.
//! - [`graphql`]: the schema, resolvers (adapters over [`links`]), operation limits; knows
//!   nothing of HTTP.
//! - [`links`]: the link service, the workflow of every operation on links (create, list,
//!   revoke, the SHL accesses) and the audit trail's ordering rules, for both issuers.
//! - [`idempotency`]: `Idempotency-Key` replays of `createHealthLink`, sealed per caller.
//! - [`issuer`]: the `Issuer` trait the link service calls, the types of a link request and
//!   answer, and the embedded issuer (store, IPS, tickets); no HTTP, no audit.
//! - [`upstream`]: the b.well client, an `Issuer` that relays to the upstream API.
//! - [`qr`]: QR encoding and compact SVG rendering.
//! - [`ratelimit`]: GCRA quotas, in process (governor) and shared across replicas (Redis), the
//!   policy of which quota applies to what, address keys.
//! - [`passcode`]: CSPRNG passcode generation and validation, peppered argon2id hashing.
//! - [`crypto`]: the keys (the secret, per-purpose keys, SHL and audit keys), HMAC, and JWE.
//! - [`files`]: the data directory `0700` and its files `0600`, whatever the umask.
//! - [`metrics`]: the Prometheus recorder and the names of what is counted.
//! - [`readiness`]: bounded readiness probes, and each dependency's transitions logged once.
//! - [`text`]: text rules shared by inputs (invisible format characters refused).

pub mod audit;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod error;
pub mod files;
pub mod graphql;
pub mod http;
pub mod idempotency;
pub mod issuer;
pub mod links;
pub mod metrics;
pub mod passcode;
pub mod qr;
pub mod ratelimit;
pub mod readiness;
pub mod startup;
pub mod telemetry;
/// Text rules shared by inputs that are stored and shown to a person.
pub mod text;
pub mod upstream;
