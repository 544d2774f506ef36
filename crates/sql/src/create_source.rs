//! `CREATE SOURCE` and the `WATERMARK FOR` clause, which sqlparser does not
//! know. The column list is parsed with sqlparser's own pieces, so column types
//! and constraints mean what they mean in `CREATE TABLE`.

use datafusion::sql::sqlparser::ast::{self, helpers::stmt_create_table::CreateTableBuilder};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::Token;

use crate::parser::words_ahead;

/// `WATERMARK FOR column AS expression`.
#[derive(Debug, Clone)]
pub struct WatermarkClause {
    pub column: ast::Ident,
    pub expr: ast::Expr,
}

/// What `CREATE SOURCE` says.
#[derive(Debug, Clone)]
pub struct CreateSource {
    /// The name and column list, as a `CREATE TABLE`, so columns are typed the
    /// same way as a table's.
    pub create: Box<ast::Statement>,
    pub watermark: Option<WatermarkClause>,
    /// `WITH (…)` options, keys lower-cased, values as written.
    pub options: Vec<(String, String)>,
}

/// Whether the statement ahead has a `WATERMARK FOR` clause in its
/// parenthesised column list.
pub(crate) fn has_watermark_clause(parser: &Parser) -> bool {
    let mut depth = 0usize;
    for i in 0.. {
        match parser.peek_nth_token(i).token {
            Token::EOF | Token::SemiColon => return false,
            Token::LParen => depth += 1,
            Token::RParen => depth = depth.saturating_sub(1),
            Token::Word(w)
                if depth == 1
                    && w.quote_style.is_none()
                    && w.value.eq_ignore_ascii_case("WATERMARK") =>
            {
                if let Token::Word(next) = parser.peek_nth_token(i + 1).token {
                    if next.keyword == Keyword::FOR {
                        return true;
                    }
                }
            }
            _ => {}
        }
    }
    false
}

/// Parses `CREATE SOURCE …` (the parser is at `CREATE`).
pub(crate) fn parse_create_source(parser: &mut Parser) -> Result<CreateSource, ParserError> {
    parser.expect_keyword(Keyword::CREATE)?;
    parser.next_token(); // SOURCE
    let (create, watermark) = parse_name_and_columns(parser)?;
    let options = if parser.parse_keyword(Keyword::WITH) {
        parse_options(parser)?
    } else {
        Vec::new()
    };
    Ok(CreateSource {
        create: Box::new(ast::Statement::CreateTable(create)),
        watermark,
        options,
    })
}

/// Parses `CREATE TABLE name (… WATERMARK FOR …)` (the parser is at `CREATE`);
/// `APPEND ONLY` is left to the caller.
pub(crate) fn parse_create_table_with_watermark(
    parser: &mut Parser,
) -> Result<(ast::Statement, Option<WatermarkClause>), ParserError> {
    parser.expect_keyword(Keyword::CREATE)?;
    parser.expect_keyword(Keyword::TABLE)?;
    let (create, watermark) = parse_name_and_columns(parser)?;
    Ok((ast::Statement::CreateTable(create), watermark))
}

fn parse_name_and_columns(
    parser: &mut Parser,
) -> Result<(ast::CreateTable, Option<WatermarkClause>), ParserError> {
    let if_not_exists = parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = parser.parse_object_name(false)?;
    parser.expect_token(&Token::LParen)?;
    let mut columns = Vec::new();
    let mut constraints = Vec::new();
    let mut watermark = None;
    loop {
        if words_ahead(parser, &["WATERMARK", "FOR"]) {
            let at = parser.peek_token();
            parser.next_token();
            parser.next_token();
            let column = parser.parse_identifier()?;
            parser.expect_keyword(Keyword::AS)?;
            let expr = parser.parse_expr()?;
            if watermark.is_some() {
                return parser.expected("only one WATERMARK clause", at);
            }
            watermark = Some(WatermarkClause { column, expr });
        } else if let Some(constraint) = parser.parse_optional_table_constraint()? {
            constraints.push(constraint);
        } else if let Token::Word(_) = parser.peek_token().token {
            columns.push(parser.parse_column_def()?);
        } else {
            return parser.expected("column name or constraint definition", parser.peek_token());
        }
        if parser.consume_token(&Token::RParen) {
            break;
        }
        if !parser.consume_token(&Token::Comma) {
            return parser.expected("',' or ')' after column definition", parser.peek_token());
        }
    }
    let create = CreateTableBuilder::new(name)
        .if_not_exists(if_not_exists)
        .columns(columns)
        .constraints(constraints)
        .build();
    Ok((create, watermark))
}

/// `( key = value, … )`, keys bare (`connector`), dotted (`fields.v.kind`) or
/// quoted as Flink writes them (`'connector'`); values are strings, numbers or
/// booleans.
fn parse_options(parser: &mut Parser) -> Result<Vec<(String, String)>, ParserError> {
    parser.expect_token(&Token::LParen)?;
    let mut options = Vec::new();
    if parser.consume_token(&Token::RParen) {
        return Ok(options);
    }
    loop {
        let key = parse_option_key(parser)?;
        parser.expect_token(&Token::Eq)?;
        let value = parser.next_token();
        let value = match value.token {
            Token::SingleQuotedString(s) => s,
            Token::Number(n, _) => n,
            Token::Word(w) if w.quote_style.is_none() => w.value,
            _ => return parser.expected("an option value", value),
        };
        options.push((key.to_lowercase(), value));
        if parser.consume_token(&Token::RParen) {
            return Ok(options);
        }
        parser.expect_token(&Token::Comma)?;
    }
}

fn parse_option_key(parser: &mut Parser) -> Result<String, ParserError> {
    let first = parser.next_token();
    match first.token {
        Token::SingleQuotedString(s) => Ok(s),
        Token::Word(w) => {
            let mut key = w.value;
            while parser.consume_token(&Token::Period) {
                let part = parser.next_token();
                match part.token {
                    Token::Word(w) => key = format!("{key}.{}", w.value),
                    Token::Number(n, _) => key = format!("{key}.{n}"),
                    _ => return parser.expected("an option name", part),
                }
            }
            Ok(key)
        }
        _ => parser.expected("an option name", first),
    }
}
