//! The spool's small counter files, each a few u64s and their CRC32C,
//! written atomically: `<id>.committed` (records Kafka acknowledged from a
//! segment's start, and the offset after them) and `<id>.sealed` (how many
//! records a sealed segment holds).

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::dir::{committed_path, sealed_path};

/// Segment `id`'s committed count and offset, `None` when missing or damaged.
pub fn read_committed(dir: &Path, id: u64) -> Option<(u64, u64)> {
    match read_counter_file(&committed_path(dir, id))?[..] {
        [index, end] => Some((index, end)),
        _ => None,
    }
}

/// How many records sealed segment `id` holds, `None` when unknown.
pub fn read_sealed(dir: &Path, id: u64) -> Option<u64> {
    match read_counter_file(&sealed_path(dir, id))?[..] {
        [count] => Some(count),
        _ => None,
    }
}

pub fn write_committed(dir: &Path, id: u64, (index, end): (u64, u64), sync: bool) -> io::Result<()> {
    write_counter_file(&committed_path(dir, id), &[index, end], sync)
}

pub fn write_sealed(dir: &Path, id: u64, count: u64, sync: bool) -> io::Result<()> {
    write_counter_file(&sealed_path(dir, id), &[count], sync)
}

/// A few u64s (LE) and their CRC32C, or `None` when missing or damaged.
fn read_counter_file(path: &Path) -> Option<Vec<u64>> {
    let bytes = fs::read(path).ok()?;
    let (values, crc) = bytes.split_at_checked(bytes.len().checked_sub(4)?)?;
    if values.len() % 8 != 0 || crc32c::crc32c(values).to_le_bytes() != crc {
        return None;
    }
    Some(values.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect())
}

/// Writes a counter file atomically (temp file, sync, rename), so a crash
/// leaves the old or the new one.
fn write_counter_file(path: &Path, values: &[u64], sync: bool) -> io::Result<()> {
    let mut bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    bytes.extend_from_slice(&crc32c::crc32c(&bytes).to_le_bytes());
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let mut file = File::create(&tmp)?;
    file.write_all(&bytes)?;
    if sync {
        file.sync_data()?;
    }
    fs::rename(&tmp, path)
}
