//! The spool's directory: which files in it are the spool's, and the lock
//! that gives it to one bridge at a time.
//!
//! A spool directory holds a marker file, `kafka_bridge.spool`, and only
//! files named as the spool names them. The spool claims a directory that
//! is new, empty, or already a spool, and refuses any other: with
//! `buffer.dir = "/tmp"` it must not adopt or delete files it did not make.
//! The marker is also the lock file: two nodes on one host given the same
//! directory would replay and delete each other's segments.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

const MARKER: &str = "kafka_bridge.spool";
const MARKER_TEXT: &[u8] = b"emqx_plugin_kafka_bridge spool, format 1\n";

/// Segment ids are written with this many digits.
const ID_DIGITS: usize = 20;

/// A directory this bridge holds the spool lock of, for as long as it lives.
pub struct SpoolDir {
    path: PathBuf,
    /// Holds the lock; closing the file releases it.
    _marker: File,
}

impl SpoolDir {
    /// Creates or opens `path` as a spool and locks it. Errors name
    /// `buffer.dir` and say what to do.
    pub fn claim(path: &Path) -> Result<SpoolDir, String> {
        let shown = format!("{:?}", path.display().to_string());
        let unusable = |e: io::Error| format!("buffer.dir: cannot write to {shown}: {e}");
        fs::create_dir_all(path).map_err(unusable)?;
        let marker_path = path.join(MARKER);
        if !marker_path.exists() {
            if let Some(stranger) = first_foreign_file(path).map_err(unusable)? {
                return Err(format!(
                    "buffer.dir: {shown} holds files the spool did not make (such as {stranger:?}); \
                     give the spool an empty or new directory of its own"
                ));
            }
            write_marker(&marker_path).map_err(unusable)?;
        }
        let marker = OpenOptions::new().read(true).write(true).open(&marker_path).map_err(unusable)?;
        match marker.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(format!(
                    "buffer.dir: {shown} is in use by another bridge (another EMQX node on this host, \
                     or another copy of the plugin); give each its own directory"
                ))
            }
            Err(fs::TryLockError::Error(e)) => return Err(unusable(e)),
        }
        let dir = SpoolDir { path: path.to_path_buf(), _marker: marker };
        dir.remove_temp_files();
        Ok(dir)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The ids of the segment files in the directory, oldest first.
    pub fn segment_ids(&self) -> io::Result<Vec<u64>> {
        let mut ids = Vec::new();
        for entry in fs::read_dir(&self.path)? {
            if let Some((id, "seg")) = own_name(&entry?.file_name().to_string_lossy()) {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        Ok(ids)
    }

    /// Temp files a crash left half-written (the spool's own only).
    fn remove_temp_files(&self) {
        let Ok(entries) = fs::read_dir(&self.path) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if let Some((_, kind)) = own_name(&name.to_string_lossy()) {
                if kind.ends_with(".tmp") {
                    let _ = fs::remove_file(self.path.join(&name));
                }
            }
        }
    }
}

pub fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

pub fn committed_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.committed"))
}

/// How many records a sealed segment holds (see `Spool::roll`).
pub fn sealed_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.sealed"))
}

/// Deletes a segment and its counter files.
pub fn remove_segment_files(dir: &Path, id: u64) {
    let _ = fs::remove_file(segment_path(dir, id));
    let _ = fs::remove_file(committed_path(dir, id));
    let _ = fs::remove_file(sealed_path(dir, id));
}

/// Opens segment `id` for appending, creating it if need be.
pub fn create_segment(dir: &Path, id: u64) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(segment_path(dir, id))
}

/// `(id, kind)` for a name the spool makes: `<20 digits>.<kind>`, kind one
/// of seg, committed, sealed and their `.tmp` forms.
fn own_name(name: &str) -> Option<(u64, &str)> {
    let (digits, kind) = name.split_once('.')?;
    let known = ["seg", "committed", "committed.tmp", "sealed", "sealed.tmp"];
    if digits.len() != ID_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) || !known.contains(&kind) {
        return None;
    }
    Some((digits.parse().ok()?, kind))
}

/// A file in `dir` the spool would not have made, if any.
fn first_foreign_file(dir: &Path) -> io::Result<Option<String>> {
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name != MARKER && own_name(&name).is_none() {
            return Ok(Some(name));
        }
    }
    Ok(None)
}

fn write_marker(path: &Path) -> io::Result<()> {
    let mut file = File::create(path)?;
    file.write_all(MARKER_TEXT)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("kafka_bridge_spool_dir_{name}_{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn claims_new_empty_and_own_directories_only() {
        let dir = temp_dir("claim");
        drop(SpoolDir::claim(&dir).unwrap());
        assert!(dir.join(MARKER).exists());
        fs::write(segment_path(&dir, 7), b"").unwrap();
        assert_eq!(SpoolDir::claim(&dir).unwrap().segment_ids().unwrap(), vec![7]);

        let foreign = temp_dir("foreign");
        fs::create_dir_all(&foreign).unwrap();
        fs::write(foreign.join("notes.tmp"), b"an editor's autosave").unwrap();
        fs::write(foreign.join("42.seg"), b"not ours either").unwrap();
        let error = SpoolDir::claim(&foreign).err().unwrap();
        assert!(error.starts_with("buffer.dir: ") && error.contains("did not make"), "{error}");
        assert!(foreign.join("notes.tmp").exists() && foreign.join("42.seg").exists());
        for d in [dir, foreign] {
            let _ = fs::remove_dir_all(d);
        }
    }

    #[test]
    fn a_claimed_directory_cannot_be_claimed_twice() {
        let dir = temp_dir("lock");
        let first = SpoolDir::claim(&dir).unwrap();
        let error = SpoolDir::claim(&dir).err().unwrap();
        assert!(error.starts_with("buffer.dir: ") && error.contains("in use"), "{error}");
        drop(first);
        assert!(SpoolDir::claim(&dir).is_ok());
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn only_the_spools_own_temp_files_are_removed() {
        let dir = temp_dir("tmp");
        drop(SpoolDir::claim(&dir).unwrap());
        let own = dir.join(format!("{:020}.committed.tmp", 3));
        fs::write(&own, b"half").unwrap();
        drop(SpoolDir::claim(&dir).unwrap());
        assert!(!own.exists());
        let _ = fs::remove_dir_all(dir);
    }
}
