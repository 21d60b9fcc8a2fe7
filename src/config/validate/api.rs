//! `[api]`: where the listeners bind, HTTPS, and the token the write
//! endpoints ask for.

use std::path::Path;

use super::{resolve, Problems};
use crate::config::{file, Api, Secret, WriteAccess};

/// Shortest token accepted without a warning: 128 bits as hex.
const SHORT_TOKEN: usize = 32;

pub(super) fn api(raw: &file::Api, tls_set: bool, base: &Path, p: &mut Problems) -> Api {
    if let Some(t) = raw.tls.as_ref().filter(|t| *t.get_ref() && !tls_set) {
        p.push(t, "[api] tls = true serves the [tls] certificate, but there is no [tls] section; add one (see the README's TLS section) or drop tls");
    }
    Api {
        listen: raw.listen.as_ref().map_or("127.0.0.1", |l| l.get_ref()).to_string(),
        enabled: raw.enabled.unwrap_or(true),
        write: raw.token_file.as_ref().map_or(WriteAccess::Off, |f| token(f, base, p)),
        tls: raw.tls.as_ref().is_some_and(|t| *t.get_ref()),
    }
}

/// Read the token file. One others can read is refused (with a warning,
/// not an error: the cluster still runs, its write endpoints stay off).
fn token(f: &toml::Spanned<String>, base: &Path, p: &mut Problems) -> WriteAccess {
    use std::os::unix::fs::PermissionsExt;
    let path = resolve(base, f.get_ref());
    let at = p.loc.at(f.span());
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if p.lenient_secrets && e.kind() == std::io::ErrorKind::PermissionDenied => {
            return WriteAccess::Refused(format!("{} cannot be read by this user", path.display()))
        }
        Err(e) => {
            p.push(
                f,
                format!("cannot read [api] token_file {}: {e}; create it (mode 0600) or fix the path", path.display()),
            );
            return WriteAccess::Off;
        }
    };
    let mode = std::fs::metadata(&path).map_or(0, |m| m.permissions().mode()) & 0o777;
    if mode & 0o077 != 0 {
        let why = format!(
            "[api] token_file {} is readable by other users (mode {mode:o}), so the write endpoints are off; `chmod 600 {}` and reload",
            path.display(),
            path.display()
        );
        p.warnings.push(format!("{at}: {why}"));
        return WriteAccess::Refused(why);
    }
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if token.is_empty() {
        p.push(
            f,
            format!(
                "[api] token_file {} is empty; put a token on its first line (e.g. `openssl rand -hex 32`)",
                path.display()
            ),
        );
        return WriteAccess::Off;
    }
    if token.len() < SHORT_TOKEN {
        p.warnings.push(format!(
            "{at}: the API token in {} is only {} characters; use at least {SHORT_TOKEN} (`openssl rand -hex 32`)",
            path.display(),
            token.len()
        ));
    }
    WriteAccess::Token(Secret::new(token))
}
