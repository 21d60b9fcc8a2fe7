//! GUC literals: quoting a value the way PostgreSQL's config lexer reads it.

/// Quote a string as a GUC literal, the way PostgreSQL's config lexer reads it.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_follows_the_config_lexer() {
        assert_eq!(quote("plain"), "'plain'");
        assert_eq!(quote("it's"), "'it''s'");
        assert_eq!(quote(r"C:\dir"), r"'C:\\dir'");
        assert_eq!(quote(""), "''");
    }
}
