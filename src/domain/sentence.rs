//! pgrepl's decisions are sentences, and many count seconds ("down for
//! 3.2s"): what changed is the gist, the sentence without its numbers —
//! but with its node names, digits and all ("pg-1" is not "pg-2").

/// A sentence without its digits, except inside `names`: two sentences
/// with the same gist say the same thing at different moments.
pub(crate) fn gist(s: &str, names: &[&str]) -> String {
    // Only names with a digit need keeping; longest first, so `pg-10` is
    // not read as `pg-1` and a stray 0.
    let mut names: Vec<&str> = names.iter().copied().filter(|n| n.contains(|c: char| c.is_ascii_digit())).collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    'next: while let Some(c) = rest.chars().next() {
        for n in &names {
            if let Some(after) = rest.strip_prefix(n) {
                out.push_str(n);
                rest = after;
                continue 'next;
            }
        }
        if !c.is_ascii_digit() {
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODES: &[&str] = &["pg-1", "pg-2", "pg-10"];

    #[test]
    fn the_gist_ignores_numbers_only() {
        assert_eq!(gist("down for 3.2s", NODES), gist("down for 10.7s", NODES));
        assert_ne!(gist("down for 3.2s", NODES), gist("up for 3.2s", NODES));
    }

    #[test]
    fn node_names_keep_their_digits() {
        let a = gist("primary pg-1 is writable, down for 3.2s", NODES);
        assert_ne!(a, gist("primary pg-2 is writable, down for 3.2s", NODES));
        assert_eq!(a, gist("primary pg-1 is writable, down for 9.9s", NODES));
        assert_ne!(gist("pg-10 lags", NODES), gist("pg-1 lags", NODES), "the longest name is matched first");
    }
}
