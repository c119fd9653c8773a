//! What the embedded store and the audit trail share about reaching a database: which URLs the
//! gateway takes, and a first connection whose failure an operator can read.
//!
//! sqlx's pool retries a refused connection until its acquire timeout, then reports only "pool
//! timed out while waiting for an open connection"; its errors also carry their cause twice (in
//! the message and as the source). So startup makes one connection first, bounded, and says in a
//! line why it failed: connection refused, the name not found, no answer in time, or the server's
//! own message. Neither the URL nor a part of it that could hold a password is ever repeated:
//! the target is named by host and port, or by the SQLite file.

use std::str::FromStr as _;
use std::time::Duration;

use sqlx::Connection as _;

/// The form of each URL the gateway takes, for messages.
pub(crate) const ACCEPTED_URLS: &str =
    "sqlite://PATH?mode=rwc (a file) or postgres://USER:PASSWORD@HOST:5432/DATABASE";

/// The longest wait for the first connection, as long as the pools wait for one.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The databases the gateway speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DatabaseKind {
    Sqlite,
    Postgres,
}

impl DatabaseKind {
    /// Which database `url` names, or why the gateway takes no such URL. The message names the
    /// accepted forms and repeats nothing of `url` but its scheme, or a file path written where
    /// a URL belongs (neither holds a password).
    pub(crate) fn of(url: &str) -> Result<Self, String> {
        let scheme = url
            .split_once(':')
            .map(|(scheme, _)| scheme)
            .filter(|scheme| {
                let mut chars = scheme.chars();
                chars
                    .next()
                    .is_some_and(|first| first.is_ascii_alphabetic())
                    && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
            });
        match scheme.map(str::to_ascii_lowercase).as_deref() {
            Some("sqlite") => Ok(Self::Sqlite),
            Some("postgres" | "postgresql") => Ok(Self::Postgres),
            Some(other) => Err(format!(
                "{other}: URLs are not supported; use {ACCEPTED_URLS}"
            )),
            None if looks_like_a_path(url) => Err(format!(
                "{url} is a file path, not a URL; for a SQLite file write sqlite://{url}?mode=rwc"
            )),
            None => Err(format!("not a database URL; use {ACCEPTED_URLS}")),
        }
    }
}

fn looks_like_a_path(text: &str) -> bool {
    text.starts_with(['/', '.', '~']) && !text.contains('@')
}

/// A first connection failed: where to, and why, in words.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to {target}: {reason}")]
pub(crate) struct ConnectError {
    target: String,
    reason: String,
}

/// Opens one connection to `url` and closes it, within `timeout`. A refused connection fails at
/// once, instead of after the pool's retries. `url` must be of a [`DatabaseKind`].
pub(crate) async fn check_connection(url: &str, timeout: Duration) -> Result<(), ConnectError> {
    sqlx::any::install_default_drivers();
    let failed = |reason: String| ConnectError {
        target: target_of(url),
        reason,
    };
    match tokio::time::timeout(timeout, sqlx::AnyConnection::connect(url)).await {
        Ok(Ok(connection)) => {
            // Only the opening was in question; a failed goodbye changes nothing.
            let _ = connection.close().await;
            Ok(())
        }
        Ok(Err(error)) => Err(failed(reason_of(&error))),
        Err(_) => Err(failed(format!(
            "no answer within {}s",
            timeout.as_secs_f32()
        ))),
    }
}

/// "PostgreSQL at HOST:PORT" or "the SQLite file PATH": never the user, password or options.
fn target_of(url: &str) -> String {
    match DatabaseKind::of(url) {
        Ok(DatabaseKind::Postgres) => match url::Url::parse(url) {
            Ok(parsed) if parsed.host_str().is_some_and(|host| !host.is_empty()) => format!(
                "PostgreSQL at {}:{}",
                parsed.host_str().unwrap_or_default(),
                parsed.port().unwrap_or(5432)
            ),
            _ => "PostgreSQL".to_owned(),
        },
        Ok(DatabaseKind::Sqlite) => match sqlx::sqlite::SqliteConnectOptions::from_str(url) {
            Ok(options) => format!("the SQLite file {}", options.get_filename().display()),
            Err(_) => "SQLite".to_owned(),
        },
        Err(_) => "the database".to_owned(),
    }
}

/// One line for an operator. sqlx's own `Display` says "error communicating with database:"
/// before the cause, which is the cause's text again once a report walks the sources.
fn reason_of(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Io(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused => {
                "connection refused (is the database running, and listening on that port?)"
                    .to_owned()
            }
            std::io::ErrorKind::TimedOut => "the connection timed out".to_owned(),
            _ => io.to_string(),
        },
        sqlx::Error::Database(database) => database.message().to_owned(),
        sqlx::Error::Tls(tls) => format!("TLS failed: {tls}"),
        sqlx::Error::Configuration(configuration) => {
            format!("the URL is not valid: {configuration}")
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sqlite_and_postgres_urls_are_taken() {
        for (url, kind) in [
            ("sqlite://data/shl.db?mode=rwc", DatabaseKind::Sqlite),
            ("sqlite::memory:", DatabaseKind::Sqlite),
            ("postgres://user:pw@db:5432/shl", DatabaseKind::Postgres),
            ("postgresql://db/shl", DatabaseKind::Postgres),
        ] {
            assert_eq!(DatabaseKind::of(url), Ok(kind), "{url}");
        }
    }

    #[test]
    fn a_refused_url_names_the_accepted_forms_and_never_its_secrets() {
        for url in [
            "mysql://root:hunter2@db/shl",
            "garbage-hunter2",
            "/var/lib/shl/shl.db",
            "./shl.db",
        ] {
            let message = DatabaseKind::of(url).expect_err(url);
            assert!(message.contains("sqlite://"), "{url}: {message}");
            assert!(!message.contains("hunter2"), "{url}: {message}");
            assert!(!message.contains("stored data"), "{url}: {message}");
        }
        let message = DatabaseKind::of("mysql://root:hunter2@db/shl").expect_err("mysql");
        assert!(
            message.starts_with("mysql: URLs are not supported"),
            "{message}"
        );
        assert!(message.contains("postgres://"), "{message}");
        let message = DatabaseKind::of("/var/lib/shl/shl.db").expect_err("a path");
        assert!(
            message.contains("sqlite:///var/lib/shl/shl.db?mode=rwc"),
            "{message}"
        );
    }

    #[test]
    fn a_target_is_named_without_its_credentials() {
        assert_eq!(
            target_of("postgres://user:hunter2@db.internal/shl?sslmode=require"),
            "PostgreSQL at db.internal:5432"
        );
        assert_eq!(
            target_of("postgres://user:hunter2@127.0.0.1:6432/shl"),
            "PostgreSQL at 127.0.0.1:6432"
        );
        assert_eq!(
            target_of("sqlite:///var/lib/shl/shl.db?mode=rwc"),
            "the SQLite file /var/lib/shl/shl.db"
        );
    }

    #[tokio::test]
    async fn a_refused_connection_is_said_at_once() {
        // A port just freed: nothing listens on it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let url = format!("postgres://shl:hunter2@127.0.0.1:{port}/shl");
        let started = std::time::Instant::now();

        let error = check_connection(&url, CONNECT_TIMEOUT)
            .await
            .expect_err("nothing listens");

        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        let message = error.to_string();
        assert!(
            message.starts_with(&format!(
                "cannot connect to PostgreSQL at 127.0.0.1:{port}: connection refused"
            )),
            "{message}"
        );
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[tokio::test]
    async fn a_sqlite_file_that_cannot_be_opened_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!(
            "sqlite://{}?mode=rw",
            dir.path().join("missing.db").display()
        );

        let error = check_connection(&url, CONNECT_TIMEOUT)
            .await
            .expect_err("no such file");

        let message = error.to_string();
        assert!(message.contains("the SQLite file"), "{message}");
        assert!(message.contains("missing.db"), "{message}");
        assert!(
            message.contains("unable to open database file"),
            "{message}"
        );
    }
}
