//! Human-written quantities in the config: byte sizes ("160MB") and
//! durations ("5s"). Parsing is strict: a value we cannot read is an error,
//! never a silent default.

use std::fmt;
use std::time::Duration;

/// A size in bytes, written in PostgreSQL's units (`kB`, `MB`, `GB`, `TB`,
/// powers of 1024) so it can be handed to a GUC unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Parse `"160MB"`, `"1GB"`, `"8kB"` or a plain number of bytes.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: u64 = num.parse().map_err(|_| format!("`{s}` is not a size; write it like \"160MB\""))?;
        let mult: u64 = match unit.trim() {
            "" | "B" => 1,
            "kB" | "KB" | "k" => 1 << 10,
            "MB" | "M" => 1 << 20,
            "GB" | "G" => 1 << 30,
            "TB" | "T" => 1 << 40,
            other => return Err(format!("unknown size unit `{other}` in `{s}`; use kB, MB, GB or TB")),
        };
        n.checked_mul(mult).map(ByteSize).ok_or_else(|| format!("size `{s}` is too large"))
    }
}

impl fmt::Display for ByteSize {
    /// Prints in the largest unit that divides the value exactly, which is
    /// also a form PostgreSQL accepts.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        for (unit, m) in [("TB", 1u64 << 40), ("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)] {
            if b >= m && b % m == 0 {
                return write!(f, "{}{unit}", b / m);
            }
        }
        write!(f, "{b}B")
    }
}

/// Parse a duration such as `"500ms"`, `"5s"`, `"2m"` or `"1h"`. A unit is
/// required, so `"5"` is rejected rather than guessed.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("`{s}` is not a duration; write it like \"5s\""))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" | "min" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        "" => Err(format!("duration `{s}` needs a unit; write it like \"{n}s\"")),
        other => Err(format!("unknown duration unit `{other}` in `{s}`; use ms, s, m or h")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_postgres_units() {
        assert_eq!(ByteSize::parse("160MB").unwrap().0, 160 << 20);
        assert_eq!(ByteSize::parse("8kB").unwrap().0, 8 << 10);
        assert_eq!(ByteSize::parse("1024").unwrap().0, 1024);
        assert!(ByteSize::parse("12 parsecs").is_err());
        assert!(ByteSize::parse("MB").is_err());
    }

    #[test]
    fn sizes_print_in_largest_exact_unit() {
        assert_eq!(ByteSize(160 << 20).to_string(), "160MB");
        assert_eq!(ByteSize(1536).to_string(), "1536B");
        assert_eq!(ByteSize(1 << 30).to_string(), "1GB");
    }

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("5").unwrap_err().contains("needs a unit"));
        assert!(parse_duration("5 fortnights").is_err());
    }
}
