//! Rewrites of window syntax, so the planner sees one form: Flink's window
//! table functions and legacy `GROUP BY TUMBLE(…)` become `FROM TUMBLE(src,
//! ts, …)`, and window calls in `FROM` are named in lower case (DataFusion
//! looks table functions up by exact name).

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{self, TableFactor, VisitMut, VisitorMut};
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan};

use crate::windows::WindowKind;

struct Normalize;

impl VisitorMut for Normalize {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut ast::Query) -> ControlFlow<()> {
        if let ast::SetExpr::Select(select) = query.body.as_mut() {
            legacy_group_window(select);
        }
        ControlFlow::Continue(())
    }

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

fn word_is(token: &Token, word: &str) -> bool {
    matches!(token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
}

fn is_window_word(token: &Token) -> bool {
    WindowKind::ALL.iter().any(|(name, _)| word_is(token, name))
}

/// Flink's window table functions, `TABLE(TUMBLE(TABLE src, DESCRIPTOR(ts),
/// size))`, `HOP(TABLE src, DESCRIPTOR(ts), slide, size)` and
/// `SESSION(TABLE src PARTITION BY k, DESCRIPTOR(ts), gap)`, rewritten at the
/// token level to `TUMBLE(src, ts, size)` and so on, which sqlparser parses.
/// A session's `PARTITION BY` is dropped: sessions are per GROUP BY key.
pub(crate) fn flink_window_tokens(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    // Indices of significant tokens, to look ahead past whitespace.
    let sig: Vec<usize> = (0..tokens.len())
        .filter(|&i| !matches!(tokens[i].token, Token::Whitespace(_)))
        .collect();
    let at = |k: usize| sig.get(k).map(|&i| &tokens[i].token);
    let mut drop = vec![false; tokens.len()];
    // Closing parenthesis (as an index into `sig`) to drop for each `TABLE(`.
    let mut k = 0;
    while k < sig.len() {
        let window_call = at(k).is_some_and(is_window_word) && at(k + 1) == Some(&Token::LParen);
        let flink_args = window_call && {
            // The call's extent: up to its closing parenthesis.
            let mut depth = 0i32;
            let mut end = k + 1;
            while end < sig.len() {
                match at(end) {
                    Some(Token::LParen) => depth += 1,
                    Some(Token::RParen) => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                end += 1;
            }
            at(k + 2).is_some_and(|t| word_is(t, "TABLE"))
                || (k + 2..end).any(|j| at(j).is_some_and(|t| word_is(t, "DESCRIPTOR")))
        };
        if !flink_args {
            k += 1;
            continue;
        }
        // An enclosing `TABLE(` … `)` goes too.
        if k >= 2
            && at(k - 1) == Some(&Token::LParen)
            && at(k - 2).is_some_and(|t| word_is(t, "TABLE"))
        {
            drop[sig[k - 2]] = true;
            drop[sig[k - 1]] = true;
            let mut depth = 0i32;
            for j in k - 1..sig.len() {
                match at(j) {
                    Some(Token::LParen) => depth += 1,
                    Some(Token::RParen) => {
                        depth -= 1;
                        if depth == 0 {
                            drop[sig[j]] = true;
                            break;
                        }
                    }
                    _ => {}
                }
            }
        }
        // The call's arguments, at depth 1.
        let mut depth = 0i32;
        let mut j = k + 1;
        let mut in_partition = false;
        while j < sig.len() {
            let t = at(j).cloned().unwrap_or(Token::EOF);
            match &t {
                Token::LParen => depth += 1,
                Token::RParen => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                _ => {}
            }
            if depth == 1 {
                if matches!(t, Token::Comma) {
                    in_partition = false;
                } else if word_is(&t, "TABLE") && matches!(at(j + 1), Some(Token::Word(_))) {
                    drop[sig[j]] = true;
                } else if word_is(&t, "PARTITION") && at(j + 1).is_some_and(|n| word_is(n, "BY")) {
                    in_partition = true;
                } else if word_is(&t, "DESCRIPTOR")
                    && at(j + 1) == Some(&Token::LParen)
                    && at(j + 3) == Some(&Token::RParen)
                {
                    drop[sig[j]] = true;
                    drop[sig[j + 1]] = true;
                    drop[sig[j + 3]] = true;
                    j += 4;
                    continue;
                }
                if in_partition {
                    drop[sig[j]] = true;
                }
            } else if in_partition {
                drop[sig[j]] = true;
            }
            j += 1;
        }
        k = j;
    }
    tokens
        .into_iter()
        .zip(drop)
        .filter(|(_, d)| !d)
        .map(|(t, _)| t)
        .collect()
}

/// The legacy grouped form, `SELECT TUMBLE_START(ts, size), … FROM src GROUP BY
/// TUMBLE(ts, size), …`, rewritten to `SELECT window_start, … FROM TUMBLE(src,
/// ts, size) GROUP BY window_start, window_end, …` (likewise HOP and SESSION).
fn legacy_group_window(select: &mut ast::Select) {
    let ast::GroupByExpr::Expressions(exprs, _) = &mut select.group_by else {
        return;
    };
    let Some(pos) = exprs.iter().position(|e| window_call(e).is_some()) else {
        return;
    };
    let Some((name, args)) = window_call(&exprs[pos]) else {
        return;
    };
    let [from] = select.from.as_mut_slice() else {
        return;
    };
    if !from.joins.is_empty() {
        return;
    }
    let TableFactor::Table {
        name: source,
        args: None,
        ..
    } = &from.relation
    else {
        return;
    };
    let mut parts: Vec<ast::Ident> = source
        .0
        .iter()
        .filter_map(|p| p.as_ident().cloned())
        .collect();
    let source = match parts.len() {
        1 => ast::Expr::Identifier(parts.remove(0)),
        _ => ast::Expr::CompoundIdentifier(parts),
    };
    let mut call_args = vec![ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(
        source,
    ))];
    call_args.extend(args);
    if let TableFactor::Table {
        name: n, args: a, ..
    } = &mut from.relation
    {
        *n = ast::ObjectName::from(vec![ast::Ident::new(name.clone())]);
        *a = Some(ast::TableFunctionArgs {
            args: call_args,
            settings: None,
        });
    }
    exprs.splice(
        pos..=pos,
        [
            ast::Expr::Identifier(ast::Ident::new("window_start")),
            ast::Expr::Identifier(ast::Ident::new("window_end")),
        ],
    );
    let _ = ast::visit_expressions_mut(&mut select.projection, |e| {
        replace_window_bound(e, &name);
        ControlFlow::<()>::Continue(())
    });
    if let Some(having) = &mut select.having {
        let _ = ast::visit_expressions_mut(having, |e| {
            replace_window_bound(e, &name);
            ControlFlow::<()>::Continue(())
        });
    }
}

/// `TUMBLE(…)` / `HOP(…)` / `SESSION(…)` as an expression: its lower-case name
/// and arguments.
fn window_call(expr: &ast::Expr) -> Option<(String, Vec<ast::FunctionArg>)> {
    let ast::Expr::Function(f) = expr else {
        return None;
    };
    let name = f.name.to_string().to_lowercase();
    if !WindowKind::ALL.iter().any(|(n, _)| *n == name) {
        return None;
    }
    match &f.args {
        ast::FunctionArguments::List(list) => Some((name, list.args.clone())),
        _ => None,
    }
}

/// `TUMBLE_START(…)` → `window_start`, `TUMBLE_END(…)` → `window_end`.
fn replace_window_bound(expr: &mut ast::Expr, window: &str) {
    let ast::Expr::Function(f) = expr else {
        return;
    };
    let name = f.name.to_string().to_lowercase();
    let column = if name == format!("{window}_start") {
        "window_start"
    } else if name == format!("{window}_end") {
        "window_end"
    } else {
        return;
    };
    *expr = ast::Expr::Identifier(ast::Ident::new(column));
}
