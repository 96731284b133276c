//! The disk spool: append-only segment files of checksummed records.
//!
//! Layout under `buffer.dir` (which files are the spool's: `dir.rs`):
//! - `<id>.seg`: records, each `[body length: u32 LE][CRC32C of body: u32 LE][body]`.
//! - `<id>.committed`: how many leading records of the segment Kafka has
//!   acknowledged, and the byte offset after them. Written atomically
//!   (temp file, fsync, rename) so a crash leaves the old or the new one.
//! - `<id>.sealed`: how many records a sealed segment holds, written when
//!   it is sealed, so records lost to a damaged header are counted exactly.
//!
//! `codec.rs` reads and writes records, `counters.rs` the last two files.
//!
//! One thread owns a `Spool` (see `kafka/spool_loop.rs`): it appends, reads back from
//! a cursor, commits acknowledged prefixes and deletes finished segments.
//! Each start opens a new segment, so a torn tail from a crash is only ever
//! at the end of a sealed segment, where the reader skips it.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod codec;
mod counters;
pub mod dir;

use crate::clock::Now;
use crate::config::{Fsync, SpoolConfig};
use crate::log::Level;
use crate::queue::Record;
use crate::runtime::Shared;
use codec::{count_records, decode_record, encode_record, parse_header, Header, HEADER_BYTES, MAX_BODY_BYTES};
use counters::{read_committed, read_sealed, write_committed, write_sealed};
use dir::{create_segment, remove_segment_files, segment_path, SpoolDir};

/// Committed files are rewritten at most this often while running.
const COMMIT_EVERY: Duration = Duration::from_millis(200);

/// Where a record sits in the spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub segment: u64,
    /// The record's number within its segment, from 0.
    pub index: u64,
    /// The byte offset just after the record.
    pub end: u64,
}

struct Segment {
    id: u64,
    /// Bytes the file holds (written to the OS).
    bytes: u64,
    /// Records acknowledged from the start, and the offset after them.
    committed: (u64, u64),
    commit_dirty: bool,
    /// The reader reached the end of this sealed segment.
    read_done: bool,
    /// Records read and handed out but not yet acknowledged.
    outstanding: u64,
    /// Records appended by this run (numbering continues from here).
    appended: u64,
    /// How many records the segment holds, once sealed (`None` for one a
    /// crash left unsealed).
    sealed_count: Option<u64>,
    /// A damaged record in it has been logged (once per segment).
    damage_logged: bool,
}

struct Cursor {
    segment: u64,
    file: BufReader<File>,
    index: u64,
    offset: u64,
    /// Fresh records moved the cursor without reading: seek before reading.
    needs_seek: bool,
}

pub struct Spool {
    dir: SpoolDir,
    config: SpoolConfig,
    shared: Arc<Shared>,
    /// Oldest first; the last one is being written.
    segments: VecDeque<Segment>,
    writer: File,
    write_buf: Vec<u8>,
    /// Records in `write_buf`.
    unwritten: u64,
    /// Records written to the OS and not yet counted as spooled.
    unsynced: u64,
    /// The active segment has writes not yet fsynced.
    needs_sync: bool,
    last_sync: Instant,
    last_commit: Instant,
    cursor: Option<Cursor>,
    disk_bytes: u64,
    /// Reused for reading record bodies.
    read_buf: Vec<u8>,
    /// What a previous run left, for the spool thread to log.
    pub replay_note: Option<String>,
    /// Records just appended, still in memory, that the cursor will reach
    /// next: handed out without reading them back (see `offer_fresh`).
    fresh: VecDeque<(Record, Position)>,
    fresh_bytes: usize,
}

/// At most this much is kept in `fresh`; past it, records are read back.
const MAX_FRESH_BYTES: usize = 64 << 20;

/// What a record kept in `fresh` counts against `MAX_FRESH_BYTES`.
fn fresh_size(record: &Record) -> usize {
    record.buf.len() + record.topic.len() + 64
}

/// How many whole records `bytes` (encoded records, from the start of
/// one) holds, and their length.
fn whole_records(bytes: &[u8]) -> (u64, u64) {
    let (mut count, mut end) = (0, 0u64);
    while let Some(header) = bytes.get(end as usize..end as usize + HEADER_BYTES as usize) {
        let (length, _) = parse_header(header.try_into().expect("a header's length"));
        let next = end + HEADER_BYTES + length as u64;
        if next > bytes.len() as u64 {
            break;
        }
        count += 1;
        end = next;
    }
    (count, end)
}

/// What `append` did.
pub enum Appended {
    Buffered(Position),
    /// Past `buffer.max_disk_bytes`.
    Full,
}

impl Segment {
    fn new(id: u64, bytes: u64, committed: (u64, u64)) -> Segment {
        Segment {
            id,
            bytes,
            committed,
            commit_dirty: false,
            read_done: false,
            outstanding: 0,
            appended: 0,
            sealed_count: None,
            damage_logged: false,
        }
    }
}

impl Spool {
    /// Opens `dir` (creating it), finds the segments a previous run left,
    /// and starts a new segment to write. Fails only if `dir` is unusable.
    pub fn open(config: &SpoolConfig, shared: Arc<Shared>) -> Result<Spool, String> {
        let path = PathBuf::from(if config.dir.is_empty() { crate::config::DEFAULT_SPOOL_DIR } else { &config.dir });
        let unusable = |e: io::Error| format!("buffer.dir: cannot write to {:?}: {e}", path.display().to_string());
        let claimed = SpoolDir::claim(&path)?;
        let dir = claimed.path();
        let ids = claimed.segment_ids().map_err(unusable)?;
        let mut segments = VecDeque::new();
        let mut disk_bytes = 0;
        for &id in &ids {
            let bytes = fs::metadata(segment_path(dir, id)).map(|m| m.len()).unwrap_or(0);
            let committed = read_committed(dir, id).filter(|&(_, end)| end <= bytes).unwrap_or((0, 0));
            disk_bytes += bytes;
            let mut segment = Segment::new(id, bytes, committed);
            segment.sealed_count = read_sealed(dir, id);
            segments.push_back(segment);
        }
        let new_id = ids.last().map_or(1, |last| last + 1);
        let writer = create_segment(dir, new_id).map_err(unusable)?;
        segments.push_back(Segment::new(new_id, 0, (0, 0)));
        let mut spool = Spool {
            dir: claimed,
            config: config.clone(),
            shared,
            segments,
            writer,
            write_buf: Vec::with_capacity(1 << 20),
            unwritten: 0,
            unsynced: 0,
            needs_sync: false,
            last_sync: Instant::now(),
            last_commit: Instant::now(),
            cursor: None,
            disk_bytes,
            read_buf: Vec::new(),
            replay_note: None,
            fresh: VecDeque::new(),
            fresh_bytes: 0,
        };
        if !ids.is_empty() {
            let backlog: u64 = spool.segments.iter().map(|s| s.bytes - s.committed.1).sum();
            spool.replay_note = Some(format!(
                "replaying {} spool segment(s) from {:?}: {backlog} bytes not yet delivered",
                ids.len(),
                spool.dir.path().display().to_string()
            ));
        }
        spool.update_gauges();
        Ok(spool)
    }

    pub fn max_disk_bytes(&self) -> u64 {
        self.config.max_disk_bytes
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Adds a record to the write buffer; `flush` writes it out.
    pub fn append(&mut self, record: &Record, now: Now) -> io::Result<Appended> {
        let start = self.write_buf.len();
        encode_record(record, now.unix_ms_of(record.enqueued_at), &mut self.write_buf);
        let size = (self.write_buf.len() - start) as u64;
        if self.disk_bytes + size > self.config.max_disk_bytes {
            self.write_buf.truncate(start);
            return Ok(Appended::Full);
        }
        let active_bytes = self.segments.back().expect("an active segment").bytes + self.write_buf.len() as u64;
        if active_bytes > self.config.segment_bytes && active_bytes > size {
            // Seal the active segment with what came before this record,
            // keeping the buffer's capacity (a fresh one regrows by page faults).
            let record_bytes = self.write_buf[start..].to_vec();
            self.write_buf.truncate(start);
            self.roll()?;
            self.write_buf.extend_from_slice(&record_bytes);
        }
        self.disk_bytes += size;
        self.unwritten += 1;
        let active = self.segments.back_mut().expect("an active segment");
        let end = active.bytes + self.write_buf.len() as u64;
        active.appended += 1;
        Ok(Appended::Buffered(Position { segment: active.id, index: active.appended - 1, end }))
    }

    /// Keeps a just-appended record in memory when the cursor will reach it
    /// next, so `next` hands it out without reading it back from disk.
    pub fn offer_fresh(&mut self, record: Record, position: Position) {
        let expected = match (self.fresh.back(), &self.cursor) {
            (Some((_, last)), _) => Some((last.segment, last.index + 1)),
            (None, Some(c)) => Some((c.segment, c.index)),
            (None, None) => self.segments.iter().find(|s| !s.read_done).map(|s| (s.id, s.committed.0)),
        };
        let size = fresh_size(&record);
        if expected == Some((position.segment, position.index)) && self.fresh_bytes + size <= MAX_FRESH_BYTES {
            self.fresh_bytes += size;
            self.fresh.push_back((record, position));
        } else {
            self.clear_fresh();
        }
    }

    fn clear_fresh(&mut self) {
        self.fresh.clear();
        self.fresh_bytes = 0;
    }

    /// Writes the buffer to the OS and syncs as `buffer.fsync` says (always
    /// when `force_sync`, unless `none`). Returns how many records it wrote:
    /// with `every_batch` they are also synced.
    pub fn flush(&mut self, force_sync: bool) -> io::Result<u64> {
        self.write_buffer()?;
        let done = std::mem::take(&mut self.unsynced);
        self.needs_sync |= done > 0;
        let due = match self.config.fsync {
            Fsync::EveryBatch => true,
            Fsync::IntervalMs(ms) => self.last_sync.elapsed() >= Duration::from_millis(ms),
            Fsync::Never => false,
        };
        if self.needs_sync && (due || force_sync) && self.config.fsync != Fsync::Never {
            self.writer.sync_data()?;
            self.last_sync = Instant::now();
            self.needs_sync = false;
        }
        self.shared.metrics.spooled.fetch_add(done, Relaxed);
        self.update_gauges();
        Ok(done)
    }

    /// Writes the buffer to the active segment. When the write fails (a
    /// full disk), the records that reached the file whole stay there and
    /// will be delivered; only the others are lost, and counted in
    /// `dropped_spool_error`. A torn record after them is cut off, or, if
    /// that fails too, left for the reader to skip at the end of the
    /// segment, which is then sealed.
    fn write_buffer(&mut self) -> io::Result<()> {
        if self.write_buf.is_empty() {
            return Ok(());
        }
        let result = self.writer.write_all(&self.write_buf);
        let buffered = self.write_buf.len() as u64;
        let unwritten = std::mem::take(&mut self.unwritten);
        let Err(error) = result else {
            self.write_buf.clear();
            self.segments.back_mut().expect("an active segment").bytes += buffered;
            self.unsynced += unwritten;
            return Ok(());
        };
        self.clear_fresh();
        let path = segment_path(self.dir.path(), self.active_id());
        let active = self.segments.back_mut().expect("an active segment");
        let on_disk = fs::metadata(&path).map_or(active.bytes, |m| m.len());
        let reached = on_disk.saturating_sub(active.bytes).min(buffered) as usize;
        let (whole, whole_bytes) = whole_records(&self.write_buf[..reached]);
        self.write_buf.clear();
        let torn_cut = self.writer.set_len(active.bytes + whole_bytes).is_ok();
        let kept = if torn_cut { whole_bytes } else { reached as u64 };
        let lost = unwritten - whole;
        active.appended -= lost;
        active.bytes += kept;
        self.disk_bytes -= buffered - kept;
        self.unsynced += whole;
        self.shared.metrics.dropped_spool_error.fetch_add(lost, Relaxed);
        if !torn_cut {
            let _ = self.roll();
        }
        Err(error)
    }

    fn active_id(&self) -> u64 {
        self.segments.back().expect("an active segment").id
    }

    /// Seals the active segment and starts the next one.
    fn roll(&mut self) -> io::Result<()> {
        // The cursor crosses segments by reading; keep that path simple.
        self.clear_fresh();
        self.write_buffer()?;
        if self.config.fsync != Fsync::Never {
            self.writer.sync_data()?;
        }
        self.seal_active();
        let id = self.active_id() + 1;
        self.writer = create_segment(self.dir.path(), id)?;
        self.segments.push_back(Segment::new(id, 0, (0, 0)));
        Ok(())
    }

    /// Records how many records the active segment holds, which is final
    /// once no more are written to it. A failure only costs exactness: a
    /// damaged header in an unsealed segment counts as one lost record.
    fn seal_active(&mut self) {
        let active = self.segments.back_mut().expect("an active segment");
        let count = active.committed.0.max(active.appended);
        active.sealed_count = Some(count);
        if let Err(error) = write_sealed(self.dir.path(), active.id, count, self.config.fsync != Fsync::Never) {
            let text = format!("kafka bridge: cannot record a spool segment's record count: {error}");
            self.shared.logger.limited(Level::Warning, "spool_seal_failed", "", &text);
        }
    }

    /// True when every record written has been read back.
    pub fn caught_up(&self) -> bool {
        let active = self.segments.back().expect("an active segment");
        let earlier_done = self.segments.iter().rev().skip(1).all(|s| s.read_done);
        let read_to = match &self.cursor {
            Some(c) if c.segment == active.id => c.offset,
            Some(_) => return false,
            None => active.committed.1,
        };
        earlier_done && read_to >= active.bytes
    }

    /// The next record to hand to Kafka, in spool order; `None` when the
    /// reader has caught up with what has been written.
    /// `now` dates records read back from disk.
    pub fn next(&mut self, now: Now) -> Option<(Record, Position)> {
        loop {
            if self.cursor.is_none() && !self.open_cursor() {
                return None;
            }
            if let Some(fresh) = self.take_fresh() {
                return Some(fresh);
            }
            let cursor = self.cursor.as_mut().expect("cursor");
            if std::mem::take(&mut cursor.needs_seek) && cursor.file.seek(SeekFrom::Start(cursor.offset)).is_err() {
                cursor.needs_seek = true;
                return None;
            }
            let index = self.segments.iter().position(|s| s.id == cursor.segment).expect("cursor's segment");
            let sealed = index + 1 < self.segments.len();
            let available = self.segments[index].bytes - cursor.offset;
            let record_index = cursor.index;
            match read_record(cursor, available, &mut self.read_buf, now) {
                ReadOutcome::Record(record) => {
                    let position = Position { segment: cursor.segment, index: cursor.index, end: cursor.offset };
                    self.segments[index].outstanding += 1;
                    return Some((record, position));
                }
                ReadOutcome::End if !sealed => return None,
                ReadOutcome::End => {}
                ReadOutcome::Corrupt { skippable } => {
                    // A damaged length loses the rest of the segment: as many
                    // records as it was sealed with, or one (a torn tail).
                    // (Past the sealed count is only what a failed write
                    // left, already counted in dropped_spool_error.)
                    let lost = match (skippable, self.segments[index].sealed_count) {
                        (false, Some(count)) => count.saturating_sub(record_index),
                        _ => 1,
                    };
                    if lost > 0 {
                        self.shared.metrics.spool_corrupt_records.fetch_add(lost, Relaxed);
                        self.log_damage(index, record_index, lost, skippable);
                    }
                    if skippable {
                        continue;
                    }
                    if !sealed {
                        return None;
                    }
                }
            }
            // The end of a sealed segment: move on to the next one.
            self.segments[index].read_done = true;
            let next = self.segments[index + 1].id;
            self.cursor = None;
            if !self.open_cursor_at(next) {
                return None;
            }
        }
    }

    /// Logs the first damaged record of each segment (every one is counted
    /// in `spool_corrupt_records`).
    fn log_damage(&mut self, index: usize, record_index: u64, lost: u64, skippable: bool) {
        let segment = &mut self.segments[index];
        if std::mem::replace(&mut segment.damage_logged, true) {
            return;
        }
        let what = if skippable {
            "skipped it".to_string()
        } else if segment.sealed_count.is_some() {
            format!("lost it and the {} after it (its length is damaged)", lost - 1)
        } else {
            "lost it and whatever followed (a torn tail, left by a crash)".to_string()
        };
        let path = segment_path(self.dir.path(), segment.id);
        let text = format!("kafka bridge: record {record_index} of spool segment {} is damaged: {what}", path.display());
        self.shared.logger.log(Level::Error, "spool_segment_damaged", &text);
    }

    /// The next record from memory, when it is the one the cursor is at
    /// and it has been written out.
    fn take_fresh(&mut self) -> Option<(Record, Position)> {
        let (_, position) = self.fresh.front()?;
        let position = *position;
        let cursor = self.cursor.as_mut()?;
        if (cursor.segment, cursor.index) != (position.segment, position.index) {
            self.clear_fresh();
            return None;
        }
        let segment = self.segments.iter_mut().find(|s| s.id == position.segment)?;
        if position.end > segment.bytes {
            return None; // not flushed yet
        }
        segment.outstanding += 1;
        cursor.index += 1;
        cursor.offset = position.end;
        cursor.needs_seek = true;
        let (record, position) = self.fresh.pop_front()?;
        self.fresh_bytes -= fresh_size(&record);
        Some((record, position))
    }

    fn open_cursor(&mut self) -> bool {
        match self.segments.iter().find(|s| !s.read_done) {
            Some(segment) => {
                let id = segment.id;
                self.open_cursor_at(id)
            }
            None => false,
        }
    }

    fn open_cursor_at(&mut self, id: u64) -> bool {
        let Some(segment) = self.segments.iter_mut().find(|s| s.id == id) else { return false };
        let (index, offset) = segment.committed;
        let opened = File::open(segment_path(self.dir.path(), id)).and_then(|mut f| f.seek(SeekFrom::Start(offset)).map(|_| f));
        match opened {
            Ok(file) => {
                let file = BufReader::with_capacity(1 << 20, file);
                self.cursor = Some(Cursor { segment: id, file, index, offset, needs_seek: false });
                true
            }
            Err(error) => {
                // An unreadable segment cannot be replayed: what it held
                // past the committed prefix is lost.
                segment.read_done = true;
                let lost = segment.sealed_count.map_or(1, |count| count.saturating_sub(index).max(1));
                self.shared.metrics.spool_corrupt_records.fetch_add(lost, Relaxed);
                let text = format!("kafka bridge: cannot read spool segment {id} ({lost} records lost): {error}");
                self.shared.logger.log(Level::Error, "spool_segment_unreadable", &text);
                false
            }
        }
    }

    /// Kafka acknowledged (or permanently refused) one record read from here.
    pub fn settled(&mut self, position: Position) {
        if let Some(segment) = self.segments.iter_mut().find(|s| s.id == position.segment) {
            segment.outstanding = segment.outstanding.saturating_sub(1);
        }
    }

    /// Every record up to and including `position` is settled.
    pub fn commit(&mut self, position: Position) {
        if let Some(segment) = self.segments.iter_mut().find(|s| s.id == position.segment) {
            if position.end > segment.committed.1 {
                segment.committed = (position.index + 1, position.end);
                segment.commit_dirty = true;
            }
        }
    }

    /// Writes committed files that changed (at most every 200 ms unless
    /// `now`) and deletes segments whose every record is settled.
    pub fn maintain(&mut self, now: bool) {
        if now || self.last_commit.elapsed() >= COMMIT_EVERY {
            self.last_commit = Instant::now();
            let sync = self.config.fsync != Fsync::Never;
            for segment in self.segments.iter_mut().filter(|s| s.commit_dirty) {
                segment.commit_dirty = false;
                if let Err(error) = write_committed(self.dir.path(), segment.id, segment.committed, sync) {
                    let text = format!("kafka bridge: cannot record delivered spool records: {error}");
                    self.shared.logger.limited(Level::Warning, "spool_commit_failed", "", &text);
                }
            }
        }
        while self.segments.len() > 1 && self.segments[0].read_done && self.segments[0].outstanding == 0 {
            self.delete_segment(0);
        }
        self.update_gauges();
    }

    /// Removes the segment at `index`; returns how many of its records were
    /// never read (those are what `drop_oldest` loses).
    fn delete_segment(&mut self, index: usize) -> u64 {
        let Some(segment) = self.segments.remove(index) else { return 0 };
        let read_to = match self.cursor.take_if(|c| c.segment == segment.id) {
            Some(cursor) => Some(cursor.offset),
            None if segment.read_done => None,
            None => Some(segment.committed.1),
        };
        let path = segment_path(self.dir.path(), segment.id);
        let unread = read_to.map_or(0, |from| count_records(&path, from, segment.bytes));
        remove_segment_files(self.dir.path(), segment.id);
        self.disk_bytes -= segment.bytes;
        unread
    }

    /// `drop_oldest` on a full spool: deletes the oldest segment that holds
    /// no record librdkafka has and Kafka has not yet acknowledged, and
    /// returns how many unread records went with it. Such records live
    /// only in librdkafka's memory, so after a crash their segment is their
    /// only copy: it stays. `None` when every segment holds some.
    pub fn evict_oldest_segment(&mut self) -> io::Result<Option<u64>> {
        self.clear_fresh();
        let sealed = self.segments.len() - 1;
        let candidate = match self.segments.iter().take(sealed).position(|s| s.outstanding == 0) {
            Some(index) => index,
            None => {
                let active = self.segments.back().expect("an active segment");
                if active.outstanding > 0 || active.bytes + self.write_buf.len() as u64 == 0 {
                    return Ok(None);
                }
                self.roll()?;
                sealed
            }
        };
        let dropped = self.delete_segment(candidate);
        self.update_gauges();
        Ok(Some(dropped))
    }

    /// Flushes, syncs and records what was delivered. Called on stop.
    pub fn close(&mut self) {
        if let Err(error) = self.flush(true) {
            let text = format!("kafka bridge: spool write failed on stop: {error}");
            self.shared.logger.limited(Level::Error, "spool_write_failed", "", &text);
        }
        self.maintain(true);
        // An empty segment is just noise for the next run.
        if let Some(active) = self.segments.back() {
            if active.bytes == 0 {
                remove_segment_files(self.dir.path(), active.id);
            } else {
                self.seal_active();
            }
        }
    }

    fn update_gauges(&self) {
        let metrics = &self.shared.metrics;
        metrics.spool_bytes.store(self.disk_bytes, Relaxed);
        let backlog: u64 = self.segments.iter().map(|s| s.bytes.saturating_sub(s.committed.1)).sum();
        metrics.spool_backlog_bytes.store(backlog + self.write_buf.len() as u64, Relaxed);
        metrics.spool_segments.store(self.segments.len() as u64, Relaxed);
    }
}

enum ReadOutcome {
    Record(Record),
    /// Nothing more has been written.
    End,
    /// `skippable`: the length was plausible, so reading can go on after it.
    Corrupt { skippable: bool },
}

fn read_record(cursor: &mut Cursor, available: u64, buf: &mut Vec<u8>, now: Now) -> ReadOutcome {
    if available == 0 {
        return ReadOutcome::End;
    }
    let mut header: Header = [0; HEADER_BYTES as usize];
    if available < HEADER_BYTES || cursor.file.read_exact(&mut header).is_err() {
        return ReadOutcome::Corrupt { skippable: false };
    }
    let (length, crc) = parse_header(&header);
    if length > MAX_BODY_BYTES || HEADER_BYTES + length as u64 > available {
        return ReadOutcome::Corrupt { skippable: false };
    }
    buf.resize(length as usize, 0);
    if cursor.file.read_exact(buf).is_err() {
        return ReadOutcome::Corrupt { skippable: false };
    }
    cursor.offset += HEADER_BYTES + length as u64;
    cursor.index += 1;
    if crc32c::crc32c(buf) != crc {
        return ReadOutcome::Corrupt { skippable: true };
    }
    match decode_record(buf, now) {
        Some(record) => ReadOutcome::Record(record),
        None => ReadOutcome::Corrupt { skippable: true },
    }
}

#[cfg(test)]
mod tests {
    use std::fs::OpenOptions;
    use std::path::Path;
    use std::time::Instant;

    use super::*;
    use crate::config::{BufferMode, Overflow, SpoolConfig};
    use crate::log::Logger;
    use crate::queue::Queue;

    fn shared() -> Arc<Shared> {
        Arc::new(Shared::new(BufferMode::Disk, Queue::new(1000, 1 << 20, Overflow::DropNew), Logger::new(None)))
    }

    fn config(dir: &Path, segment_bytes: u64, max_disk_bytes: u64) -> SpoolConfig {
        SpoolConfig {
            dir: dir.display().to_string(),
            segment_bytes,
            max_disk_bytes,
            fsync: Fsync::EveryBatch,
            spill_after_ms: 0,
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("kafka_bridge_spool_{name}_{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn record(n: usize) -> Record {
        Record {
            topic: "t".into(),
            buf: format!("k{n}value{n}").into_bytes(),
            key_len: Some(format!("k{n}").len()),
            headers: n.is_multiple_of(2).then(|| vec![("h".into(), vec![n as u8])]),
            timestamp_ms: n.is_multiple_of(3).then(|| 1_700_000_000_000 + n as i64),
            enqueued_at: Instant::now(),
        }
    }

    /// A spool in `dir` holding records 0..n, written out.
    fn filled(dir: &Path, segment_bytes: u64, n: usize) -> Spool {
        let mut spool = Spool::open(&config(dir, segment_bytes, 1 << 20), shared()).unwrap();
        for i in 0..n {
            spool.append(&record(i), Now::get()).unwrap();
        }
        spool.flush(false).unwrap();
        spool
    }

    fn drain(spool: &mut Spool) -> Vec<(Record, Position)> {
        std::iter::from_fn(|| spool.next(Now::get())).collect()
    }

    #[test]
    fn records_round_trip_across_segments() {
        let dir = temp_dir("round_trip");
        let mut spool = Spool::open(&config(&dir, 4096, 1 << 20), shared()).unwrap();
        for n in 0..500 {
            assert!(matches!(spool.append(&record(n), Now::get()).unwrap(), Appended::Buffered(_)));
        }
        assert_eq!(spool.flush(false).unwrap(), 500);
        assert!(spool.segments.len() > 2, "small segments roll");
        let read = drain(&mut spool);
        assert_eq!(read.len(), 500);
        for (n, (r, _)) in read.iter().enumerate() {
            assert_eq!(r.key(), Some(format!("k{n}").as_bytes()));
            assert_eq!(r.value(), format!("value{n}").as_bytes());
            assert_eq!(r.headers.is_some(), n % 2 == 0);
            assert_eq!(r.timestamp_ms, (n % 3 == 0).then(|| 1_700_000_000_000 + n as i64));
        }
        assert!(spool.caught_up());
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn fresh_records_are_handed_out_without_reading_back() {
        let dir = temp_dir("fresh");
        let mut spool = Spool::open(&config(&dir, 1 << 20, 1 << 24), shared()).unwrap();
        for round in 0..3 {
            for n in 0..100 {
                let record = record(round * 100 + n);
                if let Appended::Buffered(position) = spool.append(&record, Now::get()).unwrap() {
                    spool.offer_fresh(record, position);
                }
            }
            assert_eq!(spool.fresh.len(), 100, "round {round}");
            spool.flush(false).unwrap();
            assert_eq!(drain(&mut spool).len(), 100);
            assert!(spool.fresh.is_empty());
        }
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn unsettled_records_are_replayed_and_settled_segments_deleted() {
        let dir = temp_dir("replay");
        let mut spool = filled(&dir, 4096, 300);
        let read = drain(&mut spool);
        // Kafka acknowledged the first 100 only.
        for (_, position) in &read[..100] {
            spool.settled(*position);
            spool.commit(*position);
        }
        spool.maintain(true);
        drop(spool);
        let mut again = Spool::open(&config(&dir, 4096, 1 << 20), shared()).unwrap();
        let replayed = drain(&mut again);
        assert_eq!(replayed.first().map(|(r, _)| r.value().to_vec()), Some(b"value100".to_vec()));
        assert_eq!(replayed.len(), 200);
        for (_, position) in &replayed {
            again.settled(*position);
            again.commit(*position);
        }
        again.maintain(true);
        assert_eq!(again.segments.len(), 1, "only the active segment is left");
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn a_torn_tail_is_counted_and_what_precedes_it_survives() {
        let dir = temp_dir("torn");
        drop(filled(&dir, 1 << 20, 10));
        let path = segment_path(&dir, 1);
        let len = fs::metadata(&path).unwrap().len();
        OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 3).unwrap();
        let (values, corrupt) = reopen_and_read(&dir);
        assert_eq!(values.len(), 9);
        assert_eq!(corrupt, 1);
        let _ = fs::remove_dir_all(dir);
    }

    /// A damaged length in record 3 of a sealed 100-record segment loses
    /// records 3 to 99: 97 are counted, in each of two damaged segments.
    #[test]
    fn a_damaged_length_counts_every_record_it_loses() {
        let dir = temp_dir("damaged_length");
        let mut spool = filled(&dir, 1 << 20, 100);
        spool.roll().unwrap();
        for i in 100..200 {
            spool.append(&record(i), Now::get()).unwrap();
        }
        spool.close();
        drop(spool);
        for id in [1, 2] {
            let path = segment_path(&dir, id);
            let mut bytes = fs::read(&path).unwrap();
            let mut offset = 0;
            for _ in 0..3 {
                offset += 8 + u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap()) as usize;
            }
            bytes[offset + 3] = 0x7f; // a length of about 2 GB
            fs::write(&path, bytes).unwrap();
        }
        let (values, corrupt) = reopen_and_read(&dir);
        assert_eq!(values.len(), 6);
        assert_eq!(corrupt, 2 * 97);
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn a_flipped_byte_skips_one_record() {
        let dir = temp_dir("flipped");
        drop(filled(&dir, 1 << 20, 10));
        let path = segment_path(&dir, 1);
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 2;
        bytes[last] ^= 0xff;
        fs::write(&path, bytes).unwrap();
        let (values, corrupt) = reopen_and_read(&dir);
        assert_eq!(values.len(), 9);
        assert_eq!(values[8], b"value8");
        assert_eq!(corrupt, 1);
        let _ = fs::remove_dir_all(dir);
    }

    /// Opens the spool in `dir` as a new run would: the values it replays,
    /// and how many corrupt records it counted on the way.
    fn reopen_and_read(dir: &Path) -> (Vec<Vec<u8>>, u64) {
        let shared_state = shared();
        let mut again = Spool::open(&config(dir, 1 << 20, 1 << 20), shared_state.clone()).unwrap();
        let values = drain(&mut again).into_iter().map(|(r, _)| r.value().to_vec()).collect();
        (values, shared_state.metrics.spool_corrupt_records.load(Relaxed))
    }

    #[test]
    fn a_full_spool_refuses_and_drop_oldest_makes_room() {
        let dir = temp_dir("full");
        let mut spool = Spool::open(&config(&dir, 4096, 8192), shared()).unwrap();
        let mut buffered = 0;
        for n in 0..1000 {
            if let Appended::Buffered(_) = spool.append(&record(n), Now::get()).unwrap() {
                buffered += 1;
            }
        }
        spool.flush(false).unwrap();
        assert!(buffered < 1000 && buffered > 100);
        assert!(spool.disk_bytes <= 8192);
        let dropped = spool.evict_oldest_segment().unwrap().unwrap();
        assert!(dropped > 0);
        let left = drain(&mut spool).len() as u64;
        assert_eq!(left + dropped, buffered);
        let _ = fs::remove_dir_all(dir);
    }

    /// Records handed to librdkafka and not yet acknowledged exist only in
    /// its memory: `drop_oldest` keeps their segment, evicts a later one,
    /// and a crash then loses nothing it did not count.
    #[test]
    fn drop_oldest_keeps_segments_librdkafka_holds_records_of() {
        let dir = temp_dir("evict_inflight");
        let mut spool = Spool::open(&config(&dir, 4096, 16384), shared()).unwrap();
        let mut buffered = 0;
        while let Appended::Buffered(_) = spool.append(&record(buffered), Now::get()).unwrap() {
            buffered += 1;
        }
        spool.flush(false).unwrap();
        let first = spool.segments[0].id;
        let in_flight = spool.next(Now::get()).unwrap().1;
        assert_eq!(in_flight.segment, first);
        // Evicting until nothing can go: every segment but the one with
        // the record in flight goes, and then the caller drops new records.
        let mut evicted = 0;
        while let Some(dropped) = spool.evict_oldest_segment().unwrap() {
            assert_eq!(spool.segments[0].id, first, "the segment with a record in flight stays");
            evicted += dropped;
        }
        assert!(evicted > 0);
        assert_eq!(spool.segments.len(), 2, "the kept segment and an empty active one");
        // A crash: nothing settled. The record in flight is replayed.
        drop(spool);
        let (values, _) = reopen_and_read(&dir);
        assert_eq!(values.first().map(Vec::as_slice), Some(record(0).value()));
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn an_unwritable_dir_is_a_clear_error() {
        let error = Spool::open(&config(Path::new("/proc/version/spool"), 4096, 8192), shared()).err().unwrap();
        assert!(error.starts_with("buffer.dir: cannot write to \"/proc/version/spool\""), "{error}");
    }
}
