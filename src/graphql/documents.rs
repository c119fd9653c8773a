//! Parsed documents, kept for the next request that sends the same text.
//!
//! Apps send the same few documents on every request (the seed mutation is one), and parsing
//! with async-graphql's grammar is the largest single step of a request: about 40 µs for the
//! seed mutation on this project's benchmark machine, against a few for a copy of the parsed
//! tree. A document is kept only once it has parsed, passed the shape limits and validated, so
//! the cache holds nothing that could not also have been executed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_graphql::ServerError;
use async_graphql::parser::types::ExecutableDocument;

use super::limits::{OperationLimits, set_code};
use super::shape::DocumentShape;
use crate::error::ErrorCode;

/// How many documents are kept. An app has a handful; GraphiQL adds its introspection query.
pub(crate) const CACHED_DOCUMENTS: usize = 64;
/// Longer texts are parsed every time: the bound keeps the cache's memory small (the parsed
/// tree is roughly ten times its text) whatever callers send.
pub(crate) const MAX_CACHED_QUERY_BYTES: usize = 4 * 1024;

/// A document ready to execute.
#[derive(Debug, Clone)]
pub(super) struct Prepared {
    pub(crate) document: Arc<ExecutableDocument>,
    /// Parsed for this request (not yet in the cache).
    pub(crate) fresh: bool,
}

#[derive(Debug, Default)]
pub(super) struct DocumentCache {
    entries: Mutex<HashMap<Box<str>, Arc<ExecutableDocument>>>,
}

impl DocumentCache {
    /// The parsed document for `query`, from the cache or parsed and shape-checked now.
    pub(crate) fn prepare(
        &self,
        query: &str,
        limits: &OperationLimits,
    ) -> Result<Prepared, ServerError> {
        limits.check_query_size(query)?;
        if let Some(document) = self.lock().get(query).cloned() {
            metrics::counter!(crate::metrics::DOCUMENT_CACHE, "result" => "hit").increment(1);
            return Ok(Prepared {
                document,
                fresh: false,
            });
        }
        metrics::counter!(crate::metrics::DOCUMENT_CACHE, "result" => "miss").increment(1);
        // A cached document passed this already; a new one must pass it before the parser runs.
        limits.check_value_depth(query)?;
        let document = async_graphql::parser::parse_query(query).map_err(|error| {
            let syntax = matches!(error, async_graphql::parser::Error::Syntax { .. });
            let mut error = ServerError::from(error);
            if syntax {
                error.message = syntax_message(&error.message);
            }
            set_code(&mut error, ErrorCode::GraphqlParseFailed);
            error
        })?;
        limits.check_shape(&DocumentShape::measure(&document))?;
        Ok(Prepared {
            document: Arc::new(document),
            fresh: true,
        })
    }

    /// Keeps a document that executed without a request error. When the cache is full a random
    /// entry makes room: documents in steady use come back at once, and a caller sending
    /// endless new texts can neither pin the cache nor aim at one entry.
    pub(crate) fn keep(&self, query: &str, document: Arc<ExecutableDocument>) {
        if query.len() > MAX_CACHED_QUERY_BYTES {
            return;
        }
        let mut entries = self.lock();
        if entries.len() >= CACHED_DOCUMENTS {
            // Without randomness (it does not fail on supported systems) the first entry goes.
            let pick = getrandom::u32().unwrap_or(0) as usize % entries.len();
            if let Some(victim) = entries.keys().nth(pick).cloned() {
                entries.remove(&victim);
            }
        }
        entries.insert(query.into(), document);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, Arc<ExecutableDocument>>> {
        // The map is valid after any panic (each operation is one call on it).
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

/// The grammar's expectation from a pest syntax error, without the excerpt of the document that
/// pest prints above it (the excerpt quotes the client's text, values included); `locations`
/// still says where.
fn syntax_message(pest_message: &str) -> String {
    let expected = pest_message
        .lines()
        .rev()
        .find_map(|line| line.trim_start().strip_prefix("= "))
        .unwrap_or("the document is not valid GraphQL");
    format!("syntax error: {expected}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUERY: &str = "{ shareableResourceTypes }";

    #[test]
    fn a_kept_document_is_served_from_the_cache() {
        let cache = DocumentCache::default();
        let limits = OperationLimits::default();
        let first = cache.prepare(QUERY, &limits).expect("parses");
        assert!(first.fresh);
        cache.keep(QUERY, first.document.clone());
        let second = cache.prepare(QUERY, &limits).expect("cached");
        assert!(!second.fresh);
        assert!(Arc::ptr_eq(&first.document, &second.document));
    }

    #[test]
    fn the_cache_stays_bounded() {
        let cache = DocumentCache::default();
        let limits = OperationLimits::default();
        for i in 0..(CACHED_DOCUMENTS * 3) {
            let query = format!("{{ a{i}: shareableResourceTypes }}");
            let prepared = cache.prepare(&query, &limits).expect("parses");
            cache.keep(&query, prepared.document);
        }
        assert_eq!(cache.len(), CACHED_DOCUMENTS);
        let long = format!(
            "{{ shareableResourceTypes }}{}",
            " ".repeat(MAX_CACHED_QUERY_BYTES)
        );
        let prepared = cache.prepare(&long, &limits).expect("parses");
        cache.keep(&long, prepared.document);
        assert!(cache.prepare(&long, &limits).expect("parses").fresh);
    }

    #[test]
    fn limits_apply_before_and_after_parsing() {
        let cache = DocumentCache::default();
        let limits = OperationLimits {
            max_query_bytes: 10,
            ..OperationLimits::default()
        };
        let too_long = cache.prepare(QUERY, &limits).expect_err("too long");
        assert_eq!(
            super::super::limits::code_of(&too_long),
            Some("OPERATION_LIMIT_EXCEEDED")
        );
        let broken = cache
            .prepare("{ a", &OperationLimits::default())
            .expect_err("does not parse");
        assert_eq!(
            super::super::limits::code_of(&broken),
            Some("GRAPHQL_PARSE_FAILED")
        );
        let quoted = cache
            .prepare(
                "{ a(x: SECRETWORD SECRETWORD) ",
                &OperationLimits::default(),
            )
            .expect_err("does not parse");
        assert!(
            quoted.message.starts_with("syntax error: expected"),
            "{}",
            quoted.message
        );
        assert!(!quoted.message.contains("SECRETWORD"), "{}", quoted.message);
        assert!(!quoted.locations.is_empty());
        let aliases: String = (0..31)
            .map(|i| format!("a{i}: shareableResourceTypes "))
            .collect();
        let wide = cache
            .prepare(&format!("{{ {aliases} }}"), &OperationLimits::default())
            .expect_err("too many aliases");
        assert_eq!(
            super::super::limits::code_of(&wide),
            Some("OPERATION_LIMIT_EXCEEDED")
        );
    }
}
