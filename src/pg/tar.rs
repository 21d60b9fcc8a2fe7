//! A streaming extractor for the tar archives PostgreSQL's BASE_BACKUP
//! sends: ustar headers, regular files, directories and symlinks, fed in
//! whatever chunks the network delivers. Only what PostgreSQL writes is
//! accepted: an entry that would land outside the target dir, or a kind of
//! entry the server never sends, is an error rather than something to guess.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

const BLOCK: usize = 512;

/// What one header describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink(String),
}

/// One parsed header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub path: String,
    pub size: u64,
    pub kind: Kind,
}

/// Parse one 512-byte header. `Ok(None)` is an all-zero (end) block.
pub fn parse_header(b: &[u8; BLOCK]) -> io::Result<Option<Header>> {
    if b.iter().all(|&x| x == 0) {
        return Ok(None);
    }
    let stored = octal(&b[148..156])?;
    // The checksum treats its own field as eight spaces.
    let sum: u64 = b.iter().enumerate().map(|(i, &x)| if (148..156).contains(&i) { 32 } else { x as u64 }).sum();
    if sum != stored {
        return Err(bad("tar header checksum mismatch (the stream is corrupt or out of step)"));
    }
    let name = cstr(&b[0..100]);
    let prefix = if &b[257..262] == b"ustar" { cstr(&b[345..500]) } else { String::new() };
    let path = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
    let size = octal(&b[124..136])?;
    let kind = match b[156] {
        b'0' | 0 => Kind::File,
        b'5' => Kind::Dir,
        b'2' => Kind::Symlink(cstr(&b[157..257])),
        t => return Err(bad(&format!("tar entry {path}: type '{}' is not one PostgreSQL sends", t as char))),
    };
    Ok(Some(Header { path, size, kind }))
}

fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|&x| x == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
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
    /// Saw the end-of-archive block.
    End,
}

/// Unpacks one archive into `root`, chunk by chunk.
pub struct Extractor {
    root: PathBuf,
    owner: Option<(u32, u32)>,
    state: State,
    header: Vec<u8>,
    /// Bytes of file data written so far.
    pub written: u64,
}

impl Extractor {
    /// Unpack into `root` (which must exist). With `owner`, every entry is
    /// chowned to that uid/gid (pgrepl runs as root, PostgreSQL does not).
    pub fn new(root: &Path, owner: Option<(u32, u32)>) -> Extractor {
        Extractor {
            root: root.to_path_buf(),
            owner,
            state: State::Header,
            header: Vec::with_capacity(BLOCK),
            written: 0,
        }
    }

    /// Feed the next chunk of the archive.
    pub fn push(&mut self, mut data: &[u8]) -> io::Result<()> {
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

    fn create(&mut self, h: Header) -> io::Result<State> {
        let path = inside(&self.root, &h.path)?;
        let pad = (BLOCK - (h.size as usize % BLOCK)) % BLOCK;
        match h.kind {
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
        let body = h.size as usize + pad;
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
    pub fn finish(&self) -> io::Result<()> {
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
