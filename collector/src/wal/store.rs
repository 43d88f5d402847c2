//! The segment files, the cursor and the budget (see the module docs).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tracing::warn;

use super::record::{self, Next, Record};
use super::{Dropped, Fsync, QueueConfig, WhenFull};

/// The largest record payload read back (a corrupt length beyond it is a
/// torn record, not an allocation).
const RECORD_LIMIT: u32 = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("queue full ({used} of {max} bytes)")]
    Full { used: u64, max: u64 },
    #[error("record of {0} bytes is larger than the whole queue budget")]
    TooLarge(u64),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A place in the queue: a segment and a byte offset in it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

/// A torn tail found (and truncated) at open.
#[derive(Debug, Clone)]
pub struct Truncation {
    pub segment: u64,
    pub offset: u64,
    pub bytes: u64,
    pub why: &'static str,
}

pub struct Wal {
    dir: PathBuf,
    cfg: QueueConfig,
    inner: Mutex<Inner>,
    notify: tokio::sync::Notify,
}

struct Inner {
    /// Segment id → bytes on disk.
    segments: BTreeMap<u64, u64>,
    writer: File,
    write_id: u64,
    cursor: Position,
    /// The end of the batch the reader holds (read, not yet committed):
    /// `drop_oldest` does not count it as dropped, since it will be sent.
    in_flight: Position,
    pending_records: u64,
    dropped: Dropped,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_owned(),
        source,
    }
}

impl Wal {
    /// Opens (or creates) the queue in `dir`, truncating torn tails.
    pub fn open(dir: &Path, cfg: QueueConfig) -> Result<(Self, Vec<Truncation>), WalError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut segments = BTreeMap::new();
        for entry in fs::read_dir(dir).map_err(io_err(dir))? {
            let entry = entry.map_err(io_err(dir))?;
            let name = entry.file_name();
            if let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".seg"))
                .and_then(|n| n.parse::<u64>().ok())
            {
                segments.insert(id, 0u64);
            }
        }
        let mut cursor = read_cursor(dir).unwrap_or_default();
        let mut truncations = Vec::new();
        let mut pending_records = 0;
        for (&id, size) in segments.iter_mut() {
            let path = segment_path(dir, id);
            let (valid, records_after, torn) = scan(
                &path,
                if id == cursor.segment {
                    cursor.offset
                } else {
                    0
                },
            )?;
            let len = fs::metadata(&path).map_err(io_err(&path))?.len();
            if let Some(why) = torn {
                warn!(segment = %path.display(), offset = valid, bytes = len - valid, why, "WAL: torn record, truncating the segment there");
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io_err(&path))?;
                f.set_len(valid).map_err(io_err(&path))?;
                f.sync_all().map_err(io_err(&path))?;
                truncations.push(Truncation {
                    segment: id,
                    offset: valid,
                    bytes: len - valid,
                    why,
                });
            }
            *size = valid;
            if id >= cursor.segment {
                pending_records += records_after;
            }
        }
        // Segments wholly before the cursor were delivered.
        let delivered: Vec<u64> = segments
            .range(..cursor.segment)
            .map(|(&id, _)| id)
            .collect();
        for id in delivered {
            let _ = fs::remove_file(segment_path(dir, id));
            segments.remove(&id);
        }
        let write_id = segments
            .keys()
            .next_back()
            .copied()
            .unwrap_or(cursor.segment.max(1));
        if cursor.segment < *segments.keys().next().unwrap_or(&write_id) {
            cursor = Position {
                segment: write_id.min(*segments.keys().next().unwrap_or(&write_id)),
                offset: 0,
            };
        }
        if let Some(&size) = segments.get(&cursor.segment) {
            cursor.offset = cursor.offset.min(size);
        }
        segments.entry(write_id).or_insert(0);
        let path = segment_path(dir, write_id);
        let writer = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let wal = Self {
            dir: dir.to_owned(),
            cfg,
            inner: Mutex::new(Inner {
                segments,
                writer,
                write_id,
                cursor,
                in_flight: cursor,
                pending_records,
                dropped: Dropped::default(),
            }),
            notify: tokio::sync::Notify::new(),
        };
        Ok((wal, truncations))
    }

    /// Appends a record (durable per the fsync policy when this returns).
    pub fn append(&self, rec: &Record) -> Result<(), WalError> {
        let bytes = rec.encode();
        let len = bytes.len() as u64;
        if len > self.cfg.max_bytes {
            return Err(WalError::TooLarge(len));
        }
        let mut inner = self.inner.lock().expect("wal lock");
        while inner.used() + len > self.cfg.max_bytes {
            match self.cfg.when_full {
                WhenFull::Refuse => {
                    return Err(WalError::Full {
                        used: inner.used(),
                        max: self.cfg.max_bytes,
                    });
                }
                WhenFull::DropOldest => self.drop_oldest(&mut inner)?,
            }
        }
        if inner.segments[&inner.write_id] > 0
            && inner.segments[&inner.write_id] + len > self.cfg.segment_bytes
        {
            self.roll(&mut inner)?;
        }
        let path = segment_path(&self.dir, inner.write_id);
        inner.writer.write_all(&bytes).map_err(io_err(&path))?;
        if self.cfg.fsync == Fsync::Always {
            inner.writer.sync_data().map_err(io_err(&path))?;
        }
        let id = inner.write_id;
        *inner.segments.get_mut(&id).expect("write segment") += len;
        inner.pending_records += 1;
        drop(inner);
        self.notify.notify_waiters();
        Ok(())
    }

    /// Up to `max_records` records (and about `max_bytes`) from `from`,
    /// each with the position after it.
    pub fn read(
        &self,
        mut from: Position,
        max_records: usize,
        max_bytes: u64,
    ) -> Result<Vec<(Record, Position)>, WalError> {
        let (segments, cursor) = {
            let inner = self.inner.lock().expect("wal lock");
            (inner.segments.clone(), inner.cursor)
        };
        from = from.max(cursor);
        let mut out = Vec::new();
        let mut bytes = 0;
        for (&id, &end) in segments.range(from.segment..) {
            if id > from.segment {
                from = Position {
                    segment: id,
                    offset: 0,
                };
            }
            if from.offset < end {
                let path = segment_path(&self.dir, id);
                let mut f = BufReader::new(File::open(&path).map_err(io_err(&path))?);
                f.seek(SeekFrom::Start(from.offset))
                    .map_err(io_err(&path))?;
                while from.offset < end && out.len() < max_records && bytes < max_bytes {
                    match record::read(&mut f, RECORD_LIMIT).map_err(io_err(&path))? {
                        Next::Record(r) => {
                            from.offset += r.encoded_len();
                            bytes += r.encoded_len();
                            out.push((r, from));
                        }
                        Next::End | Next::Torn(_) => break,
                    }
                }
            }
            if out.len() >= max_records || bytes >= max_bytes {
                break;
            }
        }
        let mut inner = self.inner.lock().expect("wal lock");
        // `drop_oldest` may have deleted (and counted as dropped) a segment
        // while it was being read: what was not already in flight from it
        // is not sent either, so nothing is both dropped and delivered.
        let protected = inner.in_flight;
        out.retain(|(_, end)| *end <= protected || inner.segments.contains_key(&end.segment));
        if let Some((_, end)) = out.last() {
            inner.in_flight = inner.in_flight.max(*end);
        }
        Ok(out)
    }

    /// Marks everything before `to` delivered: persists the cursor and
    /// deletes segments wholly before it.
    pub fn commit(&self, to: Position, records: u64) -> Result<(), WalError> {
        let mut inner = self.inner.lock().expect("wal lock");
        // Delivered records leave the count even when `drop_oldest` moved
        // the cursor past them while they were being sent.
        inner.pending_records = inner.pending_records.saturating_sub(records);
        if to <= inner.cursor {
            return Ok(());
        }
        inner.cursor = to;
        write_cursor(&self.dir, to, self.cfg.fsync)?;
        let done: Vec<u64> = inner
            .segments
            .range(..to.segment)
            .map(|(&id, _)| id)
            .collect();
        for id in done {
            let _ = fs::remove_file(segment_path(&self.dir, id));
            inner.segments.remove(&id);
        }
        Ok(())
    }

    /// Resolves when a record is appended.
    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }

    pub fn cursor(&self) -> Position {
        self.inner.lock().expect("wal lock").cursor
    }

    /// Undelivered bytes and records.
    pub fn depth(&self) -> (u64, u64) {
        let inner = self.inner.lock().expect("wal lock");
        let bytes: u64 = inner
            .segments
            .range(inner.cursor.segment..)
            .map(|(_, &b)| b)
            .sum();
        (
            bytes.saturating_sub(inner.cursor.offset),
            inner.pending_records,
        )
    }

    /// Bytes of segment files on disk (the budget's measure).
    pub fn disk_bytes(&self) -> u64 {
        self.inner.lock().expect("wal lock").used()
    }

    /// Everything `drop_oldest` deleted undelivered, so far.
    pub fn dropped(&self) -> Dropped {
        self.inner.lock().expect("wal lock").dropped
    }

    fn roll(&self, inner: &mut Inner) -> Result<(), WalError> {
        let id = inner.write_id + 1;
        let path = segment_path(&self.dir, id);
        inner.writer = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        inner.write_id = id;
        inner.segments.insert(id, 0);
        if self.cfg.fsync == Fsync::Always {
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(io_err(&self.dir))?;
        }
        Ok(())
    }

    fn drop_oldest(&self, inner: &mut Inner) -> Result<(), WalError> {
        let oldest = *inner.segments.keys().next().expect("a write segment");
        if oldest == inner.write_id {
            self.roll(inner)?;
        }
        let path = segment_path(&self.dir, oldest);
        // Records the reader holds will still be sent: not dropped.
        let kept = inner.in_flight.max(inner.cursor);
        let (records, items) = match kept.segment.cmp(&oldest) {
            std::cmp::Ordering::Greater => (0, 0),
            std::cmp::Ordering::Equal => (
                scan(&path, kept.offset)?.1,
                count_items(&path, kept.offset)?,
            ),
            std::cmp::Ordering::Less => (scan(&path, 0)?.1, count_items(&path, 0)?),
        };
        inner.dropped.records += records;
        inner.dropped.items += items;
        inner.pending_records = inner.pending_records.saturating_sub(records);
        warn!(segment = %path.display(), records, items, "WAL full: dropping the oldest undelivered segment");
        let _ = fs::remove_file(&path);
        inner.segments.remove(&oldest);
        let next = *inner.segments.keys().next().expect("the write segment");
        if inner.cursor.segment <= oldest {
            inner.cursor = Position {
                segment: next,
                offset: 0,
            };
            write_cursor(&self.dir, inner.cursor, self.cfg.fsync)?;
        }
        Ok(())
    }
}

impl Inner {
    fn used(&self) -> u64 {
        self.segments.values().sum()
    }
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

/// The valid length of a segment, the records after `from`, and why it
/// ended early (a torn record), if it did.
fn scan(path: &Path, from: u64) -> Result<(u64, u64, Option<&'static str>), WalError> {
    let mut f = BufReader::new(File::open(path).map_err(io_err(path))?);
    let (mut valid, mut after) = (0u64, 0u64);
    loop {
        match record::read(&mut f, RECORD_LIMIT).map_err(io_err(path))? {
            Next::Record(r) => {
                if valid >= from {
                    after += 1;
                }
                valid += r.encoded_len();
            }
            Next::End => return Ok((valid, after, None)),
            Next::Torn(why) => return Ok((valid, after, Some(why))),
        }
    }
}

fn count_items(path: &Path, from: u64) -> Result<u64, WalError> {
    let mut f = BufReader::new(File::open(path).map_err(io_err(path))?);
    f.seek(SeekFrom::Start(from)).map_err(io_err(path))?;
    let mut items = 0;
    while let Next::Record(r) = record::read(&mut f, RECORD_LIMIT).map_err(io_err(path))? {
        items += u64::from(r.items);
    }
    Ok(items)
}

fn read_cursor(dir: &Path) -> Option<Position> {
    let text = fs::read_to_string(dir.join("cursor")).ok()?;
    let mut it = text.split_whitespace().map(|v| v.parse::<u64>().ok());
    Some(Position {
        segment: it.next()??,
        offset: it.next()??,
    })
}

fn write_cursor(dir: &Path, at: Position, fsync: Fsync) -> Result<(), WalError> {
    let tmp = dir.join("cursor.tmp");
    let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
    writeln!(f, "{} {}", at.segment, at.offset).map_err(io_err(&tmp))?;
    if fsync == Fsync::Always {
        f.sync_data().map_err(io_err(&tmp))?;
    }
    fs::rename(&tmp, dir.join("cursor")).map_err(io_err(dir))
}

#[cfg(test)]
mod tests;
