//! Reading the local files a config names — the config itself, transforms,
//! secrets, CA certificates — bounded: a path that is not a regular file
//! (a directory, `/dev/zero`, a FIFO) or a file larger than its cap is
//! refused with the reason, before anything is read.

use std::fs::File;
use std::io::Read;
use std::path::Path;

/// A config file, a transform: text a person writes.
pub const TEXT_CAP: u64 = 4 << 20;
/// A token or a password file.
pub const SECRET_CAP: u64 = 64 << 10;
/// A CA certificate, a client certificate or key (PEM).
pub const PEM_CAP: u64 = 1 << 20;

/// The UTF-8 text of `path`, at most `cap` bytes. The error is a sentence
/// that names no content (the file may hold a secret).
pub fn read_capped(path: &Path, cap: u64) -> Result<String, String> {
    let bytes = read_bytes_capped(path, cap)?;
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "{}: not UTF-8 text (invalid byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })
}

/// `path`'s bytes, when it is a regular file of at most `cap` bytes.
pub fn read_bytes_capped(path: &Path, cap: u64) -> Result<Vec<u8>, String> {
    check_file(path, cap)?;
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    // The file may grow between the check and the read: read one byte more
    // than the cap, never all of it.
    file.take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() as u64 > cap {
        return Err(too_big(path, cap));
    }
    Ok(bytes)
}

/// Checks that `path` is a regular file (after symlinks) of at most `cap`
/// bytes, for files another library opens (librdkafka's `ssl.*.location`).
pub fn check_file(path: &Path, cap: u64) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let kind = meta.file_type();
    if !kind.is_file() {
        let what = if kind.is_dir() {
            "a directory"
        } else {
            use std::os::unix::fs::FileTypeExt;
            if kind.is_char_device() || kind.is_block_device() {
                "a device"
            } else if kind.is_fifo() {
                "a named pipe"
            } else if kind.is_socket() {
                "a socket"
            } else {
                "not a regular file"
            }
        };
        return Err(format!(
            "{}: is {what}; give the path of a regular file",
            path.display()
        ));
    }
    if meta.len() > cap {
        return Err(too_big(path, cap));
    }
    Ok(())
}

fn too_big(path: &Path, cap: u64) -> String {
    format!(
        "{}: larger than {} KiB, more than this file can hold; is it the right file?",
        path.display(),
        cap >> 10
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_directories_and_big_files_are_refused_before_reading() {
        let err = read_capped(Path::new("/dev/zero"), TEXT_CAP).unwrap_err();
        assert!(err.contains("is a device"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let err = read_capped(dir.path(), TEXT_CAP).unwrap_err();
        assert!(err.contains("is a directory"), "{err}");
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'a'; 2048]).unwrap();
        let err = read_capped(&big, 1024).unwrap_err();
        assert!(err.contains("larger than 1 KiB"), "{err}");
        assert_eq!(read_capped(&big, 4096).unwrap().len(), 2048);
        let bin = dir.path().join("bin");
        std::fs::write(&bin, b"ok\xff").unwrap();
        let err = read_capped(&bin, 4096).unwrap_err();
        assert!(
            err.contains("not UTF-8") && err.contains("offset 2"),
            "{err}"
        );
    }
}
