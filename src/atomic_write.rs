//! Writing output files so that nothing the user had is lost: the bytes go
//! to a temporary file in the destination's folder, which is renamed over
//! the destination only once complete. An existing file is replaced only
//! when asked.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The folder `path` is in (`.` for a bare name).
pub fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Whether `a` and `b` name the same file, existing or not: their folders
/// resolved (links, `.` and `..`) and their names compared, or, where both
/// exist, the same file under two names (hard links). An output that is
/// one of the inputs would replace it, even written atomically, and
/// `--rm` would then delete the input's last copy.
pub fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(ma), Ok(mb)) = (std::fs::metadata(a), std::fs::metadata(b))
            && (ma.dev(), ma.ino()) == (mb.dev(), mb.ino())
        {
            return true;
        }
    }
    fn resolved(p: &Path) -> PathBuf {
        p.canonicalize().unwrap_or_else(|_| resolved_name(p))
    }
    resolved(a) == resolved(b)
}

/// `path` with its folder resolved (links, `.` and `..`) but not its own
/// name, so two spellings of one name compare equal while a link stays a
/// name of its own.
pub fn resolved_name(path: &Path) -> PathBuf {
    match (folder_of(path).canonicalize(), path.file_name()) {
        (Ok(f), Some(name)) => f.join(name),
        _ => path.to_path_buf(),
    }
}

/// Writes `bytes` to `path` atomically. With `overwrite` false, an
/// existing `path` is an `AlreadyExists` error and is left untouched. The
/// file gets the permissions of any new file (0666 less the umask).
pub fn write_atomic(path: &Path, bytes: &[u8], overwrite: bool) -> std::io::Result<()> {
    write_atomic_like(path, bytes, overwrite, None)
}

/// [`write_atomic`], the file getting the permissions of the file `like`
/// (the input it was made from, as gzip does: a private image gives a
/// private output) less the umask, or where there is none, or it cannot
/// be read, those of any new file.
pub fn write_atomic_like(
    path: &Path,
    bytes: &[u8],
    overwrite: bool,
    like: Option<&Path>,
) -> std::io::Result<()> {
    let dir = folder_of(path);
    if !overwrite && path.exists() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!("{} already exists (use -f to overwrite)", path.display()),
        ));
    }
    let mut builder = tempfile::Builder::new();
    builder.prefix(".vqz-").suffix(".tmp");
    #[cfg(unix)]
    {
        // Set as the file is created, so the umask applies and the file is
        // never more open than asked, not even for a moment.
        use std::os::unix::fs::PermissionsExt;
        let mode = like
            .and_then(|p| std::fs::metadata(p).ok())
            .map_or(0o666, |m| m.permissions().mode() & 0o777);
        builder.permissions(std::fs::Permissions::from_mode(mode));
    }
    #[cfg(not(unix))]
    let _ = like;
    let mut tmp = builder.tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    if overwrite {
        tmp.persist(path).map_err(|e| e.error)?;
    } else {
        tmp.persist_noclobber(path).map_err(|e| {
            if e.error.kind() == std::io::ErrorKind::AlreadyExists {
                std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    format!("{} already exists (use -f to overwrite)", path.display()),
                )
            } else {
                e.error
            }
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_clobbers_without_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.bin");
        write_atomic(&p, b"one", false).unwrap();
        let err = write_atomic(&p, b"two", false).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&p).unwrap(), b"one");
        write_atomic(&p, b"three", true).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"three");
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    /// New files get the mode any new file gets (0666 less the umask),
    /// files made from another that other's mode (less the umask).
    #[cfg(unix)]
    #[test]
    fn outputs_get_the_permissions_of_a_new_file_or_of_their_input() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        std::fs::write(d.join("plain"), b"x").unwrap();
        write_atomic(&d.join("out"), b"x", false).unwrap();
        assert_eq!(mode(&d.join("out")), mode(&d.join("plain")));
        let private = d.join("private");
        std::fs::write(&private, b"x").unwrap();
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o600)).unwrap();
        write_atomic_like(&d.join("from-private"), b"x", false, Some(&private)).unwrap();
        assert_eq!(mode(&d.join("from-private")), 0o600);
        // Over an existing file, with -f: the new file's mode, not the old one's.
        write_atomic_like(&d.join("out"), b"y", true, Some(&private)).unwrap();
        assert_eq!(mode(&d.join("out")), 0o600);
    }

    #[test]
    fn same_file_sees_through_spellings_whether_or_not_the_file_exists() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("sub")).unwrap();
        let (a, b) = (d.join("a"), d.join("sub/../a"));
        assert!(same_file(&a, &b), "not there yet");
        std::fs::write(&a, b"x").unwrap();
        assert!(same_file(&a, &b));
        assert!(!same_file(&a, &d.join("sub/a")));
        assert!(!same_file(&a, &d.join("b")));
        // A hard link is the same file under another name; a copy is not.
        std::fs::hard_link(&a, d.join("link")).unwrap();
        assert!(same_file(&a, &d.join("link")));
        std::fs::copy(&a, d.join("copy")).unwrap();
        assert!(!same_file(&a, &d.join("copy")));
    }
}
