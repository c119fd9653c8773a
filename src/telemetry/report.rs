//! A failed command as the operator reads it on stderr: the error, then one line per cause.

/// `error` and its causes, one per line (`  caused by: ...` after the first). A cause whose text
/// the lines before already hold is left out: many errors (sqlx's, and wrappers of I/O errors)
/// put their source's text in their own message *and* return it from `source()`, which printed
/// "connection refused" two or three times in one line. The gateway's own error types do one or
/// the other (a test below holds them to it); this catches everyone else's.
pub fn report(error: &anyhow::Error) -> String {
    let mut lines: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if lines.iter().any(|line| line.contains(&text)) {
            continue;
        }
        lines.push(text);
    }
    lines.join("\n  caused by: ")
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;
    use crate::audit::AuditError;
    use crate::issuer::store::StoreError;

    fn refused() -> io::Error {
        io::Error::new(io::ErrorKind::ConnectionRefused, "Connection refused")
    }

    #[test]
    fn each_cause_is_said_once_on_its_own_line() {
        // sqlx's I/O error says its source in its message and returns it from `source()`.
        let error = anyhow::Error::new(sqlx::Error::Io(refused())).context("cannot open the store");

        let report = report(&error);

        assert_eq!(
            report,
            "cannot open the store\n  caused by: error communicating with database: Connection refused"
        );
    }

    #[test]
    fn causes_that_add_something_are_all_kept() {
        let error = anyhow::Error::new(refused())
            .context("cannot read /etc/shl/key")
            .context("--secret-key-file (SHL_GATEWAY_SECRET_KEY_FILE)");

        assert_eq!(report(&error).lines().count(), 3, "{}", report(&error));
    }

    #[test]
    fn the_gateways_errors_never_say_their_cause_twice() {
        let errors: Vec<Box<dyn std::error::Error>> = vec![
            Box::new(StoreError::Database(sqlx::Error::Io(refused()))),
            Box::new(StoreError::Migration(sqlx::migrate::MigrateError::Execute(
                sqlx::Error::Io(refused()),
            ))),
            Box::new(AuditError::Io(refused())),
            Box::new(AuditError::Database(sqlx::Error::Io(refused()))),
            Box::new(AuditError::Encode(
                serde_json::from_str::<u8>("x").expect_err("not JSON"),
            )),
        ];
        for error in errors {
            let text = error.to_string();
            if let Some(source) = error.source() {
                assert!(
                    !text.contains(&source.to_string()),
                    "{text} also returns its cause from source()"
                );
            }
        }
    }
}
