//! Result column names as Postgres gives them: `count(*)` is `count`, `v::text`
//! is `v`, an unnamed expression is `?column?`. DataFusion would name them
//! after the whole expression, which clients would then have to quote.

use datafusion::sql::sqlparser::ast::{Expr, Ident, Query, SelectItem, SetExpr};

fn ident(i: &Ident) -> String {
    match i.quote_style {
        Some(_) => i.value.clone(),
        None => i.value.to_lowercase(),
    }
}

fn expr_name(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Identifier(i) => Some(ident(i)),
        Expr::CompoundIdentifier(parts) => parts.last().map(ident),
        Expr::Function(f) => f.name.0.last().and_then(|p| p.as_ident()).map(ident),
        Expr::Cast {
            expr, data_type, ..
        } => expr_name(expr).or_else(|| Some(data_type.to_string().to_lowercase())),
        Expr::Nested(inner) => expr_name(inner),
        Expr::Case { .. } => Some("case".to_string()),
        _ => None,
    }
}

/// The Postgres names of a plain `SELECT`'s columns; `None` when the query has
/// a wildcard or is not a single SELECT (DataFusion's names are right then).
pub fn postgres_column_names(query: &Query) -> Option<Vec<String>> {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    select
        .projection
        .iter()
        .map(|item| match item {
            SelectItem::UnnamedExpr(e) => {
                Some(expr_name(e).unwrap_or_else(|| "?column?".to_string()))
            }
            SelectItem::ExprWithAlias { alias, .. } => Some(ident(alias)),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::ast::Statement;

    use super::*;

    fn names(sql: &str) -> Option<Vec<String>> {
        let stmts = crate::parse(sql).unwrap();
        let crate::Statement::Sql(stmt) = &stmts[0] else {
            panic!()
        };
        let Statement::Query(q) = stmt.as_ref() else {
            panic!()
        };
        postgres_column_names(q)
    }

    #[test]
    fn names_follow_postgres() {
        assert_eq!(
            names(
                "SELECT region, count(*), sum(v) AS total, 1 + 2, t.k, v::TEXT, \"Mixed\" FROM t"
            )
            .unwrap(),
            vec!["region", "count", "total", "?column?", "k", "v", "Mixed"]
        );
        assert_eq!(names("SELECT * FROM t"), None);
    }
}
