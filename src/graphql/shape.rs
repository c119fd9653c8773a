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
pub(crate) const CREATE_HEALTH_LINK: &str = "createHealthLink";

/// Counts over a whole document (every operation and fragment definition, each once).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct DocumentShape {
    pub(crate) aliases: usize,
    pub(crate) directives: usize,
    /// Root fields of the largest operation, with root-level fragments expanded.
    pub(crate) root_fields: usize,
    /// `createHealthLink` executions the largest mutation would run (aliases included).
    pub(crate) link_creations: usize,
}

impl DocumentShape {
    pub(crate) fn measure(document: &ExecutableDocument) -> Self {
        let mut shape = DocumentShape::default();
        for (_, operation) in document.operations.iter() {
            let operation = &operation.node;
            shape.directives += operation.directives.len();
            count_selection_set(&operation.selection_set.node, &mut shape);
            let Some(roots) = root_fields(operation, document) else {
                // Wider than any limit: refused whatever the configuration.
                shape.root_fields = usize::MAX;
                shape.link_creations = usize::MAX;
                continue;
            };
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
pub(crate) fn selected_operation<'a>(
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

/// How many selections the root-field walk visits at most. Every spread of a fragment counts
/// (three spreads of one fragment run its fields three times), so fragments spreading each
/// other twice over would make the walk exponential; past this bound the operation is reported
/// as too wide, which every limit refuses.
const MAX_ROOT_WALK: usize = 10_000;

/// The root fields an operation executes, with fragments at the root expanded: one entry per
/// execution (aliases and repeated spreads count one by one). `None` when the expansion is
/// larger than any limit could allow.
pub(crate) fn root_fields<'a>(
    operation: &'a OperationDefinition,
    document: &'a ExecutableDocument,
) -> Option<Vec<&'a Field>> {
    let mut walk = RootWalk {
        document,
        in_progress: HashSet::new(),
        steps: 0,
        fields: Vec::new(),
    };
    walk.visit(&operation.selection_set.node)
        .then_some(walk.fields)
}

struct RootWalk<'a> {
    document: &'a ExecutableDocument,
    /// The fragments being expanded on the current path: a cycle (which validation refuses
    /// later, but shapes are measured before validation) stops there.
    in_progress: HashSet<&'a str>,
    steps: usize,
    fields: Vec<&'a Field>,
}

impl<'a> RootWalk<'a> {
    /// `false` once the walk is over its bound.
    fn visit(&mut self, set: &'a SelectionSet) -> bool {
        for selection in &set.items {
            self.steps += 1;
            if self.steps > MAX_ROOT_WALK {
                return false;
            }
            let within_bound = match &selection.node {
                Selection::Field(field) => {
                    self.fields.push(&field.node);
                    true
                }
                Selection::InlineFragment(inline) => self.visit(&inline.node.selection_set.node),
                Selection::FragmentSpread(spread) => {
                    let name = spread.node.fragment_name.node.as_str();
                    match self.document.fragments.get(name) {
                        Some(fragment) if self.in_progress.insert(name) => {
                            let within = self.visit(&fragment.node.selection_set.node);
                            self.in_progress.remove(name);
                            within
                        }
                        _ => true,
                    }
                }
            };
            if !within_bound {
                return false;
            }
        }
        true
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
    fn every_spread_of_a_fragment_counts() {
        let measured = shape(
            "mutation { ...F ...F ...F } fragment F on Mutation { createHealthLink(input: {}) { id } }",
        );
        assert_eq!(measured.link_creations, 3);
        assert_eq!(measured.root_fields, 3);
    }

    #[test]
    fn fragments_doubling_each_other_are_refused_without_expanding_them() {
        // 40 fragments, each spreading the next twice: 2^40 expansions if walked naively.
        let mut query = String::from("mutation { ...F0 }");
        for i in 0..40 {
            query.push_str(&format!(
                " fragment F{i} on Mutation {{ ...F{next} ...F{next} }}",
                next = i + 1
            ));
        }
        query.push_str(" fragment F40 on Mutation { ...Missing }");
        let started = std::time::Instant::now();
        let measured = shape(&query);
        assert_eq!(measured.root_fields, usize::MAX);
        assert_eq!(measured.link_creations, usize::MAX);
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn queries_create_nothing_and_directives_are_counted() {
        let measured = shape("query Q @a { x: shareableResourceTypes @skip(if: false) @b }");
        assert_eq!(measured.link_creations, 0);
        assert_eq!(measured.directives, 3);
        assert_eq!(measured.root_fields, 1);
    }
}
