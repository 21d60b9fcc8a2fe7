//! pgrepl's decisions are sentences, and many count seconds ("down for
//! 3.2s"): what changed is the gist, the sentence without its numbers.

/// A sentence without its digits: two sentences with the same gist say the
/// same thing at different moments.
pub(crate) fn gist(s: &str) -> String {
    s.chars().filter(|c| !c.is_ascii_digit()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gist_ignores_numbers_only() {
        assert_eq!(gist("down for 3.2s"), gist("down for 10.7s"));
        assert_ne!(gist("down for 3.2s"), gist("up for 3.2s"));
    }
}
