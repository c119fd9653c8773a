//! The shape of a parsed document, measured before validation: how many aliases, directives and
//! root fields it has, and how many `createHealthLink` executions it asks for.
//!
//! Depth and complexity bound how much work a document asks for; these counts bound how *many*
//! things it asks for. GraphQL lets one HTTP request carry a hundred aliased mutations, so link
//! creation is counted per field execution here, not per request, and the quotas charge that
//! count before anything runs.

use std::collections::HashSet;

use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, Field, FragmentDefinition, OperationDefinition,
    OperationType, Selection, SelectionSet,
};

/// The root field whose executions are counted and charged.
pub const CREATE_HEALTH_LINK: &str = "createHealthLink";

/// Counts over a whole document (every operation and fragment definition, each once).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DocumentShape {
    pub aliases: usize,
    pub directives: usize,
    /// Root fields of the largest operation, with root-level fragments expanded.
    pub root_fields: usize,
    /// `createHealthLink` executions the largest mutation would run (aliases included).
    pub link_creations: usize,
}

impl DocumentShape {
    pub fn measure(document: &ExecutableDocument) -> Self {
        let mut shape = DocumentShape::default();
        for (_, operation) in document.operations.iter() {
            let operation = &operation.node;
            shape.directives += operation.directives.len();
            count_selection_set(&operation.selection_set.node, &mut shape);
            let roots = root_fields(operation, document);
            shape.root_fields = shape.root_fields.max(roots.len());
            if operation.ty == OperationType::Mutation {
                let creations = roots
                    .iter()
                    .filter(|field| field.name.node.as_str() == CREATE_HEALTH_LINK)
                    .count();
                shape.link_creations = shape.link_creations.max(creations);
            }
        }
        for fragment in document.fragments.values() {
            let FragmentDefinition {
                directives,
                selection_set,
                ..
            } = &fragment.node;
            shape.directives += directives.len();
            count_selection_set(&selection_set.node, &mut shape);
        }
        shape
    }
}

/// Aliases and directives inside one selection set, without following fragment spreads (each
/// fragment definition is counted once, by `measure`).
fn count_selection_set(set: &SelectionSet, shape: &mut DocumentShape) {
    for selection in &set.items {
        match &selection.node {
            Selection::Field(field) => {
                let field = &field.node;
                shape.aliases += usize::from(field.alias.is_some());
                shape.directives += field.directives.len();
                count_selection_set(&field.selection_set.node, shape);
            }
            Selection::FragmentSpread(spread) => shape.directives += spread.node.directives.len(),
            Selection::InlineFragment(inline) => {
                shape.directives += inline.node.directives.len();
                count_selection_set(&inline.node.selection_set.node, shape);
            }
        }
    }
}

/// The operation a request runs: the one named, or the only one.
pub fn selected_operation<'a>(
    document: &'a ExecutableDocument,
    operation_name: Option<&str>,
) -> Option<&'a OperationDefinition> {
    let operation = match (&document.operations, operation_name) {
        (DocumentOperations::Single(operation), _) => Some(operation),
        (DocumentOperations::Multiple(operations), Some(name)) => operations.get(name),
        (DocumentOperations::Multiple(operations), None) if operations.len() == 1 => {
            operations.values().next()
        }
        (DocumentOperations::Multiple(_), None) => None,
    };
    operation.map(|operation| &operation.node)
}

/// The root fields an operation executes, with fragments at the root expanded: one entry per
/// execution (aliases count one by one).
pub fn root_fields<'a>(
    operation: &'a OperationDefinition,
    document: &'a ExecutableDocument,
) -> Vec<&'a Field> {
    let mut fields = Vec::new();
    collect_root_fields(
        &operation.selection_set.node,
        document,
        &mut HashSet::new(),
        &mut fields,
    );
    fields
}

/// `visited` stops fragment cycles (which validation refuses later, but shapes are measured
/// before validation).
fn collect_root_fields<'a>(
    set: &'a SelectionSet,
    document: &'a ExecutableDocument,
    visited: &mut HashSet<&'a str>,
    into: &mut Vec<&'a Field>,
) {
    for selection in &set.items {
        match &selection.node {
            Selection::Field(field) => into.push(&field.node),
            Selection::InlineFragment(inline) => {
                collect_root_fields(&inline.node.selection_set.node, document, visited, into)
            }
            Selection::FragmentSpread(spread) => {
                let name = spread.node.fragment_name.node.as_str();
                if visited.insert(name)
                    && let Some(fragment) = document.fragments.get(name)
                {
                    collect_root_fields(&fragment.node.selection_set.node, document, visited, into);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(query: &str) -> DocumentShape {
        DocumentShape::measure(&async_graphql::parser::parse_query(query).expect("parses"))
    }

    #[test]
    fn aliased_creations_are_counted_one_by_one() {
        let aliases: String = (0..101)
            .map(|i| format!("l{i}: createHealthLink(input: {{}}) {{ id }} "))
            .collect();
        let measured = shape(&format!("mutation {{ {aliases} }}"));
        assert_eq!(measured.link_creations, 101);
        assert_eq!(measured.aliases, 101);
        assert_eq!(measured.root_fields, 101);
    }

    #[test]
    fn creations_hidden_in_fragments_are_counted() {
        let measured = shape(
            "mutation { ...A ... on Mutation { c: createHealthLink(input: {}) { id } } }
             fragment A on Mutation { a: createHealthLink(input: {}) { id } b: createHealthLink(input: {}) { id } ...A }",
        );
        assert_eq!(
            measured.link_creations, 3,
            "a fragment cycle is followed once"
        );
    }

    #[test]
    fn queries_create_nothing_and_directives_are_counted() {
        let measured = shape("query Q @a { x: shareableResourceTypes @skip(if: false) @b }");
        assert_eq!(measured.link_creations, 0);
        assert_eq!(measured.directives, 3);
        assert_eq!(measured.root_fields, 1);
    }
}
