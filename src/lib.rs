//! shl-gateway: a GraphQL gateway for SMART Health Links.
//!
//! An app sends b.well's `createHealthLink` mutation here and gets back, in one round trip, the
//! link, its QR code, its passcode and its validity.
//!
//! # Module map, top down
//!
//! Imports point down this list or sideways within an item, never up, and no two modules import
//! each other.
//!
//! - [`startup`]: `Application::build` (bind, assemble) and `run_until_stopped` (serve, drain);
//!   [`config`]: the command line by concern, each group converting into its module's settings;
//!   [`telemetry`]: the tracing subscriber (text or JSON lines), the optional OTLP exporter.
//! - [`http`]: everything HTTP: the connection loop and its limits, routes and middleware,
//!   GraphQL over HTTP, the SHL data plane, viewer and attestation JWKS of embedded mode, health,
//!   GraphiQL, the client address, work slots.
//! - [`graphql`]: the schema, resolvers (adapters over [`links`]), operation limits; knows
//!   nothing of HTTP.
//! - [`links`]: the link service, the workflow of every operation on links (create, list,
//!   revoke, the SHL accesses) and the audit trail's ordering rules, for both issuers;
//!   [`idempotency`]: `Idempotency-Key` replays of `createHealthLink`, sealed per caller.
//! - `bridge`: upstream mode's Kill the Clipboard bridge (`--ktc-bridge`), the `Issuer` that
//!   resolves b.well's passcode link through [`receiver`] and reissues it as a direct link of the
//!   embedded issuer.
//! - [`issuer`]: the `Issuer` trait the link service calls, the types of a link request and
//!   answer, and the embedded issuer (store, the IPS document of passcode links, the Kill the
//!   Clipboard PatientSharedBundle and its PDFs for direct links, tickets); no HTTP, no audit. `upstream`: the
//!   b.well client, the other `Issuer`.
//! - [`audit`]: the tamper-evident audit trail (HMAC chain; file or PostgreSQL), verify, export;
//!   [`ratelimit`]: GCRA quotas in process (governor) and across replicas (Redis), the policy of
//!   which quota applies to what; [`passcode`]: CSPRNG passcodes, peppered argon2id hashing;
//!   [`qr`]: QR encoding, compact SVG and the bounded renderer.
//! - [`receiver`]: the receiver side of SMART Health Links (what an EHR does with a link):
//!   decode, payload rules (SHL and Kill the Clipboard), retrieval through a hardened HTTP
//!   client, decryption, the content's profile, the app attestation; [`inspect`]: the
//!   `inspect` command's stage-by-stage report over it.
//! - [`crypto`]: the keys (the secret, per-purpose keys, SHL and audit keys), HMAC and JWE, and
//!   the app attestation of DIRECT links (P-256 keys, the ES256 JWT, the JWKS, and verifying
//!   one against a JWKS).
//! - Leaves: [`error`] (`AppError` and the closed list of codes clients see), [`clock`] (the one
//!   clock), [`text`] (text rules for inputs), `demo` (demo mode's development token, kept in
//!   the data directory), `metrics` (the recorder and every metric's name),
//!   `readiness` (bounded probes, transitions logged once), `files` (the data directory `0700`,
//!   its files `0600`), `database` (the database URLs taken, a first connection said in words).
//!
//! # Public surface
//!
//! The crate is a binary's library: what is `pub` here is what `main`, the API tests
//! (`tests/api`) and the benchmarks reach, nothing more. `main` runs [`startup::Application`]
//! from a [`config::Cli`], and the `audit`, `import-bundle` and `inspect` commands. The tests
//! and benchmarks also drive the parts they measure or check on their own: the QR encoder, JWE
//! and keys, passcodes, location tickets, the IPS builder, the store, the quota store and
//! policy, the client-address walk, the executor, the link service and the receiver's stages
//! (whose settings also carry what only tests need: a resolver override, an extra CA).
//! Everything else is `pub(crate)` or private, and `unreachable_pub` (Cargo.toml) keeps any
//! `pub` honest, so the compiler reports dead code instead of taking it for API.

pub mod audit;
mod bridge;
pub mod clock;
pub mod config;
pub mod crypto;
mod database;
mod demo;
pub mod error;
mod files;
pub mod graphql;
pub mod http;
pub mod idempotency;
pub mod inspect;
pub mod issuer;
pub mod links;
mod metrics;
pub mod passcode;
pub mod qr;
pub mod ratelimit;
mod readiness;
pub mod receiver;
pub mod startup;
pub mod telemetry;
pub mod text;
mod upstream;
