use std::time::Duration;

use super::LogWriter;

#[test]
fn the_ring_keeps_the_newest_bytes_with_absolute_offsets() {
    let log = LogWriter::new(10);
    let reader = log.reader();
    log.append(b"0123456\n");
    assert_eq!(
        reader.read_from(0),
        (bytes::Bytes::from_static(b"0123456\n"), 8)
    );
    log.append(b"abcdef\n");
    // 15 bytes written, 10 kept: the oldest kept byte is at offset 5.
    let (bytes, next) = reader.read_from(0);
    assert_eq!((&bytes[..], next), (&b"56\nabcdef\n"[..], 15));
    let (bytes, next) = reader.read_from(12);
    assert_eq!((&bytes[..], next), (&b"ef\n"[..], 15));
    assert_eq!(reader.read_from(15).0.len(), 0);
    assert_eq!(reader.read_from(99), (bytes::Bytes::new(), 15));
    // One write larger than the ring keeps its own tail and counts every byte.
    log.append(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ");
    let (bytes, next) = reader.read_from(0);
    assert_eq!((&bytes[..], next), (&b"QRSTUVWXYZ"[..], 41));
}

#[tokio::test]
async fn a_follower_wakes_on_new_bytes_and_ends_when_closed() {
    let log = LogWriter::new(1024);
    let reader = log.reader();
    let (_, offset) = reader.read_from(0);
    let waiting = tokio::spawn({
        let reader = reader.clone();
        async move { reader.changed().await }
    });
    tokio::task::yield_now().await;
    assert!(!waiting.is_finished());
    log.append(b"line\n");
    tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("woken")
        .expect("joined");
    assert_eq!(&reader.read_from(offset).0[..], b"line\n");
    // Everything read: changed() waits again, until the pod is gone.
    let waiting = tokio::spawn({
        let reader = reader.clone();
        async move { reader.changed().await }
    });
    assert!(!reader.is_closed());
    log.close();
    tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("woken by close")
        .expect("joined");
    assert!(reader.is_closed());
}

#[tokio::test]
async fn streams_are_copied_line_by_line() {
    let log = LogWriter::new(1 << 20);
    let reader = log.reader();
    let (a, mut a_in) = tokio::io::duplex(64);
    let (b, mut b_in) = tokio::io::duplex(64);
    let copy_a = tokio::spawn(log.clone().copy_from(a));
    let copy_b = tokio::spawn(log.clone().copy_from(b));
    use tokio::io::AsyncWriteExt;
    a_in.write_all(b"out one, ").await.expect("write");
    b_in.write_all(b"err one\n").await.expect("write");
    // Wait until the whole stderr line is in before the stdout line completes.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while reader.read_from(0).1 < 8 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "stderr line never arrived"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    a_in.write_all(b"still one\nlast without newline")
        .await
        .expect("write");
    drop(a_in);
    drop(b_in);
    copy_a.await.expect("copied");
    copy_b.await.expect("copied");
    assert_eq!(
        &reader.read_from(0).0[..],
        b"err one\nout one, still one\nlast without newline"
    );
}

#[test]
fn each_run_is_marked_and_the_previous_one_is_kept_while_the_ring_holds_it() {
    let log = LogWriter::new(64);
    let reader = log.reader();
    assert_eq!(reader.current_run(), None);
    assert_eq!(reader.previous_run(), None);
    log.start_run();
    log.append(b"first run\n");
    log.end_run();
    let first = reader.current_run().expect("a run");
    assert_eq!(
        first,
        super::Run {
            number: 1,
            start: 0
        }
    );
    assert_eq!(reader.run_end(&first), Some(10));
    assert_eq!(reader.previous_run(), None, "no run before the first");
    log.start_run();
    log.append(b"second run\n");
    let second = reader.current_run().expect("a run");
    assert_eq!(
        second,
        super::Run {
            number: 2,
            start: 10
        }
    );
    assert_eq!(reader.run_end(&second), None, "it still runs");
    assert_eq!(reader.run_end(&first), Some(10), "a later run began");
    assert_eq!(&reader.read_from(second.start).0[..], b"second run\n");
    assert_eq!(reader.previous_run().as_deref(), Some(&b"first run\n"[..]));
    // The ring drops the first run's bytes: the previous run is no longer kept.
    log.append(&[b'x'; 60]);
    assert_eq!(reader.previous_run(), None);
    log.close();
    assert_eq!(reader.run_end(&second), Some(81));
}

#[tokio::test]
async fn a_follower_of_a_run_wakes_when_the_run_ends() {
    let log = LogWriter::new(64);
    let reader = log.reader();
    log.start_run();
    let run = reader.current_run().expect("a run");
    let waiting = tokio::spawn({
        let reader = reader.clone();
        async move { reader.changed_after(0, &run).await }
    });
    tokio::task::yield_now().await;
    assert!(!waiting.is_finished());
    log.end_run();
    tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("woken by the run's end")
        .expect("joined");
}

#[test]
fn each_piece_keeps_when_it_was_written_and_goes_with_its_bytes() {
    let log = LogWriter::new(16);
    let reader = log.reader();
    log.append(b"one\n");
    log.append(b"two\n");
    log.append(b"three\n");
    let (pieces, next) = reader.read_pieces(0, None);
    let texts: Vec<&[u8]> = pieces.iter().map(|(_, b)| &b[..]).collect();
    assert_eq!(texts, [&b"one\n"[..], b"two\n", b"three\n"]);
    assert_eq!(next, 14);
    assert!(pieces.windows(2).all(|w| w[0].0 <= w[1].0), "in time order");
    // From the middle of a piece, up to a bound.
    let (pieces, next) = reader.read_pieces(5, Some(10));
    let texts: Vec<&[u8]> = pieces.iter().map(|(_, b)| &b[..]).collect();
    assert_eq!((texts, next), (vec![&b"wo\n"[..], b"th"], 10));
    // 16 bytes kept: "one\n" goes, and "two\n" loses its first byte, keeping its time.
    log.append(b"fourth\n");
    let (pieces, _) = reader.read_pieces(0, None);
    let texts: Vec<&[u8]> = pieces.iter().map(|(_, b)| &b[..]).collect();
    assert_eq!(texts, [&b"wo\n"[..], b"three\n", b"fourth\n"]);
}
