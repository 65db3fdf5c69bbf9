//! `${...}` references in case strings.
//!
//! Two kinds share one syntax:
//! - `${param}` (no dot): a fragment parameter, replaced when the fragment is included (load time);
//! - `${node.var}`: a value captured on `node` by an earlier step, replaced when the step runs.
//!
//! `$$` is a literal `$`.

use std::collections::BTreeMap;
use std::fmt;

use super::names::is_name;

/// A parsed string with runtime variable references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Var(VarRef),
}

/// A reference to a captured variable: `${node.name}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VarRef {
    pub node: String,
    pub name: String,
}

impl fmt::Display for VarRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "${{{}.{}}}", self.node, self.name)
    }
}

/// A problem in a `${...}` reference; `offset` is the byte offset inside the string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    pub offset: usize,
    pub message: String,
}

/// One token of a raw string: literal text or a reference (without the `${` `}`).
enum Token<'a> {
    Text(&'a str),
    Dollar,
    Ref { offset: usize, body: &'a str },
}

fn tokenize(s: &str) -> Result<Vec<Token<'_>>, TemplateError> {
    let mut out = Vec::new();
    let mut rest = s;
    let mut base = 0;
    while let Some(i) = rest.find('$') {
        if i > 0 {
            out.push(Token::Text(&rest[..i]));
        }
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push(Token::Dollar);
            base += i + 2;
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('{') {
            let Some(end) = tail.find('}') else {
                return Err(TemplateError {
                    offset: base + i,
                    message: "unterminated `${`".into(),
                });
            };
            out.push(Token::Ref {
                offset: base + i,
                body: &tail[..end],
            });
            base += i + 2 + end + 1;
            rest = &tail[end + 1..];
        } else {
            // A lone `$` is literal (regex end anchors are common in patterns).
            out.push(Token::Text("$"));
            base += i + 1;
            rest = after;
        }
    }
    if !rest.is_empty() {
        out.push(Token::Text(rest));
    }
    Ok(out)
}

/// Replace `${param}` references (no dot) with `params`; `${node.var}` and `$$` pass through unchanged.
pub fn substitute_params(
    s: &str,
    params: &BTreeMap<String, String>,
) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(s.len());
    for token in tokenize(s)? {
        match token {
            Token::Text(t) => out.push_str(t),
            Token::Dollar => out.push_str("$$"),
            Token::Ref { offset, body } => {
                if body.contains('.') {
                    out.push_str("${");
                    out.push_str(body);
                    out.push('}');
                } else if let Some(value) = params.get(body) {
                    out.push_str(value);
                } else {
                    return Err(TemplateError {
                        offset,
                        message: format!("undefined parameter `${{{body}}}`"),
                    });
                }
            }
        }
    }
    Ok(out)
}

impl Template {
    /// Parse a string in which every `${...}` must be a `${node.var}` reference.
    pub fn parse(s: &str) -> Result<Template, TemplateError> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        for token in tokenize(s)? {
            match token {
                Token::Text(t) => literal.push_str(t),
                Token::Dollar => literal.push('$'),
                Token::Ref { offset, body } => {
                    let Some((node, name)) = body.split_once('.') else {
                        return Err(TemplateError {
                            offset,
                            message: format!(
                                "undefined parameter `${{{body}}}` (variables are written `${{node.name}}`)"
                            ),
                        });
                    };
                    if !is_name(node) || !is_name(name) {
                        return Err(TemplateError {
                            offset,
                            message: format!("bad variable reference `${{{body}}}`"),
                        });
                    }
                    if !literal.is_empty() {
                        pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                    }
                    pieces.push(Piece::Var(VarRef {
                        node: node.to_string(),
                        name: name.to_string(),
                    }));
                }
            }
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        Ok(Template { pieces })
    }

    /// The variables this template reads.
    pub fn vars(&self) -> impl Iterator<Item = &VarRef> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Var(v) => Some(v),
            Piece::Literal(_) => None,
        })
    }

    /// Fill in variables; `escape` is applied to each value (e.g. `regex::escape` for patterns).
    /// Returns the first missing variable as the error.
    pub fn render(
        &self,
        lookup: impl Fn(&VarRef) -> Option<String>,
        escape: fn(&str) -> String,
    ) -> Result<String, VarRef> {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Literal(l) => out.push_str(l),
                Piece::Var(v) => match lookup(v) {
                    Some(value) => out.push_str(&escape(&value)),
                    None => return Err(v.clone()),
                },
            }
        }
        Ok(out)
    }

    /// The text with every variable replaced by a placeholder (for validating a regex before run time).
    pub fn with_placeholders(&self, placeholder: &str) -> String {
        self.render(|_| Some(placeholder.to_string()), |s| s.to_string())
            .unwrap_or_default()
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for piece in &self.pieces {
            match piece {
                Piece::Literal(l) => f.write_str(l)?,
                Piece::Var(v) => write!(f, "{v}")?,
            }
        }
        Ok(())
    }
}

/// Identity escape for [`Template::render`].
pub fn no_escape(s: &str) -> String {
    s.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vars_and_literals() {
        let t = Template::parse("ping ${server.mleid} 5 $$x end$").unwrap();
        let vars: Vec<_> = t.vars().map(|v| v.to_string()).collect();
        assert_eq!(vars, ["${server.mleid}"]);
        let out = t.render(|_| Some("fd00::1".into()), no_escape).unwrap();
        assert_eq!(out, "ping fd00::1 5 $x end$");
    }

    #[test]
    fn missing_var_is_reported() {
        let t = Template::parse("a ${n.v}").unwrap();
        assert_eq!(
            t.render(|_| None, no_escape).unwrap_err().to_string(),
            "${n.v}"
        );
    }

    #[test]
    fn errors_carry_offsets() {
        assert_eq!(Template::parse("ab ${x").unwrap_err().offset, 3);
        let e = Template::parse("ab ${param}").unwrap_err();
        assert_eq!(e.offset, 3);
        assert!(e.message.contains("undefined parameter"), "{}", e.message);
        assert!(Template::parse("${a.b c}").is_err());
    }

    #[test]
    fn params_substitute_but_vars_pass_through() {
        let mut p = BTreeMap::new();
        p.insert("leader".to_string(), "server".to_string());
        let s = substitute_params("node ${leader} ${server.x} $$", &p).unwrap();
        assert_eq!(s, "node server ${server.x} $$");
        assert!(
            substitute_params("${nope}", &p)
                .unwrap_err()
                .message
                .contains("nope")
        );
    }
}
