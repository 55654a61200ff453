//! Reading the small files an operator points dockwatch at: certificates,
//! keys, secrets. A leaf.

use std::path::Path;

/// The largest certificate, key or secret file read.
pub const MAX_SMALL_FILE: u64 = 1024 * 1024;

/// Reads a small regular file. Anything else (a FIFO, a device, a directory)
/// is refused before it is opened: reading one could block forever.
pub fn read_small_file(path: &Path) -> Result<Vec<u8>, String> {
    let cannot = |e: std::io::Error| format!("cannot read {}: {}", path.display(), e.kind());
    let meta = std::fs::metadata(path).map_err(cannot)?;
    regular_and_at_most(path, &meta, MAX_SMALL_FILE)?;
    std::fs::read(path).map_err(cannot)
}

/// Refuses, by what `meta` says, a file that is not a regular file or is
/// larger than `max` bytes, before it is opened.
pub fn regular_and_at_most(path: &Path, meta: &std::fs::Metadata, max: u64) -> Result<(), String> {
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    if meta.len() > max {
        return Err(format!("{} is larger than {max} bytes", path.display()));
    }
    Ok(())
}

/// A file of `tests/streams/` (the captured and written daemon answers), for
/// the unit tests that decode them.
#[cfg(test)]
pub(crate) fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/streams")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
