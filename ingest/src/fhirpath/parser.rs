//! Lexer and precedence-climbing parser for FHIRPath expressions.

use super::ParseError;
use super::value::{Decimal, PartialDateTime, Quantity};

/// A literal value in an expression.
#[derive(Debug, Clone)]
pub(crate) enum Lit {
    Boolean(bool),
    String(String),
    Integer(i64),
    Decimal(Decimal),
    Date(PartialDateTime),
    DateTime(PartialDateTime),
    Time(PartialDateTime),
    Quantity(Quantity),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinOp {
    Mul,
    Div,
    IntDiv,
    Mod,
    Add,
    Sub,
    Concat,
    Union,
    Lt,
    Gt,
    Le,
    Ge,
    Eq,
    Ne,
    Equiv,
    NotEquiv,
    In,
    Contains,
    And,
    Or,
    Xor,
    Implies,
}

/// A type name as written: `Patient`, `FHIR.Patient`, `System.Integer`.
#[derive(Debug, Clone)]
pub(crate) struct TypeSpec {
    pub namespace: Option<String>,
    pub name: String,
}

#[derive(Debug, Clone)]
pub(crate) enum Expr {
    Lit(Lit),
    Empty,
    /// An identifier at the start of a path (member of `$this`, or the context's type).
    Ident(String),
    Member(Box<Expr>, String),
    Index(Box<Expr>, Box<Expr>),
    /// A function call, on a receiver or (None) on the focus.
    Call(Option<Box<Expr>>, String, Vec<Expr>),
    Var(String),
    This,
    IndexVar,
    Total,
    Neg(Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    Is(Box<Expr>, TypeSpec),
    As(Box<Expr>, TypeSpec),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    /// A backtick-delimited identifier: never a keyword.
    Quoted(String),
    Str(String),
    Num(String),
    DateTime(String),
    Time(String),
    Var(String),
    Special(String),
    Sym(&'static str),
    End,
}

struct Token {
    tok: Tok,
    at: usize,
}

fn err(offset: usize, message: impl Into<String>) -> ParseError {
    ParseError {
        offset,
        message: message.into(),
    }
}

fn unescape(s: &str, at: usize) -> Result<String, ParseError> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('f') => out.push('\u{c}'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                let code = u32::from_str_radix(&hex, 16)
                    .ok()
                    .and_then(char::from_u32)
                    .ok_or_else(|| err(at, "bad \\u escape"))?;
                out.push(code);
            }
            Some(other) => out.push(other),
            None => return Err(err(at, "unfinished escape")),
        }
    }
    Ok(out)
}

fn lex(text: &str) -> Result<Vec<Token>, ParseError> {
    let bytes = text.as_bytes();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if text[i..].starts_with("//") {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if text[i..].starts_with("/*") {
            match text[i + 2..].find("*/") {
                Some(end) => i += end + 4,
                None => return Err(err(i, "unterminated comment")),
            }
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            toks.push(Token {
                tok: Tok::Ident(text[start..i].to_string()),
                at: start,
            });
            continue;
        }
        if c == b'`' || c == b'\'' {
            let mut j = i + 1;
            while j < bytes.len() && bytes[j] != c {
                if bytes[j] == b'\\' {
                    j += 1;
                }
                j += 1;
            }
            if j >= bytes.len() {
                return Err(err(start, "unterminated string"));
            }
            let body = unescape(&text[i + 1..j], start)?;
            i = j + 1;
            toks.push(Token {
                tok: if c == b'`' {
                    Tok::Quoted(body)
                } else {
                    Tok::Str(body)
                },
                at: start,
            });
            continue;
        }
        if c.is_ascii_digit() {
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            if i + 1 < bytes.len() && bytes[i] == b'.' && bytes[i + 1].is_ascii_digit() {
                i += 1;
                while i < bytes.len() && bytes[i].is_ascii_digit() {
                    i += 1;
                }
            }
            toks.push(Token {
                tok: Tok::Num(text[start..i].to_string()),
                at: start,
            });
            continue;
        }
        if c == b'@' {
            i += 1;
            let is_time = i < bytes.len() && bytes[i] == b'T';
            while i < bytes.len() {
                let b = bytes[i];
                let ok = b.is_ascii_digit()
                    || matches!(b, b'-' | b':' | b'T' | b'Z')
                    || (b == b'+' && i > start + 1)
                    || (b == b'.' && i + 1 < bytes.len() && bytes[i + 1].is_ascii_digit());
                if !ok {
                    break;
                }
                i += 1;
            }
            let body = text[start + 1..i].to_string();
            toks.push(Token {
                tok: if is_time {
                    Tok::Time(body[1..].to_string())
                } else {
                    Tok::DateTime(body)
                },
                at: start,
            });
            continue;
        }
        if c == b'%' {
            i += 1;
            let name = if i < bytes.len() && (bytes[i] == b'`' || bytes[i] == b'\'') {
                let q = bytes[i];
                let s = i + 1;
                let mut j = s;
                while j < bytes.len() && bytes[j] != q {
                    j += 1;
                }
                if j >= bytes.len() {
                    return Err(err(start, "unterminated variable name"));
                }
                i = j + 1;
                text[s..j].to_string()
            } else {
                let s = i;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                if s == i {
                    return Err(err(start, "expected a variable name after %"));
                }
                text[s..i].to_string()
            };
            toks.push(Token {
                tok: Tok::Var(name),
                at: start,
            });
            continue;
        }
        if c == b'$' {
            i += 1;
            while i < bytes.len() && bytes[i].is_ascii_alphanumeric() {
                i += 1;
            }
            toks.push(Token {
                tok: Tok::Special(text[start + 1..i].to_string()),
                at: start,
            });
            continue;
        }
        const SYMS: [&str; 22] = [
            "<=", ">=", "!=", "!~", ".", "[", "]", "(", ")", "{", "}", ",", "+", "-", "*", "/",
            "&", "|", "<", ">", "=", "~",
        ];
        match SYMS.iter().find(|s| text[i..].starts_with(**s)) {
            Some(s) => {
                i += s.len();
                toks.push(Token {
                    tok: Tok::Sym(s),
                    at: start,
                });
            }
            None => {
                let ch = text[i..].chars().next().unwrap_or('?');
                return Err(err(i, format!("unexpected character '{ch}'")));
            }
        }
    }
    toks.push(Token {
        tok: Tok::End,
        at: text.len(),
    });
    Ok(toks)
}

pub(crate) fn parse(text: &str) -> Result<Expr, ParseError> {
    let toks = lex(text)?;
    // Long chains (`a.b.c...`, `1+1+...`) nest the AST as deep as they are long, and both
    // evaluating and dropping it recurse.
    if toks.len() > MAX_TOKENS {
        return Err(err(
            toks.get(MAX_TOKENS).map_or(text.len(), |t| t.at),
            format!("expression has more than {MAX_TOKENS} tokens"),
        ));
    }
    let mut p = Parser {
        toks,
        pos: 0,
        depth: 0,
    };
    let e = p.expr(0)?;
    match &p.peek().tok {
        Tok::End => Ok(e),
        _ => Err(err(p.peek().at, "unexpected input after the expression")),
    }
}

struct Parser {
    toks: Vec<Token>,
    pos: usize,
    depth: usize,
}

/// Deeper nesting is refused: expressions come from users and the parser and the
/// evaluator recurse once per level.
const MAX_DEPTH: usize = 100;

const MAX_TOKENS: usize = 1024;

/// Binding power of infix operators (higher binds tighter).
fn infix(tok: &Tok) -> Option<(u8, Option<BinOp>)> {
    Some(match tok {
        Tok::Sym("*") => (10, Some(BinOp::Mul)),
        Tok::Sym("/") => (10, Some(BinOp::Div)),
        Tok::Ident(s) if s == "div" => (10, Some(BinOp::IntDiv)),
        Tok::Ident(s) if s == "mod" => (10, Some(BinOp::Mod)),
        Tok::Sym("+") => (9, Some(BinOp::Add)),
        Tok::Sym("-") => (9, Some(BinOp::Sub)),
        Tok::Sym("&") => (9, Some(BinOp::Concat)),
        Tok::Ident(s) if s == "is" || s == "as" => (8, None),
        Tok::Sym("|") => (7, Some(BinOp::Union)),
        Tok::Sym("<") => (6, Some(BinOp::Lt)),
        Tok::Sym(">") => (6, Some(BinOp::Gt)),
        Tok::Sym("<=") => (6, Some(BinOp::Le)),
        Tok::Sym(">=") => (6, Some(BinOp::Ge)),
        Tok::Sym("=") => (5, Some(BinOp::Eq)),
        Tok::Sym("!=") => (5, Some(BinOp::Ne)),
        Tok::Sym("~") => (5, Some(BinOp::Equiv)),
        Tok::Sym("!~") => (5, Some(BinOp::NotEquiv)),
        Tok::Ident(s) if s == "in" => (4, Some(BinOp::In)),
        Tok::Ident(s) if s == "contains" => (4, Some(BinOp::Contains)),
        Tok::Ident(s) if s == "and" => (3, Some(BinOp::And)),
        Tok::Ident(s) if s == "or" => (2, Some(BinOp::Or)),
        Tok::Ident(s) if s == "xor" => (2, Some(BinOp::Xor)),
        Tok::Ident(s) if s == "implies" => (1, Some(BinOp::Implies)),
        _ => return None,
    })
}

const CALENDAR_UNITS: [&str; 16] = [
    "year",
    "years",
    "month",
    "months",
    "week",
    "weeks",
    "day",
    "days",
    "hour",
    "hours",
    "minute",
    "minutes",
    "second",
    "seconds",
    "millisecond",
    "milliseconds",
];

impl Parser {
    fn peek(&self) -> &Token {
        &self.toks[self.pos.min(self.toks.len() - 1)]
    }

    fn next(&mut self) -> Token {
        let t = self.toks.get(self.pos).map_or(
            Token {
                tok: Tok::End,
                at: 0,
            },
            |t| Token {
                tok: t.tok.clone(),
                at: t.at,
            },
        );
        if self.pos < self.toks.len() {
            self.pos += 1;
        }
        t
    }

    fn expect(&mut self, sym: &'static str) -> Result<(), ParseError> {
        let t = self.next();
        if t.tok == Tok::Sym(sym) {
            Ok(())
        } else {
            Err(err(t.at, format!("expected '{sym}'")))
        }
    }

    fn expr(&mut self, min_bp: u8) -> Result<Expr, ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(err(self.peek().at, "expression nested too deeply"));
        }
        let e = self.expr_inner(min_bp);
        self.depth -= 1;
        e
    }

    fn expr_inner(&mut self, min_bp: u8) -> Result<Expr, ParseError> {
        let mut lhs = self.unary()?;
        while let Some((bp, op)) = infix(&self.peek().tok) {
            if bp <= min_bp {
                break;
            }
            let t = self.next();
            match op {
                Some(op) => {
                    let rhs = self.expr(bp)?;
                    lhs = Expr::Binary(op, Box::new(lhs), Box::new(rhs));
                }
                None => {
                    let spec = self.type_spec()?;
                    lhs = if matches!(&t.tok, Tok::Ident(s) if s == "is") {
                        Expr::Is(Box::new(lhs), spec)
                    } else {
                        Expr::As(Box::new(lhs), spec)
                    };
                }
            }
        }
        Ok(lhs)
    }

    fn type_spec(&mut self) -> Result<TypeSpec, ParseError> {
        let t = self.next();
        let first = match t.tok {
            Tok::Ident(s) | Tok::Quoted(s) => s,
            _ => return Err(err(t.at, "expected a type name")),
        };
        if self.peek().tok == Tok::Sym(".") {
            self.next();
            let t = self.next();
            match t.tok {
                Tok::Ident(s) | Tok::Quoted(s) => Ok(TypeSpec {
                    namespace: Some(first),
                    name: s,
                }),
                _ => Err(err(t.at, "expected a type name")),
            }
        } else {
            Ok(TypeSpec {
                namespace: None,
                name: first,
            })
        }
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        match self.peek().tok {
            Tok::Sym("-") => {
                self.next();
                let e = self.expr(10)?;
                Ok(Expr::Neg(Box::new(e)))
            }
            Tok::Sym("+") => {
                self.next();
                self.expr(10)
            }
            _ => self.postfix(),
        }
    }

    fn postfix(&mut self) -> Result<Expr, ParseError> {
        let mut e = self.primary()?;
        loop {
            match self.peek().tok {
                Tok::Sym(".") => {
                    self.next();
                    let t = self.next();
                    let name = match t.tok {
                        Tok::Ident(s) | Tok::Quoted(s) => s,
                        _ => return Err(err(t.at, "expected a name after '.'")),
                    };
                    if self.peek().tok == Tok::Sym("(") {
                        let args = self.args()?;
                        e = Expr::Call(Some(Box::new(e)), name, args);
                    } else {
                        e = Expr::Member(Box::new(e), name);
                    }
                }
                Tok::Sym("[") => {
                    self.next();
                    let idx = self.expr(0)?;
                    self.expect("]")?;
                    e = Expr::Index(Box::new(e), Box::new(idx));
                }
                _ => return Ok(e),
            }
        }
    }

    fn args(&mut self) -> Result<Vec<Expr>, ParseError> {
        self.expect("(")?;
        let mut args = Vec::new();
        if self.peek().tok == Tok::Sym(")") {
            self.next();
            return Ok(args);
        }
        loop {
            args.push(self.expr(0)?);
            let t = self.next();
            match t.tok {
                Tok::Sym(",") => continue,
                Tok::Sym(")") => return Ok(args),
                _ => return Err(err(t.at, "expected ',' or ')'")),
            }
        }
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        let t = self.next();
        match t.tok {
            Tok::Sym("(") => {
                let e = self.expr(0)?;
                self.expect(")")?;
                Ok(e)
            }
            Tok::Sym("{") => {
                self.expect("}")?;
                Ok(Expr::Empty)
            }
            Tok::Str(s) => Ok(Expr::Lit(Lit::String(s))),
            Tok::Num(n) => self.number(&n, t.at),
            Tok::DateTime(s) => {
                let v = PartialDateTime::parse_date_time(&s)
                    .ok_or_else(|| err(t.at, format!("invalid date/time literal @{s}")))?;
                Ok(Expr::Lit(if v.has_time() || s.ends_with('T') {
                    Lit::DateTime(v)
                } else {
                    Lit::Date(v)
                }))
            }
            Tok::Time(s) => {
                let v = PartialDateTime::parse_time(&s)
                    .ok_or_else(|| err(t.at, format!("invalid time literal @T{s}")))?;
                Ok(Expr::Lit(Lit::Time(v)))
            }
            Tok::Var(v) => Ok(Expr::Var(v)),
            Tok::Special(s) => match s.as_str() {
                "this" => Ok(Expr::This),
                "index" => Ok(Expr::IndexVar),
                "total" => Ok(Expr::Total),
                _ => Err(err(t.at, format!("unknown special variable ${s}"))),
            },
            Tok::Ident(s) if s == "true" => Ok(Expr::Lit(Lit::Boolean(true))),
            Tok::Ident(s) if s == "false" => Ok(Expr::Lit(Lit::Boolean(false))),
            Tok::Ident(s) | Tok::Quoted(s) => {
                if self.peek().tok == Tok::Sym("(") {
                    let args = self.args()?;
                    Ok(Expr::Call(None, s, args))
                } else {
                    Ok(Expr::Ident(s))
                }
            }
            Tok::End => Err(err(t.at, "unexpected end of expression")),
            _ => Err(err(t.at, "expected an expression")),
        }
    }

    fn number(&mut self, n: &str, at: usize) -> Result<Expr, ParseError> {
        let unit = match &self.peek().tok {
            Tok::Str(u) => Some(u.clone()),
            Tok::Ident(u) if CALENDAR_UNITS.contains(&u.as_str()) => Some(u.clone()),
            _ => None,
        };
        let value =
            Decimal::parse(n).ok_or_else(|| err(at, format!("invalid number literal {n}")))?;
        if let Some(unit) = unit {
            self.next();
            return Ok(Expr::Lit(Lit::Quantity(Quantity { value, unit })));
        }
        if n.contains('.') {
            Ok(Expr::Lit(Lit::Decimal(value)))
        } else {
            n.parse::<i64>()
                .map(|i| Expr::Lit(Lit::Integer(i)))
                .map_err(|_| err(at, format!("integer literal {n} is out of range")))
        }
    }
}
