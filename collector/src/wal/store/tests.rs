use super::*;
use crate::wal::Signal;

fn rec(i: u32, size: usize) -> Record {
    Record {
        signal: Signal::Metrics,
        items: i,
        unix_ms: u64::from(i),
        payload: vec![i as u8; size].into(),
    }
}

fn cfg(max: u64, seg: u64, when_full: WhenFull) -> QueueConfig {
    QueueConfig {
        max_bytes: max,
        segment_bytes: seg,
        fsync: Fsync::Always,
        when_full,
    }
}

fn items(batch: &[(Record, Position)]) -> Vec<u32> {
    batch.iter().map(|(r, _)| r.items).collect()
}

#[test]
fn delivers_in_order_across_segments_and_resumes_at_the_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), cfg(1 << 20, 300, WhenFull::Refuse)).unwrap();
    for i in 1..=10 {
        wal.append(&rec(i, 100)).unwrap();
    }
    let batch = wal.read(wal.cursor(), 4, u64::MAX).unwrap();
    assert_eq!(items(&batch), [1, 2, 3, 4]);
    wal.commit(batch.last().unwrap().1, 4).unwrap();
    assert_eq!(wal.depth().1, 6);
    drop(wal);
    // A restart (or kill -9) resumes after the last commit.
    let (wal, torn) = Wal::open(dir.path(), cfg(1 << 20, 300, WhenFull::Refuse)).unwrap();
    assert!(torn.is_empty());
    let rest = wal.read(wal.cursor(), 100, u64::MAX).unwrap();
    assert_eq!(items(&rest), [5, 6, 7, 8, 9, 10]);
    assert_eq!(wal.depth().1, 6);
    wal.commit(rest.last().unwrap().1, 6).unwrap();
    assert_eq!(wal.depth(), (0, 0));
    // Delivered segments are gone; only the one being written remains.
    let segs = fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "seg")
        })
        .count();
    assert_eq!(segs, 1);
}

#[test]
fn a_torn_tail_is_truncated_and_the_rest_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), cfg(1 << 20, 1 << 20, WhenFull::Refuse)).unwrap();
    for i in 1..=3 {
        wal.append(&rec(i, 50)).unwrap();
    }
    drop(wal);
    let seg = segment_path(dir.path(), 1);
    let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(&rec(4, 50).encode()[..30]).unwrap();
    drop(f);
    let (wal, torn) = Wal::open(dir.path(), cfg(1 << 20, 1 << 20, WhenFull::Refuse)).unwrap();
    assert_eq!(torn.len(), 1);
    assert_eq!((torn[0].bytes, torn[0].why), (30, "short payload"));
    assert_eq!(
        items(&wal.read(wal.cursor(), 100, u64::MAX).unwrap()),
        [1, 2, 3]
    );
    // Appends continue after the truncation point.
    wal.append(&rec(5, 50)).unwrap();
    assert_eq!(
        items(&wal.read(wal.cursor(), 100, u64::MAX).unwrap()),
        [1, 2, 3, 5]
    );
}

#[test]
fn refuse_keeps_everything_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let one = rec(1, 100).encoded_len();
    let (wal, _) = Wal::open(dir.path(), cfg(one * 3, one * 10, WhenFull::Refuse)).unwrap();
    for i in 1..=3 {
        wal.append(&rec(i, 100)).unwrap();
    }
    assert!(matches!(
        wal.append(&rec(4, 100)),
        Err(WalError::Full { .. })
    ));
    assert_eq!(
        items(&wal.read(wal.cursor(), 100, u64::MAX).unwrap()),
        [1, 2, 3]
    );
    assert_eq!(wal.dropped(), Dropped::default());
}

#[test]
fn drop_oldest_counts_what_it_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let one = rec(1, 100).encoded_len();
    // Two records per segment, four records of budget.
    let (wal, _) = Wal::open(dir.path(), cfg(one * 4, one * 2, WhenFull::DropOldest)).unwrap();
    for i in 1..=6 {
        wal.append(&rec(i, 100)).unwrap();
    }
    // Segment 1 (records 1, 2) went to make room: items 1 + 2.
    assert_eq!(
        wal.dropped(),
        Dropped {
            records: 2,
            items: 3
        }
    );
    assert_eq!(
        items(&wal.read(wal.cursor(), 100, u64::MAX).unwrap()),
        [3, 4, 5, 6]
    );
    assert!(wal.disk_bytes() <= one * 4);
}

#[test]
fn drop_oldest_does_not_count_the_batch_being_sent() {
    let dir = tempfile::tempdir().unwrap();
    let one = rec(1, 100).encoded_len();
    let (wal, _) = Wal::open(dir.path(), cfg(one * 4, one * 2, WhenFull::DropOldest)).unwrap();
    wal.append(&rec(1, 100)).unwrap();
    wal.append(&rec(2, 100)).unwrap();
    // The exporter reads record 1 and is still sending it.
    let held = wal.read(wal.cursor(), 1, u64::MAX).unwrap();
    for i in 3..=6 {
        wal.append(&rec(i, 100)).unwrap();
    }
    // Segment 1 went: record 2 is dropped, record 1 is in flight.
    assert_eq!(
        wal.dropped(),
        Dropped {
            records: 1,
            items: 2
        }
    );
    wal.commit(held[0].1, 1).unwrap();
    assert_eq!(
        items(&wal.read(wal.cursor(), 100, u64::MAX).unwrap()),
        [3, 4, 5, 6]
    );
    assert_eq!(wal.depth().1, 4);
}
