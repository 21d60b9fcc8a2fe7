//! A streaming extractor for the tar archives PostgreSQL's BASE_BACKUP
//! sends: ustar headers, regular files, directories and symlinks, fed in
//! whatever chunks the network delivers. Only what PostgreSQL writes is
//! accepted: an entry that would land outside the target dir, or a kind of
//! entry the server never sends, is an error rather than something to guess.
//! Sizes of 8 GiB and more come in base-256 (as PostgreSQL and GNU tar
//! write them), and pax extended headers (`x`, `g`) are read: `path` and
//! `size` from an `x` header apply to the entry that follows it.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

const BLOCK: usize = 512;

/// What one header describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Dir,
    Symlink(String),
    /// A pax extended header: its body holds `path`, `size`, ... for the
    /// next entry (`global`: for every later entry).
    Pax {
        global: bool,
    },
}

/// One parsed header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    pub path: String,
    pub size: u64,
    pub kind: Kind,
}

/// Parse one 512-byte header. `Ok(None)` is an all-zero (end) block.
pub(crate) fn parse_header(b: &[u8; BLOCK]) -> io::Result<Option<Header>> {
    if b.iter().all(|&x| x == 0) {
        return Ok(None);
    }
    let stored = number(&b[148..156])?;
    // The checksum treats its own field as eight spaces.
    let sum: u64 = b.iter().enumerate().map(|(i, &x)| if (148..156).contains(&i) { 32 } else { x as u64 }).sum();
    if sum != stored {
        return Err(bad("tar header checksum mismatch (the stream is corrupt or out of step)"));
    }
    let name = cstr(&b[0..100]);
    let prefix = if &b[257..262] == b"ustar" { cstr(&b[345..500]) } else { String::new() };
    let path = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
    let size = number(&b[124..136])?;
    let kind = match b[156] {
        b'0' | 0 => Kind::File,
        b'5' => Kind::Dir,
        b'2' => Kind::Symlink(cstr(&b[157..257])),
        b'x' => Kind::Pax { global: false },
        b'g' => Kind::Pax { global: true },
        t => return Err(bad(&format!("tar entry {path}: type '{}' is not one PostgreSQL sends", t as char))),
    };
    Ok(Some(Header { path, size, kind }))
}

fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|&x| x == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// A numeric header field: octal text, or base-256 when the first byte has
/// its high bit set (big-endian binary in the rest of the field).
fn number(b: &[u8]) -> io::Result<u64> {
    if b.first().is_some_and(|&x| x & 0x80 != 0) {
        if b[0] & 0x40 != 0 {
            return Err(bad("tar header: a negative base-256 number"));
        }
        let mut v: u64 = u64::from(b[0] & 0x3f);
        for &x in &b[1..] {
            v = v
                .checked_mul(256)
                .and_then(|v| v.checked_add(u64::from(x)))
                .ok_or_else(|| bad("tar header: a base-256 number does not fit 64 bits"))?;
        }
        return Ok(v);
    }
    octal(b)
}

/// What a pax `x` header says about the next entry.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Pax {
    path: Option<String>,
    size: Option<u64>,
}

/// Parse pax records, `"<len> <key>=<value>\n"` each.
fn parse_pax(mut body: &[u8]) -> io::Result<Pax> {
    let mut pax = Pax::default();
    while !body.is_empty() && body[0] != 0 {
        let sp = body.iter().position(|&c| c == b' ').ok_or_else(|| bad("pax header: a record without a length"))?;
        let len: usize = std::str::from_utf8(&body[..sp])
            .ok()
            .and_then(|l| l.parse().ok())
            .filter(|&l| l > sp + 1 && l <= body.len())
            .ok_or_else(|| bad("pax header: a record with a bad length"))?;
        let rec = &body[sp + 1..len];
        let rec = rec.strip_suffix(b"\n").unwrap_or(rec);
        if let Some(eq) = rec.iter().position(|&c| c == b'=') {
            let (k, v) = (&rec[..eq], String::from_utf8_lossy(&rec[eq + 1..]).into_owned());
            match k {
                b"path" => pax.path = Some(v),
                b"size" => {
                    pax.size = Some(v.parse().map_err(|_| bad(&format!("pax header: size `{v}` is not a number")))?)
                }
                _ => {} // mtime, uid, ... do not matter for a data dir
            }
        }
        body = &body[len..];
    }
    Ok(pax)
}

fn octal(b: &[u8]) -> io::Result<u64> {
    let s = cstr(b);
    let s = s.trim_matches(|c: char| c == ' ' || c == '\0');
    if s.is_empty() {
        return Ok(0);
    }
    u64::from_str_radix(s, 8).map_err(|_| bad(&format!("tar header: `{s}` is not an octal number")))
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// `path` under `root`, refusing absolute paths and `..`.
fn inside(root: &Path, path: &str) -> io::Result<PathBuf> {
    let rel = Path::new(path.trim_end_matches('/'));
    if rel.components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir)) {
        return Err(bad(&format!("tar entry `{path}` points outside the data dir")));
    }
    Ok(root.join(rel))
}

enum State {
    /// Collecting a 512-byte header.
    Header,
    /// Writing `left` more bytes of a file, then skipping `pad`.
    Data { file: File, left: u64, pad: usize },
    /// Skipping padding or the body of an entry without data.
    Skip(usize),
    /// Reading a pax header's body (`left` more bytes, then `pad`).
    Pax { buf: Vec<u8>, left: usize, pad: usize, global: bool },
    /// Saw the end-of-archive block.
    End,
}

/// Unpacks one archive into `root`, chunk by chunk.
pub(crate) struct Extractor {
    root: PathBuf,
    owner: Option<(u32, u32)>,
    state: State,
    header: Vec<u8>,
    /// A pax `x` header's overrides, for the next entry.
    pending: Pax,
    /// Bytes of file data written so far.
    pub written: u64,
}

impl Extractor {
    /// Unpack into `root` (which must exist). With `owner`, every entry is
    /// chowned to that uid/gid (pgrepl runs as root, PostgreSQL does not).
    pub(crate) fn new(root: &Path, owner: Option<(u32, u32)>) -> Extractor {
        Extractor {
            root: root.to_path_buf(),
            owner,
            state: State::Header,
            header: Vec::with_capacity(BLOCK),
            pending: Pax::default(),
            written: 0,
        }
    }

    /// Feed the next chunk of the archive.
    pub(crate) fn push(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            match &mut self.state {
                State::End => return Ok(()), // trailing zero blocks
                State::Skip(n) => {
                    let k = (*n).min(data.len());
                    *n -= k;
                    data = &data[k..];
                    if *n == 0 {
                        self.state = State::Header;
                    }
                }
                State::Pax { buf, left, pad, global } => {
                    let k = (*left).min(data.len());
                    buf.extend_from_slice(&data[..k]);
                    *left -= k;
                    data = &data[k..];
                    if *left == 0 {
                        let pax = parse_pax(buf)?;
                        // A global header's path or size would name no one
                        // entry; only per-entry overrides are kept.
                        if !*global {
                            self.pending = pax;
                        }
                        self.state = if *pad == 0 { State::Header } else { State::Skip(*pad) };
                    }
                }
                State::Data { file, left, pad } => {
                    let k = (*left).min(data.len() as u64) as usize;
                    file.write_all(&data[..k])?;
                    *left -= k as u64;
                    self.written += k as u64;
                    data = &data[k..];
                    if *left == 0 {
                        self.state = if *pad == 0 { State::Header } else { State::Skip(*pad) };
                    }
                }
                State::Header => {
                    let k = (BLOCK - self.header.len()).min(data.len());
                    self.header.extend_from_slice(&data[..k]);
                    data = &data[k..];
                    if self.header.len() == BLOCK {
                        let mut b = [0u8; BLOCK];
                        b.copy_from_slice(&self.header);
                        self.header.clear();
                        self.state = match parse_header(&b)? {
                            None => State::End,
                            Some(h) => self.create(h)?,
                        };
                    }
                }
            }
        }
        Ok(())
    }

    fn create(&mut self, mut h: Header) -> io::Result<State> {
        if let Kind::Pax { global } = h.kind {
            let left = usize::try_from(h.size)
                .ok()
                .filter(|&n| n <= 1 << 20)
                .ok_or_else(|| bad("pax header larger than 1 MiB"))?;
            let pad = (BLOCK - left % BLOCK) % BLOCK;
            return Ok(State::Pax { buf: Vec::with_capacity(left), left, pad, global });
        }
        let pax = std::mem::take(&mut self.pending);
        if let Some(p) = pax.path {
            h.path = p;
        }
        if let Some(s) = pax.size {
            h.size = s;
        }
        let path = inside(&self.root, &h.path)?;
        let pad = ((BLOCK as u64 - (h.size % BLOCK as u64)) % BLOCK as u64) as usize;
        match h.kind {
            Kind::Pax { .. } => unreachable!("handled above"),
            Kind::Dir => {
                std::fs::DirBuilder::new().mode(0o700).create(&path).or_else(|e| {
                    if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })?;
                self.own(&path)?;
            }
            Kind::Symlink(target) => {
                std::os::unix::fs::symlink(&target, &path)?;
                self.own(&path)?;
            }
            Kind::File => {
                let file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
                self.own(&path)?;
                if h.size > 0 {
                    return Ok(State::Data { file, left: h.size, pad });
                }
                return Ok(State::Header);
            }
        }
        // Directories and links carry no data, but skip any the header claims.
        let body = usize::try_from(h.size).map_err(|_| bad("tar entry too large"))? + pad;
        Ok(if body == 0 { State::Header } else { State::Skip(body) })
    }

    fn own(&self, path: &Path) -> io::Result<()> {
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
        }
        Ok(())
    }

    /// The archive is over: it must not stop inside an entry. (Servers before
    /// PostgreSQL 15 omit the end-of-archive blocks, so those are optional.)
    pub(crate) fn finish(&self) -> io::Result<()> {
        match self.state {
            State::Header if self.header.is_empty() => Ok(()),
            State::End => Ok(()),
            _ => Err(bad("the base backup archive ended in the middle of an entry")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ustar header as PostgreSQL writes one.
    fn header(name: &str, size: u64, kind: u8, link: &str) -> [u8; BLOCK] {
        let mut b = [0u8; BLOCK];
        b[..name.len()].copy_from_slice(name.as_bytes());
        b[100..108].copy_from_slice(b"0000600\0");
        b[124..136].copy_from_slice(format!("{size:011o} ").as_bytes());
        b[156] = kind;
        b[157..157 + link.len()].copy_from_slice(link.as_bytes());
        b[257..263].copy_from_slice(b"ustar\0");
        b[263..265].copy_from_slice(b"00");
        b[148..156].copy_from_slice(b"        ");
        let sum: u64 = b.iter().map(|&x| x as u64).sum();
        b[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        b
    }

    fn archive(trailer: bool) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&header("base/", 0, b'5', ""));
        a.extend_from_slice(&header("base/1", 0, b'5', ""));
        let body = b"hello, standby";
        a.extend_from_slice(&header("base/1/123", body.len() as u64, b'0', ""));
        a.extend_from_slice(body);
        a.resize(a.len() + BLOCK - body.len(), 0);
        a.extend_from_slice(&header("empty", 0, b'0', ""));
        a.extend_from_slice(&header("pg_tblspc", 0, b'5', ""));
        a.extend_from_slice(&header("pg_tblspc/16400", 0, b'2', "/somewhere"));
        if trailer {
            a.resize(a.len() + 2 * BLOCK, 0);
        }
        a
    }

    #[test]
    fn headers_parse_and_checksums_are_checked() {
        let h = header("global/pg_control", 8192, b'0', "");
        assert_eq!(
            parse_header(&h).unwrap(),
            Some(Header { path: "global/pg_control".into(), size: 8192, kind: Kind::File })
        );
        let mut broken = h;
        broken[0] = b'G';
        assert!(parse_header(&broken).unwrap_err().to_string().contains("checksum"));
        assert_eq!(parse_header(&[0u8; BLOCK]).unwrap(), None);
        let fifo = header("p", 0, b'6', "");
        assert!(parse_header(&fifo).unwrap_err().to_string().contains("not one PostgreSQL sends"));
    }

    #[test]
    fn extracts_in_any_chunking_with_or_without_trailer() {
        for (chunk, trailer) in [(1, true), (7, false), (512, true), (100_000, false)] {
            let dir = tempfile::tempdir().unwrap();
            let mut x = Extractor::new(dir.path(), None);
            for c in archive(trailer).chunks(chunk) {
                x.push(c).unwrap();
            }
            x.finish().unwrap();
            assert_eq!(std::fs::read(dir.path().join("base/1/123")).unwrap(), b"hello, standby");
            assert_eq!(std::fs::metadata(dir.path().join("empty")).unwrap().len(), 0);
            assert_eq!(std::fs::read_link(dir.path().join("pg_tblspc/16400")).unwrap(), PathBuf::from("/somewhere"));
            assert_eq!(x.written, 14);
        }
    }

    #[test]
    fn sizes_of_8_gib_and_more_parse_in_base_256() {
        // 9 GiB does not fit the 11 octal digits: PostgreSQL writes it base-256.
        let size: u64 = 9 << 30;
        let mut h = header("base/1/big", 0, b'0', "");
        let mut field = [0u8; 12];
        field[0] = 0x80;
        field[4..].copy_from_slice(&size.to_be_bytes());
        h[124..136].copy_from_slice(&field);
        h[148..156].copy_from_slice(b"        ");
        let sum: u64 = h.iter().map(|&x| x as u64).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        assert_eq!(parse_header(&h).unwrap().unwrap().size, size);
        assert_eq!(number(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00]).unwrap(), 256);
        assert!(number(&[0xff; 12]).is_err(), "negative numbers are refused");
    }

    #[test]
    fn a_pax_header_sets_the_next_entrys_path_and_size() {
        let long = format!("base/1/{}", "n".repeat(150));
        let body = b"pax says so";
        let rec = |k: &str, v: &str| {
            let line = format!(" {k}={v}\n");
            // The length counts its own digits.
            let n = (1..=4).map(|d| line.len() + d).find(|&n| n.to_string().len() + line.len() == n).unwrap();
            format!("{n}{line}")
        };
        let pax = format!("{}{}{}", rec("path", &long), rec("size", &body.len().to_string()), rec("mtime", "1.5"));
        let mut a = Vec::new();
        a.extend_from_slice(&header("base/", 0, b'5', ""));
        a.extend_from_slice(&header("base/1", 0, b'5', ""));
        a.extend_from_slice(&header("PaxHeaders/x", pax.len() as u64, b'x', ""));
        a.extend_from_slice(pax.as_bytes());
        a.resize(a.len().div_ceil(BLOCK) * BLOCK, 0);
        // The ustar header's own name and size are superseded.
        a.extend_from_slice(&header("base/1/short", 0, b'0', ""));
        a.extend_from_slice(body);
        a.resize(a.len().div_ceil(BLOCK) * BLOCK, 0);
        let g = b"19 comment=ignored\n";
        a.extend_from_slice(&header("global-pax", g.len() as u64, b'g', ""));
        a.extend_from_slice(&g[..]);
        a.resize(a.len().div_ceil(BLOCK) * BLOCK, 0);
        a.extend_from_slice(&header("after", 0, b'0', ""));
        a.resize(a.len() + 2 * BLOCK, 0);
        for chunk in [1, 100, 4096] {
            let dir = tempfile::tempdir().unwrap();
            let mut x = Extractor::new(dir.path(), None);
            for c in a.chunks(chunk) {
                x.push(c).unwrap();
            }
            x.finish().unwrap();
            assert_eq!(std::fs::read(dir.path().join(&long)).unwrap(), body);
            assert!(!dir.path().join("base/1/short").exists());
            assert!(dir.path().join("after").exists(), "the override applied to one entry only");
        }
    }

    #[test]
    fn refuses_escapes_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let mut x = Extractor::new(dir.path(), None);
        let err = x.push(&header("../evil", 0, b'0', "")).unwrap_err();
        assert!(err.to_string().contains("outside the data dir"), "{err}");
        assert!(!dir.path().parent().unwrap().join("evil").exists());

        let mut x = Extractor::new(dir.path(), None);
        let a = archive(true);
        x.push(&a[..3 * BLOCK + 5]).unwrap();
        assert!(x.finish().unwrap_err().to_string().contains("middle of an entry"));
    }
}
