//! Rewrites of window syntax on the parsed statement, so the planner sees one
//! form: window calls in `FROM` are named in lower case (DataFusion looks
//! table functions up by exact name).

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{self, TableFactor, VisitMut, VisitorMut};

use crate::windows::WindowKind;

struct Normalize;

impl VisitorMut for Normalize {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table {
            name,
            args: Some(_),
            ..
        } = factor
        {
            if let [part] = name.0.as_mut_slice() {
                if let Some(ident) = part.as_ident().cloned() {
                    let lower = ident.value.to_lowercase();
                    if ident.quote_style.is_none()
                        && WindowKind::ALL.iter().any(|(n, _)| *n == lower)
                    {
                        *part = ast::ObjectNamePart::Identifier(ast::Ident::new(lower));
                    }
                }
            }
        }
        ControlFlow::Continue(())
    }
}

/// Puts window syntax into the planner's form.
pub(crate) fn normalize(statement: &mut ast::Statement) {
    let _ = statement.visit(&mut Normalize);
}
