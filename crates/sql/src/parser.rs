//! Parsing: sqlparser's PostgreSQL dialect, plus the statements it does not
//! know (`FLUSH`, `SHOW MATERIALIZED VIEWS`, `CREATE TABLE … APPEND ONLY`),
//! in the way DataFusion's own `DFParser` extends it.

use datafusion::sql::sqlparser::ast;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::Token;

use crate::{Error, Result};

/// One statement of a query string.
#[derive(Debug, Clone)]
pub enum Statement {
    /// Anything sqlparser parses on its own.
    Sql(Box<ast::Statement>),
    /// `CREATE TABLE`, with Tidemark's `APPEND ONLY` suffix.
    CreateTable {
        create: Box<ast::Statement>,
        append_only: bool,
    },
    Flush,
    ShowTables,
    ShowMaterializedViews,
}

/// Splits and parses a query string into statements.
pub fn parse(sql: &str) -> Result<Vec<Statement>> {
    let dialect = PostgreSqlDialect {};
    let mut parser = Parser::new(&dialect)
        .try_with_sql(sql)
        .map_err(|e| syntax_error(sql, e))?;
    let mut out = Vec::new();
    loop {
        while parser.consume_token(&Token::SemiColon) {}
        if parser.peek_token().token == Token::EOF {
            break;
        }
        let statement = if words_ahead(&parser, &["FLUSH"]) {
            parser.next_token();
            Statement::Flush
        } else if words_ahead(&parser, &["SHOW", "MATERIALIZED", "VIEWS"]) {
            (0..3).for_each(|_| {
                parser.next_token();
            });
            Statement::ShowMaterializedViews
        } else if words_ahead(&parser, &["SHOW", "TABLES"]) {
            (0..2).for_each(|_| {
                parser.next_token();
            });
            Statement::ShowTables
        } else {
            let parsed = parser.parse_statement().map_err(|e| syntax_error(sql, e))?;
            if matches!(parsed, ast::Statement::CreateTable(_)) {
                let append_only = words_ahead(&parser, &["APPEND", "ONLY"]);
                if append_only {
                    parser.next_token();
                    parser.next_token();
                }
                Statement::CreateTable {
                    create: Box::new(parsed),
                    append_only,
                }
            } else {
                Statement::Sql(Box::new(parsed))
            }
        };
        out.push(statement);
        let next = parser.peek_token();
        if next.token != Token::EOF && next.token != Token::SemiColon {
            let e = ParserError::ParserError(format!(
                "Expected: end of statement, found: {} at Line: {}, Column: {}",
                next.token, next.span.start.line, next.span.start.column
            ));
            return Err(syntax_error(sql, e));
        }
    }
    Ok(out)
}

fn words_ahead(parser: &Parser, words: &[&str]) -> bool {
    words
        .iter()
        .enumerate()
        .all(|(i, w)| match parser.peek_nth_token(i).token {
            Token::Word(word) => word.quote_style.is_none() && word.value.eq_ignore_ascii_case(w),
            _ => false,
        })
}

/// The 1-based character position of a 1-based line and column.
pub fn char_position(sql: &str, line: u64, column: u64) -> Option<usize> {
    if line == 0 {
        return None;
    }
    let before: usize = sql
        .split('\n')
        .take(line as usize - 1)
        .map(|l| l.chars().count() + 1)
        .sum();
    Some(before + column as usize)
}

/// Turns sqlparser's message into Postgres' shape: `syntax error at or near
/// "x"` with the position, sqlparser's expectation as the detail.
fn syntax_error(sql: &str, e: ParserError) -> Error {
    let raw = match e {
        ParserError::TokenizerError(s) | ParserError::ParserError(s) => s,
        ParserError::RecursionLimitExceeded => "statement is nested too deeply".to_string(),
    };
    let (text, location) = match raw.rfind(" at Line: ") {
        Some(i) => (raw[..i].to_string(), Some(&raw[i + " at Line: ".len()..])),
        None => (raw.clone(), None),
    };
    let position = location
        .and_then(|loc| {
            let (l, c) = loc.split_once(", Column: ")?;
            Some((l.trim().parse::<u64>().ok()?, c.trim().parse::<u64>().ok()?))
        })
        .and_then(|(l, c)| char_position(sql, l, c));
    let found = text
        .rsplit_once("found: ")
        .map(|(_, f)| f.trim().to_string());
    let message = match found.as_deref() {
        Some("EOF") | None if position.is_none() => "syntax error at end of input".to_string(),
        Some(token) => format!("syntax error at or near \"{}\"", token.trim_matches('"')),
        None => format!("syntax error: {text}"),
    };
    let position = position.or_else(|| Some(sql.chars().count() + 1));
    Error::Syntax {
        message,
        detail: text,
        position,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_recognises_our_statements() {
        let stmts =
            parse("FLUSH; show materialized views; CREATE TABLE t (k INT) APPEND ONLY; SELECT 1;")
                .unwrap();
        assert_eq!(stmts.len(), 4);
        assert!(matches!(stmts[0], Statement::Flush));
        assert!(matches!(stmts[1], Statement::ShowMaterializedViews));
        assert!(matches!(
            stmts[2],
            Statement::CreateTable {
                append_only: true,
                ..
            }
        ));
        assert!(matches!(stmts[3], Statement::Sql(_)));
    }

    #[test]
    fn syntax_errors_carry_postgres_message_and_position() {
        let Err(Error::Syntax {
            message, position, ..
        }) = parse("SELECT 1;\n  SELEC 2")
        else {
            panic!("expected a syntax error")
        };
        assert_eq!(message, "syntax error at or near \"SELEC\"");
        assert_eq!(position, Some(13));
        let Err(Error::Syntax { message, .. }) = parse("SELECT (1") else {
            panic!()
        };
        assert_eq!(message, "syntax error at end of input");
    }
}
