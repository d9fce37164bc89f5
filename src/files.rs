//! Files only this user can read. The ledger, the pool store and the originals hold request
//! figures and raw tool output (source code, logs, maybe secrets): they are created 0600 in 0700
//! directories whatever the umask, and a file kept from an older version is narrowed to 0600.

use std::fs::OpenOptions;
use std::io;
use std::path::Path;

#[cfg(unix)]
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};

/// Creates `dir` and any missing parents as 0700. Directories that already exist keep their
/// mode: tokenfold does not change what it did not create (the user's `originals_dir`, `$HOME`).
pub fn private_dir(dir: &Path) -> io::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        private_dir(parent)?;
    }
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    builder.mode(0o700);
    match builder.create(dir) {
        // Another process may have created it meanwhile.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
        // The umask can only take bits away from 0o700, but a umask like 0o200 would leave the
        // directory unusable: set the mode exactly.
        Ok(()) => set_mode(dir, 0o700),
    }
}

/// Options that create a new file as 0600 (before the umask; `narrow` makes it exact).
pub fn private_file_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    options.mode(0o600);
    options
}

/// Writes `bytes` to the file at `path`, created (or left over and truncated) as 0600.
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut file = private_file_options().write(true).create(true).truncate(true).open(path)?;
    file.write_all(bytes)?;
    narrow(path)
}

/// Makes the SQLite database `path` private before SQLite opens it: the file is created 0600
/// if missing (SQLite gives its `-wal` and `-shm` files the database's mode), and the database
/// and any journal files left by an older version are narrowed to 0600.
pub fn private_sqlite(path: &Path) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        private_dir(dir)?;
    }
    private_file_options().append(true).create(true).open(path)?;
    narrow(path)?;
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        let side = Path::new(&side);
        if side.exists() {
            narrow(side)?;
        }
    }
    Ok(())
}

/// Sets a file's mode to 0600 (owner read and write) if it allows more.
pub fn narrow(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
        if mode != 0o600 {
            return set_mode(path, 0o600);
        }
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    #[cfg(unix)]
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn new_directories_are_0700_and_existing_ones_are_left_alone() {
        let base = std::env::temp_dir().join(format!("tokenfold-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
        let deep = base.join("a/b");
        private_dir(&deep).unwrap();
        assert_eq!((mode(&base.join("a")), mode(&deep)), (0o700, 0o700));
        assert_eq!(mode(&base), 0o755, "an existing directory keeps its mode");
        let db = deep.join("x.db");
        std::fs::write(&db, b"").unwrap();
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        let wal = deep.join("x.db-wal");
        std::fs::write(&wal, b"").unwrap();
        std::fs::set_permissions(&wal, std::fs::Permissions::from_mode(0o666)).unwrap();
        private_sqlite(&db).unwrap();
        assert_eq!((mode(&db), mode(&wal)), (0o600, 0o600));
        let fresh = deep.join("new.db");
        private_sqlite(&fresh).unwrap();
        assert_eq!(mode(&fresh), 0o600);
        let text = deep.join("t.txt");
        write_private(&text, b"secret").unwrap();
        assert_eq!(mode(&text), 0o600);
        std::fs::set_permissions(&text, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&text, b"again").unwrap();
        assert_eq!((mode(&text), std::fs::read(&text).unwrap()), (0o600, b"again".to_vec()));
        let _ = std::fs::remove_dir_all(&base);
    }
}
