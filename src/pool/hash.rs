//! Content digests of synced files: MD5 (4.3 dialect) or BLAKE2b-512 (4.14 dialect), lowercase hex.
//!
//! BLAKE2b here is exactly Python's `hashlib.blake2b()` with no arguments (64-byte digest, no key, salt
//! or personalisation), since stock nodes compare our digests with theirs.
//!
//! Large files are memory-mapped to spare a copy per block. Only a regular file reached without
//! following a symbolic link is hashed: a link could make the master publish a file from outside its
//! synced directories, and opening a FIFO would hang the thread.
//!
//! A mapped file that another process truncates in place while it is being hashed raises SIGBUS. Wazuh's
//! own writers (authd for `client.keys`, remoted for `merged.mg`, the API for rules and shared files)
//! replace files by renaming a new one over them, which leaves the mapped old file intact; set
//! [`MMAP_THRESHOLD_BYTES`] to `u64::MAX` to read every file instead.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use blake2::Blake2b512;
use md5::{Digest, Md5};
use memmap2::Mmap;

use crate::sync::HashKind;

/// Files of this size and more are memory-mapped; smaller ones are read.
pub const MMAP_THRESHOLD_BYTES: u64 = 1 << 20;

/// Read size for files below the mapping threshold.
const READ_BLOCK_BYTES: usize = 64 * 1024;

/// The lowercase hex digest of the file at `path`, which must be a regular file and not a symbolic link.
pub fn hash_file(path: &Path, kind: HashKind) -> io::Result<String> {
    let (file, meta) = open_regular(path)?;
    hash_open_file(&file, meta.len(), kind)
}

/// Opens `path` for reading without following a final symbolic link, and checks it is a regular file.
///
/// `O_NONBLOCK` makes opening a FIFO return at once instead of waiting for a writer; it has no effect on
/// reads of regular files.
pub(crate) fn open_regular(path: &Path) -> io::Result<(File, std::fs::Metadata)> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => io::Error::new(
                io::ErrorKind::InvalidInput,
                "is a symbolic link, not followed",
            ),
            _ => e,
        })?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok((file, meta))
}

/// Hashes an already opened file whose size was `len` when it was opened.
pub(crate) fn hash_open_file(file: &File, len: u64, kind: HashKind) -> io::Result<String> {
    match kind {
        HashKind::Md5 => digest_file::<Md5>(file, len),
        HashKind::Blake2b512 => digest_file::<Blake2b512>(file, len),
    }
}

/// The lowercase hex digest of bytes already in memory (the same digest [`hash_file`] gives).
pub(crate) fn hash_bytes(bytes: &[u8], kind: HashKind) -> String {
    match kind {
        HashKind::Md5 => to_hex(&Md5::digest(bytes)),
        HashKind::Blake2b512 => to_hex(&Blake2b512::digest(bytes)),
    }
}

fn digest_file<D: Digest>(file: &File, len: u64) -> io::Result<String> {
    let mut hasher = D::new();
    // A mapping of zero bytes is refused by the kernel, so empty and small files are read.
    if len >= MMAP_THRESHOLD_BYTES {
        // SAFETY: the mapping is read-only and private to this call; the file is a regular file we
        // opened. Its contents changing while we read only changes the digest, which the next
        // integrity run corrects because the change also moves the file's mtime/ctime.
        let map = unsafe { Mmap::map(file)? };
        hasher.update(&map[..]);
    } else {
        let mut block = vec![0u8; READ_BLOCK_BYTES];
        let mut reader = file;
        loop {
            match reader.read(&mut block) {
                Ok(0) => break,
                Ok(n) => hasher.update(&block[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
    Ok(to_hex(&hasher.finalize()))
}

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    const MD5_EMPTY: &str = "d41d8cd98f00b204e9800998ecf8427e";
    const BLAKE2B_EMPTY: &str = "786a02f742015903c6c6fd852552d272912f4740e15847618a86e217f71f5419\
                                 d25e1031afee585313896444934eb04b903a685b1448b755d56f701afe9be2ce";
    const MD5_ABC: &str = "900150983cd24fb0d6963f7d28e17f72";
    const BLAKE2B_ABC: &str = "ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d1\
                               7d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923";

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn known_digests_of_small_and_empty_files() {
        let dir = tempfile::tempdir().unwrap();
        let empty = write(dir.path(), "empty", b"");
        let abc = write(dir.path(), "abc", b"abc");
        assert_eq!(hash_file(&empty, HashKind::Md5).unwrap(), MD5_EMPTY);
        assert_eq!(
            hash_file(&empty, HashKind::Blake2b512).unwrap(),
            BLAKE2B_EMPTY
        );
        assert_eq!(hash_file(&abc, HashKind::Md5).unwrap(), MD5_ABC);
        assert_eq!(hash_file(&abc, HashKind::Blake2b512).unwrap(), BLAKE2B_ABC);
    }

    #[test]
    fn mapped_and_read_paths_agree() {
        let dir = tempfile::tempdir().unwrap();
        // The large file goes through the mapping; the same bytes are hashed directly from memory.
        let content: Vec<u8> = (0..MMAP_THRESHOLD_BYTES as usize * 2 + 17)
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        let big = write(dir.path(), "big", &content);
        for kind in [HashKind::Md5, HashKind::Blake2b512] {
            let mapped = hash_file(&big, kind).unwrap();
            let expected = match kind {
                HashKind::Md5 => to_hex(&Md5::digest(&content)),
                HashKind::Blake2b512 => to_hex(&Blake2b512::digest(&content)),
            };
            assert_eq!(mapped, expected);
            assert_eq!(mapped.len(), kind.hex_len());
        }
    }

    #[test]
    fn blake2b_matches_python_hashlib() {
        let dir = tempfile::tempdir().unwrap();
        let small = write(dir.path(), "small", b"<agent_config>\n</agent_config>\n");
        let content: Vec<u8> = (0..(3 << 20)).map(|i: u32| (i % 253) as u8).collect();
        let big = write(dir.path(), "big", &content);
        for path in [&small, &big] {
            let script = "import hashlib,sys; print(hashlib.blake2b(open(sys.argv[1],'rb').read()).hexdigest())";
            let output = match Command::new("python3")
                .arg("-c")
                .arg(script)
                .arg(path)
                .output()
            {
                Ok(output) if output.status.success() => output,
                _ => {
                    eprintln!("note: python3 not available, comparison with hashlib skipped");
                    return;
                }
            };
            let expected = String::from_utf8(output.stdout).unwrap();
            assert_eq!(
                hash_file(path, HashKind::Blake2b512).unwrap(),
                expected.trim()
            );
        }
    }

    #[test]
    fn symlinks_fifos_and_directories_are_not_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let target = write(dir.path(), "target", b"secret");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = hash_file(&link, HashKind::Md5).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");

        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let err = hash_file(&fifo, HashKind::Md5).unwrap_err();
        assert_eq!(err.to_string(), "not a regular file");

        assert!(hash_file(dir.path(), HashKind::Md5).is_err());
        assert_eq!(
            hash_file(&dir.path().join("missing"), HashKind::Md5)
                .unwrap_err()
                .kind(),
            io::ErrorKind::NotFound
        );
    }
}
