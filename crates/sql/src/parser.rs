//! Parsing: sqlparser's PostgreSQL dialect, plus the statements it does not
//! know (`FLUSH`, `SHOW MATERIALIZED VIEWS`, `CREATE TABLE … APPEND ONLY`),
//! in the way DataFusion's own `DFParser` extends it.

use datafusion::sql::sqlparser::ast;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer};

use crate::create_source::{
    has_watermark_clause, parse_create_source, parse_create_table_with_watermark, CreateSource,
    WatermarkClause,
};
use crate::{Error, Result};

/// One statement of a query string.
#[derive(Debug, Clone)]
pub enum Statement {
    /// Anything sqlparser parses on its own.
    Sql(Box<ast::Statement>),
    /// `[EXPLAIN] CREATE MATERIALIZED VIEW … EMIT ON WINDOW CLOSE`.
    SqlEmitOnClose(Box<ast::Statement>),
    /// `CREATE TABLE`, with Tidemark's `APPEND ONLY` suffix.
    CreateTable {
        create: Box<ast::Statement>,
        append_only: bool,
        watermark: Option<WatermarkClause>,
    },
    CreateSource(CreateSource),
    Flush,
    ShowTables,
    ShowMaterializedViews,
    ShowSources,
    /// `DROP SOURCE [IF EXISTS] name, … [CASCADE | RESTRICT]`.
    DropSource {
        names: Vec<ast::ObjectName>,
        if_exists: bool,
        cascade: bool,
    },
    /// `SHOW JOBS`: the running streaming jobs and their progress.
    ShowJobs,
    /// `CREATE SAVEPOINT '<directory>'`: a copy of the last committed
    /// checkpoint that a server can start from (`--restore-from`).
    CreateSavepoint(String),
}

/// Statements that are a fixed run of words.
const FIXED_STATEMENTS: [(&[&str], Statement); 5] = [
    (&["FLUSH"], Statement::Flush),
    (
        &["SHOW", "MATERIALIZED", "VIEWS"],
        Statement::ShowMaterializedViews,
    ),
    (&["SHOW", "TABLES"], Statement::ShowTables),
    (&["SHOW", "SOURCES"], Statement::ShowSources),
    (&["SHOW", "JOBS"], Statement::ShowJobs),
];

/// Splits and parses a query string into statements.
pub fn parse(sql: &str) -> Result<Vec<Statement>> {
    Ok(parse_with_text(sql)?.into_iter().map(|(s, _)| s).collect())
}

/// Like [`parse`], with each statement's own text (what the catalog stores to
/// recreate a relation).
pub fn parse_with_text(sql: &str) -> Result<Vec<(Statement, String)>> {
    let dialect = PostgreSqlDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .with_unescape(true)
        .tokenize_with_location()
        .map_err(|e| syntax_error(sql, ParserError::TokenizerError(e.to_string())))?;
    let (tokens, mut emit_clauses) = strip_emit_on_window_close(tokens);
    let tokens = crate::window_syntax::flink_window_tokens(tokens);
    let mut parser = Parser::new(&dialect).with_tokens_with_locations(tokens);
    let mut out = Vec::new();
    loop {
        while parser.consume_token(&Token::SemiColon) {}
        if parser.peek_token().token == Token::EOF {
            break;
        }
        let start = parser.peek_token().span.start;
        let fixed = FIXED_STATEMENTS
            .iter()
            .find(|(words, _)| words_ahead(&parser, words));
        let statement = if let Some((words, statement)) = fixed {
            words.iter().for_each(|_| {
                parser.next_token();
            });
            statement.clone()
        } else if words_ahead(&parser, &["DROP", "SOURCE"]) {
            parser.next_token();
            parser.next_token();
            let parse = |parser: &mut Parser| -> std::result::Result<Statement, ParserError> {
                let if_exists = parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
                let names = parser.parse_comma_separated(|p| p.parse_object_name(false))?;
                let cascade = parser.parse_keyword(Keyword::CASCADE);
                if !cascade {
                    let _ = parser.parse_keyword(Keyword::RESTRICT);
                }
                Ok(Statement::DropSource {
                    names,
                    if_exists,
                    cascade,
                })
            };
            parse(&mut parser).map_err(|e| syntax_error(sql, e))?
        } else if words_ahead(&parser, &["CREATE", "SAVEPOINT"]) {
            parser.next_token();
            parser.next_token();
            let dir = parser
                .parse_literal_string()
                .map_err(|e| syntax_error(sql, e))?;
            Statement::CreateSavepoint(dir)
        } else if words_ahead(&parser, &["CREATE", "SOURCE"]) {
            let source = parse_create_source(&mut parser).map_err(|e| syntax_error(sql, e))?;
            Statement::CreateSource(source)
        } else {
            let (parsed, watermark) = if words_ahead(&parser, &["CREATE", "TABLE"])
                && has_watermark_clause(&parser)
            {
                parse_create_table_with_watermark(&mut parser).map_err(|e| syntax_error(sql, e))?
            } else {
                let parsed = parser.parse_statement().map_err(|e| syntax_error(sql, e))?;
                (parsed, None)
            };
            if matches!(parsed, ast::Statement::CreateTable(_)) {
                let append_only = words_ahead(&parser, &["APPEND", "ONLY"]);
                if append_only {
                    parser.next_token();
                    parser.next_token();
                }
                Statement::CreateTable {
                    create: Box::new(parsed),
                    append_only,
                    watermark,
                }
            } else {
                Statement::Sql(Box::new(parsed))
            }
        };
        let next = parser.peek_token();
        let end = next.span.start;
        let emit_on_close = match emit_clauses.first() {
            Some(at) if *at >= start && (next.token == Token::EOF || *at < end) => {
                let at = emit_clauses.remove(0);
                Some(at)
            }
            _ => None,
        };
        let statement = match statement {
            Statement::Sql(mut s) => {
                crate::window_syntax::normalize(&mut s);
                Statement::Sql(s)
            }
            other => other,
        };
        let statement = match (emit_on_close, statement) {
            (None, s) => s,
            (Some(_), Statement::Sql(s)) if is_create_materialized_view(&s) => {
                Statement::SqlEmitOnClose(s)
            }
            (Some(at), _) => {
                let e = ParserError::ParserError(format!(
                    "EMIT ON WINDOW CLOSE applies only to CREATE MATERIALIZED VIEW, found: EMIT at Line: {}, Column: {}",
                    at.line, at.column
                ));
                return Err(syntax_error(sql, e));
            }
        };
        let text_end = match next.token {
            Token::EOF => sql.len(),
            _ => byte_offset(sql, end),
        };
        let text = sql
            .get(byte_offset(sql, start)..text_end)
            .unwrap_or(sql)
            .trim();
        out.push((statement, text.to_string()));
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

/// The byte offset of a 1-based line and column (in characters) in `sql`.
fn byte_offset(sql: &str, at: Location) -> usize {
    let (mut line, mut column) = (1u64, 1u64);
    for (i, c) in sql.char_indices() {
        if line == at.line && column == at.column {
            return i;
        }
        if c == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    sql.len()
}

fn is_create_materialized_view(statement: &ast::Statement) -> bool {
    match statement {
        ast::Statement::CreateView(v) => v.materialized,
        ast::Statement::Explain { statement, .. } => is_create_materialized_view(statement),
        _ => false,
    }
}

/// Removes each `EMIT ON WINDOW CLOSE` outside parentheses (which sqlparser
/// cannot parse) and returns where each one was.
fn strip_emit_on_window_close(tokens: Vec<TokenWithSpan>) -> (Vec<TokenWithSpan>, Vec<Location>) {
    const WORDS: [&str; 4] = ["EMIT", "ON", "WINDOW", "CLOSE"];
    let is_word = |t: &TokenWithSpan, w: &str| matches!(&t.token, Token::Word(word) if word.quote_style.is_none() && word.value.eq_ignore_ascii_case(w));
    let mut out = Vec::with_capacity(tokens.len());
    let mut found = Vec::new();
    let mut depth = 0i32;
    let mut i = 0;
    while i < tokens.len() {
        match tokens[i].token {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            _ => {}
        }
        if depth == 0 && is_word(&tokens[i], WORDS[0]) {
            // The clause's words, skipping whitespace between them.
            let mut j = i;
            let mut matched = 0;
            while j < tokens.len() && matched < WORDS.len() {
                if matches!(tokens[j].token, Token::Whitespace(_)) {
                    j += 1;
                    continue;
                }
                if !is_word(&tokens[j], WORDS[matched]) {
                    break;
                }
                matched += 1;
                j += 1;
            }
            if matched == WORDS.len() {
                found.push(tokens[i].span.start);
                i = j;
                continue;
            }
        }
        out.push(tokens[i].clone());
        i += 1;
    }
    (out, found)
}

pub(crate) fn words_ahead(parser: &Parser, words: &[&str]) -> bool {
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
    fn each_statement_keeps_its_own_text() {
        let sql = "FLUSH;\n  CREATE TABLE t (k INT) APPEND ONLY ;CREATE MATERIALIZED VIEW v AS\n SELECT 'é' AS e FROM t EMIT ON WINDOW CLOSE";
        let texts: Vec<String> = parse_with_text(sql)
            .unwrap()
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        assert_eq!(
            texts,
            [
                "FLUSH",
                "CREATE TABLE t (k INT) APPEND ONLY",
                "CREATE MATERIALIZED VIEW v AS\n SELECT 'é' AS e FROM t EMIT ON WINDOW CLOSE"
            ]
        );
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
