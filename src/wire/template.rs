//! The grammar of a reply address template (`server.reply_to`): text with `{name}` placeholders that the server
//! fills from each request's members (`{creator}`, a task id attribute, …).
//!
//! This module only parses; filling (and refusing unsafe values) is the server's `reply_address`. It does no I/O.

/// A template that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed template {0:?}")]
pub struct TemplateError(pub String);

/// Checks a template's syntax.
pub fn check_template(t: &str) -> Result<(), TemplateError> {
    placeholders(t).map(drop)
}

/// The byte spans `(open, close)` of each `{name}` in `t`: an unclosed `{`, an empty `{}`, a nested `{` or a
/// stray `}` is an error.
pub fn placeholders(t: &str) -> Result<Vec<(usize, usize)>, TemplateError> {
    let bad = || TemplateError(t.into());
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(open) = t[i..].find('{').map(|o| o + i) {
        let close = t[open..].find('}').map(|c| c + open).ok_or_else(bad)?;
        let name = &t[open + 1..close];
        if name.is_empty() || name.contains('{') {
            return Err(bad());
        }
        out.push((open, close));
        i = close + 1;
    }
    if t[i..].contains('}') {
        return Err(bad());
    }
    Ok(out)
}
